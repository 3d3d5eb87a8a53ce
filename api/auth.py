"""Bearer-token authentication and scope checks (RFC 6750, RFC 8725, RFC 9068).

What a token must be: signed with the configured key by an algorithm on a fixed allow-list
(HS256 for ``--jwt-secret``; RS256 or ES256 by the type of ``--jwt-public-key``; the token's
own ``alg`` header only ever selects among those, so ``none`` and HS/RS key confusion fail);
carry ``exp`` and ``sub``; be within ``nbf``/``exp`` (with a few seconds of leeway); match
``aud`` and ``iss`` when configured. Which check failed is logged, never told to the client.

What it may do comes from its space-separated ``scope`` claim: ``admin``, ``queues:manage``,
``events:read``, ``metrics`` (``GET /metrics``), and ``publish:``, ``consume:``, ``read:`` each
followed by a queue-name glob in which ``*`` matches any run of characters
(``publish:orders.*``). Words of other grammars are ignored (a token may carry scopes meant for
other services), but ``cairn token`` refuses them: there they are typos.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import jwt
import structlog
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

log = structlog.get_logger(component="cairn.auth")

Action = Literal["manage", "publish", "consume", "read", "log", "metrics", "any"]
LEEWAY_S: Final = 5
_NUMERIC_DATES: Final = ("exp", "nbf", "iat")
MIN_SECRET_BYTES: Final = 32
SCOPE_WORDS: Final = ("admin", "queues:manage", "events:read", "metrics")
SCOPE_GLOBS: Final = ("publish", "consume", "read")


class AuthError(Exception):
    """The token is missing or not acceptable. The message is for the log only."""


class KeyConfigError(ValueError):
    """The configured key cannot be used (a configuration error)."""


def unknown_scopes(scope: str) -> list[str]:
    """The words of ``scope`` that are not Cairn scopes."""
    return [
        word
        for word in scope.split()
        if word not in SCOPE_WORDS
        and not (word.partition(":")[0] in SCOPE_GLOBS and word.partition(":")[2])
    ]


def glob_pattern(glob: str) -> re.Pattern[str]:
    """A queue-name glob (``*``: any run of characters) as a regex, for ``fullmatch``."""
    return re.compile(".*".join(re.escape(part) for part in glob.split("*")))


@dataclass(frozen=True)
class Principal:
    subject: str
    expires_at: float | None = None
    admin: bool = False
    manage: bool = False
    events: bool = False
    metrics: bool = False
    globs: dict[str, tuple[re.Pattern[str], ...]] = field(default_factory=dict)

    @classmethod
    def from_scope(cls, subject: str, scope: str, expires_at: float | None) -> Principal:
        tokens = scope.split()
        globs: dict[str, list[re.Pattern[str]]] = {action: [] for action in SCOPE_GLOBS}
        for token in tokens:
            action, _, glob = token.partition(":")
            if action in globs and glob:
                globs[action].append(glob_pattern(glob))
        return cls(
            subject=subject,
            expires_at=expires_at,
            admin="admin" in tokens,
            manage="queues:manage" in tokens,
            events="events:read" in tokens,
            metrics="metrics" in tokens,
            globs={action: tuple(patterns) for action, patterns in globs.items()},
        )

    def _matches(self, action: str, queue: str) -> bool:
        return any(p.fullmatch(queue) for p in self.globs.get(action, ()))

    def can_read(self, queue: str) -> bool:
        return self.admin or self.events or self._matches("read", queue)

    @property
    def reads_everything(self) -> bool:
        return self.admin or self.events

    def may(self, action: Action, queue: str | None) -> bool:
        """May this principal run ``action`` (on ``queue`` when the route names one)?"""
        if self.admin or action == "any":
            return True
        match action:
            case "manage":
                return self.manage
            case "metrics":
                return self.metrics
            case "log":  # the log: all of it, or the queues it may read (filtered)
                if queue is not None:
                    return self.can_read(queue)
                return self.events or bool(self.globs.get("read"))
            case "read" if queue is None:  # a listing: filtered to what it may read
                return self.events or bool(self.globs.get("read"))
            case "read":
                return self.can_read(queue) if queue is not None else False
            case "publish" | "consume":
                return queue is not None and self._matches(action, queue)
        return False


ANONYMOUS: Final = Principal(subject="anonymous", admin=True)
"""Who everyone is when authentication is off (only allowed on loopback, see settings)."""


@dataclass(frozen=True)
class _Key:
    key: Any
    algorithm: str


class Authenticator:
    def __init__(
        self,
        *,
        secret: str | None = None,
        public_key_file: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
    ) -> None:
        if (secret is None) == (public_key_file is None):
            raise KeyConfigError("give exactly one of --jwt-secret and --jwt-public-key")
        self._audience = audience
        self._issuer = issuer
        self._single: _Key | None = None
        self._by_kid: dict[str, _Key] = {}
        if secret is not None:
            if len(secret.encode()) < MIN_SECRET_BYTES:
                raise KeyConfigError(
                    f"--jwt-secret must be at least {MIN_SECRET_BYTES} bytes (HS256, RFC 7518)"
                )
            self._single = _Key(secret.encode(), "HS256")
        else:
            assert public_key_file is not None
            self._load(Path(public_key_file))

    def _load(self, path: Path) -> None:
        try:
            text = path.read_text()
        except OSError as error:
            raise KeyConfigError(f"--jwt-public-key {path}: {error.strerror}") from None
        if text.lstrip().startswith("{"):
            try:
                document = json.loads(text)
                jwks = document.get("keys", [document])
                for entry in jwks:
                    jwk = jwt.PyJWK(entry)
                    algorithm = _algorithm_of(jwk.key)
                    declared = entry.get("alg")
                    if declared is not None and declared != algorithm:
                        raise KeyConfigError(
                            f"key {entry.get('kid')!r}: alg {declared} not allowed"
                        )
                    self._by_kid[str(entry.get("kid", ""))] = _Key(jwk.key, algorithm)
            except (ValueError, KeyError, TypeError, jwt.PyJWKError) as error:
                raise KeyConfigError(
                    f"--jwt-public-key {path}: not a usable JWK set ({error})"
                ) from None
            if not self._by_kid:
                raise KeyConfigError(f"--jwt-public-key {path}: the JWK set has no keys")
            return
        try:
            key = load_pem_public_key(text.encode())
        except ValueError as error:
            raise KeyConfigError(
                f"--jwt-public-key {path}: not a PEM public key ({error})"
            ) from None
        self._single = _Key(key, _algorithm_of(key))

    def authenticate(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            key = self._key_for(header)
            required = ["exp", "sub"]
            if self._audience is not None:
                required.append("aud")
            if self._issuer is not None:
                required.append("iss")
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_S,
                options={"require": required, "verify_aud": self._audience is not None},
            )
        except jwt.PyJWTError as error:  # every refusal, InvalidKeyError for an unknown kid too
            raise AuthError(f"{type(error).__name__}: {error}") from None
        for name in _NUMERIC_DATES:
            # RFC 7519 §2: a NumericDate is a JSON number; pyjwt would take "exp": "99999".
            value = claims.get(name)
            if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise AuthError(f"{name} is not a NumericDate")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthError("sub is not a non-empty string")
        scope = claims.get("scope", "")
        if not isinstance(scope, str):  # RFC 8693 §4.2 and the contract: space-separated
            raise AuthError("scope is not a space-separated string")
        return Principal.from_scope(subject, scope, float(claims["exp"]))

    def _key_for(self, header: dict[str, Any]) -> _Key:
        if self._single is not None:
            return self._single
        kid = header.get("kid")
        if not isinstance(kid, str) or kid not in self._by_kid:
            raise jwt.InvalidKeyError(f"unknown kid {kid!r}")
        return self._by_kid[kid]


def _algorithm_of(key: Any) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise KeyConfigError(f"RSA keys must have at least 2048 bits (this has {key.key_size})")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise KeyConfigError(f"EC keys must be on P-256 for ES256 (this is {key.curve.name})")
        return "ES256"
    raise KeyConfigError(
        f"{type(key).__name__} keys are not supported: use RSA (RS256) or P-256 (ES256)"
    )


def mint(
    secret: str,
    subject: str,
    scope: str,
    ttl_s: int,
    *,
    audience: str | None = None,
    issuer: str | None = None,
) -> str:
    """An HS256 token, for development and tests (``cairn token``)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "scope": scope,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_s,
    }
    if audience is not None:
        claims["aud"] = audience
    if issuer is not None:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")
