"""Configuration: one Struct, filled from ``CAIRN_*`` environment variables and CLI flags
(flags win). ``cairn serve`` exports the final values to the environment, so uvicorn workers
started in other processes read exactly what the parent validated."""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import limits
import msgspec
from msgspec import Meta

from api.auth import Authenticator, KeyConfigError
from broker.state import FINISHED_KEPT_S
from broker.store.postgres import describe, is_postgres
from broker.store.tortoise import sqlite_path

ENV_PREFIX: Final = "CAIRN_"
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")


class ConfigError(ValueError):
    """A setting that cannot work; its message is the one line ``cairn`` prints."""


Positive = Annotated[int, Meta(ge=1)]
PositiveSeconds = Annotated[float, Meta(gt=0)]


@dataclass(frozen=True)
class Duration:
    """What a duration setting accepts besides a finite number of seconds above 0."""

    zero: bool = False
    """0 means something for this setting (its option says what)."""
    forever: bool = False
    """``forever`` is a value (``None`` in ``Settings``)."""


_DURATION: Final = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<unit>[smhd]?)")
_UNIT_S: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, setting: str, rule: Duration = Duration()) -> float | None:
    """Seconds from ``<number>`` (seconds) or ``<number>s|m|h|d`` (``1.5h``), or None for
    ``forever`` where ``rule`` allows it. Anything else, ``inf``, ``nan``, a negative number or
    (unless ``rule.zero``) 0 is the one-line refusal naming ``setting``: an interval of 0 spins,
    and one of ``inf`` silently never runs (a sweeper that never records an expiry)."""
    value = text.strip().lower()
    if rule.forever and value == "forever":
        return None
    match = _DURATION.fullmatch(value)
    seconds = float(match["number"]) * _UNIT_S[match["unit"]] if match else math.nan
    _check_duration(seconds, text, setting, rule)
    return seconds


def _check_duration(seconds: float, given: object, setting: str, rule: Duration) -> None:
    if math.isfinite(seconds) and (seconds > 0 or (rule.zero and seconds == 0)):
        return
    least = "0 or more" if rule.zero else "above 0"
    also = ", or forever" if rule.forever else ""
    raise ConfigError(
        f"{setting}: {given!r} is not a duration: give a finite number of seconds {least}, or"
        f" a number with s, m, h or d (90s, 15m, 1.5h, 14d){also}"
    )


class Settings(msgspec.Struct, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = "sqlite://./data/cairn.db"
    redis_url: str | None = None
    redis_stream_maxlen: Positive = 1_000_000
    workers: int = 1
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    insecure_no_auth: bool = False
    metrics_public: bool = False
    """``GET /metrics`` without a token while authentication is on (v1's open endpoint)."""
    no_metrics_per_queue: bool = False
    """Only broker-wide series: no queue's name or depth (for very many queues)."""
    rate_limit: str | None = None
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    log_format: Literal["json", "console"] = "json"
    log_file: str | None = None
    log_file_max_bytes: Positive = 10 * 1024 * 1024
    log_file_backups: Annotated[int, Meta(ge=0)] = 5
    durability: Literal["full", "normal"] = "full"
    max_request_bytes: Positive = 1024 * 1024
    max_message_bytes: Positive = 256 * 1024
    max_json_depth: Positive = 64
    projector: Literal["embedded", "process"] = "embedded"
    """Where projections are applied: in each serving process, or in one process of their own
    that ``cairn serve`` starts beside the workers (its default)."""
    sweep_interval_s: PositiveSeconds = 0.5
    finished_kept_s: Annotated[float, Meta(ge=0)] = FINISHED_KEPT_S
    history_retention: PositiveSeconds = 14 * 86400.0
    """Seconds a finished message (and each version of a row) stays in the read models after
    it finished (stopped holding): ``projections/views/retention.py``."""
    projection_coalesce_s: Annotated[float, Meta(ge=0)] = 0.01
    read_wait_s: PositiveSeconds = 5.0
    body_idle_s: PositiveSeconds = 10.0
    """How long a request body may stop arriving before the request is a 400 (``api/http.py``)."""
    sse_heartbeat_s: float = 15.0
    sse_retry_ms: int = 3000
    sse_buffer_events: Positive = 10_000
    sqs_account_id: str = "000000000000"
    """The account id in the SQS door's queue URLs and ARNs."""
    sqs_credentials: str | None = None
    """A JSON file of SQS access keys: ``{"<key id>": {"secret", "sub", "scope"}}``."""
    kafka_port: int | None = None
    """Speak the Kafka protocol on this port too (off when None)."""
    kafka_advertised_host: str | None = None
    """The host Metadata names for this node (default ``host``)."""
    kafka_advertised_port: int | None = None
    """The port Metadata names for this node (default ``kafka_port``)."""
    kafka_node_id: Annotated[int, Meta(ge=0, le=2**31 - 1)] = 0
    kafka_max_request_bytes: Positive = 100 * 1024 * 1024
    kafka_auto_create: bool = False
    """A Metadata or Produce request naming an unknown topic creates its queue."""
    backup_dir: str | None = None
    """Where automatic backups go (``api/backups.py``); with ``backup_every``."""
    backup_every: float | None = None
    """Seconds between automatic backups (one only when the head moved); off when None."""
    backup_keep: Positive = 7
    """How many automatic backups are kept (the newest)."""

    def validate(self) -> Settings:
        for field, rule in DURATIONS.items():
            value = getattr(self, field)
            if value is not None:  # None: forever, or off (a setting without a default)
                _check_duration(value, value, setting_name(field), rule)
        if self.authenticator() is None and not self.insecure_no_auth and not _loopback(self.host):
            raise ConfigError(
                f"refusing to listen on {self.host} without authentication: set --jwt-secret"
                " (or --jwt-public-key), or pass --insecure-no-auth to accept the risk"
            )
        if self.rate_limit is not None:
            try:
                limits.parse(self.rate_limit)
            except ValueError:
                raise ConfigError(
                    f"--rate-limit {self.rate_limit!r} is not a rate such as 100/second"
                ) from None
        if not 0 < self.port < 65536:
            raise ConfigError(f"--port {self.port} is not a TCP port (1..65535)")
        if self.workers < 1:
            raise ConfigError(f"--workers {self.workers} must be at least 1")
        if sqlite_path(self.database_url) is None and not is_postgres(self.database_url):
            raise ConfigError(
                f"--database-url {self.database_url!r} is not supported: use"
                " sqlite://RELATIVE/PATH, sqlite:///ABSOLUTE/PATH or postgresql://USER@HOST/DB"
            )
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ConfigError(f"--redis-url {self.redis_url!r} is not a redis:// URL")
        if not 0 < self.sse_retry_ms <= 5000:
            raise ConfigError("CAIRN_SSE_RETRY_MS must be in 1..5000")
        if not 0 < self.sse_heartbeat_s <= 15:
            raise ConfigError("CAIRN_SSE_HEARTBEAT_S must be in (0, 15]")
        if not 1024 <= self.max_message_bytes <= 1048576:
            raise ConfigError(
                f"CAIRN_MAX_MESSAGE_BYTES ({self.max_message_bytes}) must be in 1024..1048576,"
                " as a queue's max_message_bytes"
            )
        if self.max_message_bytes > self.max_request_bytes:
            raise ConfigError(
                f"CAIRN_MAX_MESSAGE_BYTES ({self.max_message_bytes}) cannot exceed"
                f" CAIRN_MAX_REQUEST_BYTES ({self.max_request_bytes})"
            )
        if self.log_file is not None:
            _check_log_file(self.log_file)
        if not (len(self.sqs_account_id) == 12 and self.sqs_account_id.isdigit()):
            raise ConfigError(f"--sqs-account-id {self.sqs_account_id!r} is not 12 digits")
        if self.sqs_credentials is not None:
            _check_sqs_credentials(self.sqs_credentials)
        self._check_kafka()
        return self

    def _check_kafka(self) -> None:
        if self.kafka_port is None:
            return
        if not 0 < self.kafka_port < 65536:
            raise ConfigError(f"--kafka-port {self.kafka_port} is not a TCP port (1..65535)")
        if self.kafka_port == self.port:
            raise ConfigError(f"--kafka-port {self.kafka_port} is already --port (HTTP)")
        advertised = self.kafka_advertised_port
        if advertised is not None and not 0 < advertised < 65536:
            raise ConfigError(f"--kafka-advertised-port {advertised} is not a TCP port (1..65535)")
        if self.kafka_advertised_host is None and _wildcard(self.host):
            # Kafka clients connect to the address Metadata gives them, not the one they
            # bootstrapped from: "0.0.0.0" would send every client to itself.
            raise ConfigError(
                f"--host {self.host} listens on every address: set --kafka-advertised-host to"
                " the address Kafka clients should connect to"
            )

    def check_backups(self) -> None:
        """For ``cairn serve``: automatic backups need both options, and a folder they can be
        written to (created if missing), checked now rather than at the first backup."""
        if (self.backup_dir is None) != (self.backup_every is None):
            given, missing = (
                ("--backup-dir", "--backup-every")
                if self.backup_every is None
                else ("--backup-every", "--backup-dir")
            )
            raise ConfigError(f"{given} needs {missing} (automatic backups need both)")
        if self.backup_dir is not None:
            _check_backup_dir(Path(self.backup_dir))

    @property
    def kafka_address(self) -> tuple[str, int]:
        """The host and port Metadata names for this node."""
        assert self.kafka_port is not None
        return (
            self.kafka_advertised_host or self.host,
            self.kafka_advertised_port or self.kafka_port,
        )

    @property
    def auth(self) -> bool:
        """Whether authentication is on (a token key is configured)."""
        return self.jwt_secret is not None or self.jwt_public_key is not None

    def authenticator(self) -> Authenticator | None:
        """The token checker these settings ask for; None when authentication is off."""
        if self.jwt_secret is None and self.jwt_public_key is None:
            return None
        try:
            return Authenticator(
                secret=self.jwt_secret,
                public_key_file=self.jwt_public_key,
                audience=self.jwt_audience,
                issuer=self.jwt_issuer,
            )
        except KeyConfigError as error:
            raise ConfigError(str(error)) from None

    @property
    def postgres(self) -> bool:
        return is_postgres(self.database_url)

    @property
    def sqlite_file(self) -> str:
        path = sqlite_path(self.database_url)
        if path is None:
            raise ConfigError(f"{describe(self.database_url)} is not a SQLite store")
        return path


FIELDS: Final = Settings.__struct_fields__
ENV_ONLY: Final = frozenset(
    {
        "log_file_max_bytes",
        "log_file_backups",
        "max_request_bytes",
        "max_message_bytes",
        "max_json_depth",
        "sweep_interval_s",
        "finished_kept_s",
        "projection_coalesce_s",
        "read_wait_s",
        "body_idle_s",
        "sse_heartbeat_s",
        "sse_retry_ms",
        "sse_buffer_events",
    }
)
"""Settings that have no flag of ``cairn serve``, only a ``CAIRN_*`` variable."""
DURATIONS: Final[dict[str, Duration]] = {
    "sweep_interval_s": Duration(),
    "read_wait_s": Duration(),
    "body_idle_s": Duration(),
    "sse_heartbeat_s": Duration(),
    "projection_coalesce_s": Duration(zero=True),  # 0: no waiting for more commits
    "finished_kept_s": Duration(zero=True),  # 0: forget a finished message at the next sweep
    "backup_every": Duration(),
    "history_retention": Duration(),
}
"""Every setting that is a duration, and what it accepts (``parse_duration``)."""


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def setting_name(field: str) -> str:
    """How an operator sets ``field``: its flag, or its variable when it has no flag."""
    return env_name(field) if field in ENV_ONLY else flag_name(field)


def _check_log_file(path: str) -> None:
    """A log file must be creatable before the workers start: a worker that cannot open it
    dies, and uvicorn starts another, for ever, while nothing listens."""
    location = Path(path)
    if location.is_dir():
        raise ConfigError(f"--log-file {path}: is a directory, not a file")
    folder = location.parent
    if not folder.is_dir():
        raise ConfigError(f"--log-file {path}: the folder {folder} does not exist")
    target = location if location.exists() else folder
    if not os.access(target, os.W_OK):
        raise ConfigError(f"--log-file {path}: {target} is not writable")


def _check_backup_dir(folder: Path) -> None:
    """The backup folder exists (or is created now) and takes a file: a real write, because
    ``os.access`` sees neither a read-only mount nor a full disk."""
    where = f"--backup-dir {folder}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"{where}: is a file, not a folder") from None
    except OSError as error:
        raise ConfigError(f"{where}: cannot be created ({error.strerror})") from None
    if not folder.is_dir():
        raise ConfigError(f"{where}: is not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".cairn-probe-"):
            pass
    except OSError as error:
        raise ConfigError(f"{where}: cannot be written ({error.strerror})") from None


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def from_env(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from ``CAIRN_*`` variables, then ``overrides`` (flags) on top."""
    environ = dict(os.environ) if environ is None else environ
    raw: dict[str, Any] = {}
    source: dict[str, str] = {}
    for field in FIELDS:
        value = environ.get(env_name(field))
        if value is not None and value != "":
            raw[field] = value
            source[field] = env_name(field)
            if field not in ENV_ONLY:
                source[field] += f" ({flag_name(field)})"
    for field, value in overrides.items():
        if value is not None:
            raw[field] = value
            source[field] = flag_name(field)
    for field, rule in DURATIONS.items():
        if isinstance(raw.get(field), str):
            raw[field] = parse_duration(raw[field], source[field], rule)
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as error:
        raise ConfigError(_explain(str(error), source)) from None
    return settings.validate()


def to_env(settings: Settings) -> dict[str, str]:
    env: dict[str, str] = {}
    for field in FIELDS:
        value = getattr(settings, field)
        if value is None:
            continue
        env[env_name(field)] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def _wildcard(host: str) -> bool:
    if host in ("", "*"):
        return True
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _explain(message: str, source: dict[str, str]) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.port`": name where the value came from
    # (the flag, or the environment variable) instead.
    if " - at `$." in message:
        text, _, path = message.partition(" - at `$.")
        field = path.rstrip("`")
        return f"{source.get(field, flag_name(field))}: {text}"
    return message


def _check_sqs_credentials(path: str) -> None:
    """The file must be there and say, for each key id, its secret, subject and scope."""
    where = f"--sqs-credentials {path!r}"
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{where} cannot be read: {error.strerror}") from None
    except ValueError:
        raise ConfigError(f"{where} is not JSON") from None
    if not isinstance(document, dict) or not document:
        raise ConfigError(f"{where} must be a JSON object of access key ids")
    for key_id, key in document.items():
        if not (
            isinstance(key, dict)
            and isinstance(key.get("secret"), str)
            and key["secret"]
            and isinstance(key.get("sub"), str)
            and key["sub"]
            and isinstance(key.get("scope", ""), str)
        ):
            raise ConfigError(
                f"{where}: key {key_id!r} needs a non-empty secret and sub, and a scope string"
            )
