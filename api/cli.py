"""``cairn``: the command line. Every option also reads ``CAIRN_<OPTION>``; flags win."""

from __future__ import annotations

import signal
from types import FrameType


class _Stop:
    """A SIGTERM while `cairn serve` starts is a request to stop, not a crash: exit 0, not 143.
    The handler is installed before any other import (the broker's own take a few hundred
    milliseconds, and are done lazily below). While the store is being migrated the exit waits
    for the migration to finish (its driver's thread would otherwise keep the process alive
    after the exit). Once uvicorn runs it handles the signal itself, and re-raises it under
    this handler when it is done."""

    requested = False
    deferred = False

    @classmethod
    def handle(cls, signum: int, frame: FrameType | None) -> None:
        cls.requested = True
        if not cls.deferred:
            raise SystemExit(0)


signal.signal(signal.SIGTERM, _Stop.handle)

import argparse
import asyncio
import math
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from api.settings import Settings


class _Parser(argparse.ArgumentParser):
    """Refused values are one line naming the option and exit 2, like every other
    configuration error; ``--help`` still shows the usage."""

    def error(self, message: str) -> NoReturn:
        print(f"cairn: {message}", file=sys.stderr)
        sys.exit(2)


def _serve_parser(sub: Any) -> None:
    from api.settings import LOG_LEVELS

    p = sub.add_parser("serve", help="run the broker")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default 8080)")
    p.add_argument(
        "--database-url",
        help="sqlite://RELATIVE or sqlite:///ABSOLUTE path (default sqlite://./data/cairn.db),"
        " or postgresql://USER:PASSWORD@HOST:PORT/DB: every node on one database is one broker",
    )
    p.add_argument("--redis-url", help="redis://host:port/db: fan events out via Redis Streams")
    p.add_argument("--redis-stream-maxlen", type=int, help="approximate stream length cap")
    p.add_argument("--workers", type=int, help="uvicorn worker processes (default 1)")
    p.add_argument("--jwt-secret", help="HS256 key: turns authentication on")
    p.add_argument("--jwt-public-key", help="PEM (or JWKS) file: RS256/ES256 authentication")
    p.add_argument("--jwt-audience", help="required aud claim")
    p.add_argument("--jwt-issuer", help="required iss claim")
    p.add_argument(
        "--insecure-no-auth",
        action="store_const",
        const=True,
        help="listen on a non-loopback address without authentication (dangerous)",
    )
    p.add_argument(
        "--metrics-public",
        action="store_const",
        const=True,
        help="serve /metrics without a token while auth is on (by default it needs the"
        " scope metrics or admin)",
    )
    p.add_argument(
        "--no-metrics-per-queue",
        action="store_const",
        const=True,
        help="/metrics shows broker-wide series only, no per-queue depth (very many queues)",
    )
    p.add_argument("--rate-limit", help='per client, e.g. "100/second"')
    p.add_argument("--sqs-account-id", help="account id in SQS queue URLs (default 000000000000)")
    p.add_argument(
        "--sqs-credentials", help="JSON file of SQS access keys (with auth on: SigV4 keys)"
    )
    p.add_argument("--log-level", choices=LOG_LEVELS)
    p.add_argument("--log-format", choices=("json", "console"))
    p.add_argument("--log-file", help="write logs here, rotated by size")
    p.add_argument(
        "--projector",
        choices=("process", "embedded"),
        help="apply projections in a process of their own (default) or in each worker",
    )
    p.add_argument("--kafka-port", type=int, help="also speak the Kafka protocol on this port")
    p.add_argument("--kafka-advertised-host", help="the host Kafka clients are told to connect to")
    p.add_argument(
        "--kafka-advertised-port", type=int, help="the port Kafka clients are told to connect to"
    )
    p.add_argument("--kafka-node-id", type=int, help="this node's Kafka broker id (default 0)")
    p.add_argument(
        "--kafka-max-request-bytes",
        type=int,
        help="largest Kafka request after authentication (default 100 MiB)",
    )
    p.add_argument(
        "--kafka-auto-create",
        action="store_const",
        const=True,
        help="a Kafka client naming an unknown topic creates the queue",
    )
    p.add_argument(
        "--history-retention",
        help="how long finished messages and their history stay readable (default 14d;"
        " e.g. 36h, 30d)",
    )
    p.add_argument(
        "--durability",
        choices=("full", "normal"),
        help="full: fsync every commit (default); normal: survive crashes, not power loss",
    )
    p.add_argument("--backup-dir", help="where automatic backups go (with --backup-every)")
    p.add_argument(
        "--backup-every",
        help="take a verified backup this often when the log moved: seconds, or 90s, 15m, 1h",
    )
    p.add_argument("--backup-keep", type=int, help="how many automatic backups to keep (default 7)")


def _projections_parser(sub: Any) -> None:
    p = sub.add_parser("projections", help="read-model operations")
    actions = p.add_subparsers(dest="action", required=True)
    rebuild = actions.add_parser("rebuild", help="replay the log into fresh read models")
    rebuild.add_argument("name", nargs="?", help="one projection (default: all)")
    rebuild.add_argument("--database-url", help="as for serve")
    rebuild.add_argument("--redis-url", help="as for serve (needed to rebuild 'redis')")


def _backup_parsers(sub: Any) -> None:
    backup = sub.add_parser("backup", help="a consistent copy of the store, while it runs")
    backup.add_argument("path", help="where the copy goes (a new file)")
    backup.add_argument("--database-url", help="as for serve")
    restore = sub.add_parser("restore", help="put a backup back (stop the server first)")
    restore.add_argument(
        "path", help="the backup to restore: a file, a backup folder, or a .dump (PostgreSQL)"
    )
    restore.add_argument("--database-url", help="as for serve")
    restore.add_argument(
        "--rewind",
        action="store_true",
        help="replace a store that is ahead of the backup (its later events are lost)",
    )
    listed = sub.add_parser("backups", help="list the automatic backups, newest first")
    listed.add_argument("--backup-dir", help="as for serve (or CAIRN_BACKUP_DIR)")


def _token_parser(sub: Any) -> None:
    p = sub.add_parser("token", help="mint a token signed with the configured secret (dev/tests)")
    p.add_argument("--sub", required=True, help="the subject (who the token is for)")
    p.add_argument(
        "--scope",
        required=True,
        help="space-separated: admin, queues:manage, events:read, metrics, publish:<glob>,"
        ' consume:<glob>, read:<glob> (e.g. "publish:orders.* consume:orders.*")',
    )
    p.add_argument(
        "--ttl", default="3600", help="how long until it expires: seconds, or 90s, 15m, 1.5h, 30d"
    )
    p.add_argument("--jwt-secret", help="as for serve (or CAIRN_JWT_SECRET)")
    p.add_argument("--jwt-audience", help="aud claim (or CAIRN_JWT_AUDIENCE)")
    p.add_argument("--jwt-issuer", help="iss claim (or CAIRN_JWT_ISSUER)")


def _settings(args: argparse.Namespace) -> Settings:
    from api import settings as config

    overrides = {
        field: getattr(args, field)
        for field in config.FIELDS
        if getattr(args, field, None) is not None
    }
    return config.from_env(**overrides)


def _fail(message: str, code: int = 2) -> int:
    print(f"cairn: {message}", file=sys.stderr)
    return code


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api import runtime
    from api import settings as config
    from api.http import CairnHttpProtocol
    from broker.errors import StoreUnavailableError
    from broker.store.postgres import describe

    if args.projector is None and config.env_name("projector") not in os.environ:
        args.projector = "process"
    settings = _settings(args)
    settings.check_backups()
    shown = describe(settings.database_url)
    _check_port(settings.host, settings.port)  # before the store is touched: nothing migrated

    async def prepare() -> None:
        await runtime.check(settings)
        await asyncio.wait_for(runtime.migrate(settings), runtime.MIGRATE_WITHIN_S)

    _Stop.deferred = True
    try:
        asyncio.run(prepare())
    except StoreUnavailableError as error:
        return _fail(f"--database-url {shown}: {error.detail}", 1)
    except Exception as error:  # one line, no traceback: the operator fixes the config
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else ""
        return _fail(f"--database-url {shown}: cannot open the store: {reason or error!r}", 1)
    finally:
        _Stop.deferred = False
    if _Stop.requested:
        return 0
    taken = _kafka_port_taken(settings)
    if taken is not None:
        return _fail(f"--kafka-port {settings.kafka_port}: {taken}", 1)
    os.environ.update(config.to_env(settings))
    projector = _Supervised([sys.executable, "-m", "api.projector"])
    try:
        if settings.projector == "process":
            projector.start()
        uvicorn.run(
            "api.app:create_app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=8,
            server_header=False,
            http=CairnHttpProtocol,
        )
    finally:
        projector.stop()
    return 0


def _check_port(host: str, port: int) -> None:
    """``ConfigError`` unless this process could listen on ``host:port`` now, bound as uvicorn
    binds (``SO_REUSEADDR``), so that a port in use is one line naming it instead of uvicorn's
    exit 3 after start-up (and after the store was migrated). Another process may still take
    the port in the moment between; uvicorn then refuses as before."""
    import socket

    from api.settings import ConfigError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except socket.gaierror as error:
            raise ConfigError(
                f"--host {host}: not an address to listen on ({error.strerror})"
            ) from None
        except OSError as error:
            raise ConfigError(
                f"--port {port}: cannot listen on {host}:{port} ({error.strerror})"
            ) from None


def _kafka_port_taken(settings: Settings) -> str | None:
    """Why the Kafka port cannot be listened on, if it cannot (the workers would otherwise
    wait for it for ever, each thinking another has it)."""
    if settings.kafka_port is None:
        return None
    import socket

    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.host, settings.kafka_port))
        except OSError as error:
            return error.strerror or str(error)
    return None


class _Supervised:
    """A child process kept running until ``stop``: restarted (after a second) if it dies."""

    def __init__(self, args: list[str]) -> None:
        self._args = args
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._keep, name="cairn-projector", daemon=True)

    def start(self) -> None:
        self._process = self._spawn()
        self._thread.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        # A session of its own: a Ctrl-C or a signal to the terminal's process group reaches
        # `serve` only, which stops the child itself once the workers are done.
        return subprocess.Popen(self._args, start_new_session=True)

    def _keep(self) -> None:
        while not self._stopping.is_set():
            assert self._process is not None
            code = self._process.wait()
            if self._stopping.is_set():
                return
            print(f"cairn: the projector process exited ({code}); restarting it", file=sys.stderr)
            if self._stopping.wait(1.0):
                return
            self._process = self._spawn()

    def stop(self) -> None:
        self._stopping.set()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def backup_or_restore(args: argparse.Namespace) -> int:
    from pathlib import Path

    from api.backup import BackupError, backup, restore
    from api.backups import DUMP, log_file_in, restore_postgres

    settings = _settings(args)
    source = Path(args.path)
    try:
        if settings.postgres:
            if args.command == "backup":
                # The database is the cluster's, and PostgreSQL's own tool copies it
                # consistently while it runs (or `serve --backup-dir` does it on a schedule).
                return _fail(
                    "cairn backup is for SQLite stores; on PostgreSQL use pg_dump -Fc, or"
                    " cairn serve --backup-dir DIR --backup-every DURATION",
                    1,
                )
            if not (source.is_file() and source.name.endswith(DUMP)):
                return _fail(f"{source} is not a PostgreSQL backup (a .dump file)", 1)
            position = asyncio.run(restore_postgres(source, settings.database_url))
            print(f"restored {source} at position {position}")
            return 0
        if args.command == "backup":
            position = backup(settings.sqlite_file, args.path)
            print(f"backed up {settings.sqlite_file} to {args.path} at position {position}")
        else:
            if source.name.endswith(DUMP):
                return _fail(
                    f"{source} is a PostgreSQL backup: restore it with a postgresql://"
                    " --database-url",
                    1,
                )
            log_file = log_file_in(source) if source.is_dir() else source
            position = restore(str(log_file), settings.sqlite_file, rewind=args.rewind)
            print(f"restored {args.path} to {settings.sqlite_file} at position {position}")
    except (BackupError, sqlite3.Error) as error:
        return _fail(str(error), 1)
    except OSError as error:
        return _fail(f"{args.path}: {error.strerror}", 1)
    return 0


def list_backups(args: argparse.Namespace) -> int:
    from pathlib import Path

    from api.backups import listing
    from api.settings import env_name

    folder = args.backup_dir or os.environ.get(env_name("backup_dir"))
    if not folder:
        return _fail("cairn backups needs --backup-dir (or CAIRN_BACKUP_DIR)")
    try:
        found = listing(Path(folder))
        rows = [(b, b.size) for b in found]
    except OSError as error:
        return _fail(f"--backup-dir {folder}: {error.strerror}", 1)
    print(f"{'TIME (UTC)':<22} {'POSITION':>12} {'SIZE':>10}  PATH")
    for found_backup, size in rows:
        taken = found_backup.taken.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{taken:<22} {found_backup.head:>12} {_size(size):>10}  {found_backup.path}")
    return 0


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value, unit = size / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"


def token(args: argparse.Namespace) -> int:
    from api.auth import SCOPE_GLOBS, SCOPE_WORDS, mint, unknown_scopes
    from api.settings import parse_duration

    settings = _settings(args)
    if settings.jwt_secret is None:
        return _fail("cairn token needs --jwt-secret (or CAIRN_JWT_SECRET) to sign with")
    ttl = parse_duration(args.ttl, "--ttl")
    assert ttl is not None  # no forever: a token must expire
    if not args.sub.strip():
        return _fail("--sub must name someone: the server refuses a token without a subject")
    unknown = unknown_scopes(args.scope)
    if unknown:
        words = ", ".join([*SCOPE_WORDS, *(f"{action}:<glob>" for action in SCOPE_GLOBS)])
        return _fail(f"--scope: {unknown[0]!r} is not a scope (scopes: {words})")
    print(
        mint(
            settings.jwt_secret,
            args.sub,
            args.scope,
            math.ceil(ttl),
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
    )
    return 0


def projections(args: argparse.Namespace) -> int:
    from rich.console import Console

    from api import runtime
    from api.rebuild import rebuild
    from broker.errors import StoreUnavailableError
    from broker.store.postgres import describe

    settings = _settings(args)
    console = Console(stderr=True)
    try:
        # A mistyped path must not become a new, empty store that "rebuilt" successfully.
        asyncio.run(runtime.check(settings, must_exist=True))
        done = asyncio.run(rebuild(settings, args.name, console))
    except StoreUnavailableError as error:
        return _fail(f"--database-url {describe(settings.database_url)}: {error.detail}", 1)
    except LookupError as error:
        return _fail(str(error))
    for name, result in done.items():
        rate = result["events"] / result["seconds"] if result["seconds"] else 0.0
        console.print(
            f"{name}: {result['events']:,} events in {result['seconds']:.2f} s ({rate:,.0f}/s)"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except Exception as error:
        if _Stop.requested and _stopped_by(error):
            return 0
        raise


def _stopped_by(error: BaseException) -> bool:
    """Whether ``error`` is the start-up SIGTERM's exit, wrapped on its way out: a SystemExit
    raised inside a descriptor's ``__set_name__`` (while an import creates a class) comes out
    as a RuntimeError caused by it."""
    cause = error.__cause__
    while cause is not None:
        if isinstance(cause, SystemExit):
            return True
        cause = cause.__cause__
    return False


def _main(argv: Sequence[str] | None) -> int:
    parser = _Parser(prog="cairn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _projections_parser(sub)
    _token_parser(sub)
    _backup_parsers(sub)
    args = parser.parse_args(argv)
    from api.settings import ConfigError

    try:
        if args.command == "serve":
            return serve(args)
        if args.command == "projections":
            return projections(args)
        if args.command == "token":
            return token(args)
        if args.command in ("backup", "restore"):
            return backup_or_restore(args)
        if args.command == "backups":
            return list_backups(args)
    except ConfigError as error:
        return _fail(str(error))
    return _fail(f"unknown command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
