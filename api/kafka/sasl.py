"""SASL/PLAIN with Cairn's tokens: the password is a JWT (the user name is ignored), checked as
HTTP checks a bearer token; its scopes are the connection's for as long as it lives, which is
until the token expires (or it authenticates again, KIP-368)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

import structlog
from kio.schema.errors import ErrorCode

from api.auth import ANONYMOUS, AuthError, Principal
from api.kafka.codec import respond
from api.kafka.door import Connection, Door

log = structlog.get_logger(component="cairn.kafka")

PLAIN: Final = "PLAIN"


async def handshake(door: Door, conn: Connection, request: Any) -> Any:
    if request.mechanism != PLAIN:
        conn.closing = f"SASL mechanism {request.mechanism!r} is not offered"
        return respond(request, error_code=ErrorCode.unsupported_sasl_mechanism, mechanisms=[PLAIN])
    conn.mechanism = PLAIN
    # v0: the next frame is the bare SASL token, not a SaslAuthenticate request.
    conn.raw_sasl = request.__version__ == 0
    return respond(request, error_code=ErrorCode.none, mechanisms=[PLAIN])


async def authenticate(door: Door, conn: Connection, request: Any) -> Any:
    if conn.mechanism != PLAIN:
        conn.closing = "SaslAuthenticate before SaslHandshake"
        return respond(
            request,
            error_code=ErrorCode.illegal_sasl_state,
            error_message="send SaslHandshake with mechanism PLAIN first",
            auth_bytes=b"",
        )
    principal = check(door, conn, bytes(request.auth_bytes))
    if principal is None:
        return respond(
            request,
            error_code=ErrorCode.sasl_authentication_failed,
            error_message="authentication failed: the password must be a valid Cairn token",
            auth_bytes=b"",
        )
    lifetime_ms = _lifetime_ms(principal)
    return respond(request, error_code=ErrorCode.none, auth_bytes=b"", session_lifetime=lifetime_ms)


def check(door: Door, conn: Connection, token: bytes) -> Principal | None:
    """Authenticate the connection with a PLAIN token (``authzid NUL user NUL password``);
    on refusal, mark it for closing and return None."""
    conn.mechanism = None
    principal = _principal(door, token)
    if principal is None:
        conn.closing = "SASL authentication failed"
        return None
    conn.principal = principal
    if conn.expiry is not None:
        conn.expiry.cancel()
        conn.expiry = None
    if principal.expires_at is not None:
        loop = asyncio.get_running_loop()
        conn.expiry = loop.call_at(
            loop.time() + max(principal.expires_at - time.time(), 0), conn.expire
        )
    return principal


def _principal(door: Door, token: bytes) -> Principal | None:
    parts = token.split(b"\0")
    if len(parts) != 3:
        log.info("kafka_sasl_refused", reason="not a PLAIN token")
        return None
    if door.authenticator is None:
        return ANONYMOUS  # authentication is off: anyone is everyone
    try:
        return door.authenticator.authenticate(parts[2].decode())
    except (AuthError, UnicodeDecodeError) as error:
        log.info("kafka_sasl_refused", reason=str(error))
        return None


def _lifetime_ms(principal: Principal) -> int:
    if principal.expires_at is None:
        return 0
    return max(int((principal.expires_at - time.time()) * 1000), 1)
