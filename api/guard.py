"""The gate every ``/v1`` request passes (``api.middleware.Gateway`` asks it): who is calling
(bearer token, or anonymous when authentication is off), and whether they are over their rate
limit. ``/metrics`` passes it too while authentication is on (its series name every queue),
unless ``--metrics-public`` opens it as v1 had it. The other operational endpoints (health,
readiness, the OpenAPI document) pass freely: they name no queue.

Rate limits use the ``limits`` library's moving window, keyed by the token's subject (or the
client's address without authentication, and for every request whose token was refused, so
guessing tokens is throttled too). With ``--redis-url`` the windows live in Redis and every
worker and node draws on one budget. Answers carry the IETF ``RateLimit-*`` fields; a refusal
is a 429 problem with ``Retry-After``.
"""

from __future__ import annotations

import math
import time
from typing import Any, Final
from urllib.parse import parse_qs

import structlog
from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from starlette.responses import Response
from starlette.types import Scope

from api.auth import ANONYMOUS, Authenticator, AuthError, Principal
from api.metrics import PATH as METRICS_PATH
from api.problems import ApiError

log = structlog.get_logger(component="cairn.guard")

_BROWSER_TOKEN_PATHS: Final = ("/events/stream",)
_NO_TOKEN: Final = "no bearer token"


class RateLimiter:
    def __init__(self, rate: str, *, redis_pool: Any = None, redis_url: str | None = None) -> None:
        self.item: RateLimitItem = parse(rate)
        if redis_url is not None:
            storage = storage_from_string(
                "async+" + redis_url, implementation="redispy", connection_pool=redis_pool
            )
        else:
            storage = storage_from_string("async+memory://")
        self._limiter = MovingWindowRateLimiter(storage)

    async def hit(self, key: str) -> tuple[bool, dict[str, str]]:
        allowed = await self._limiter.hit(self.item, "cairn", key)
        stats = await self._limiter.get_window_stats(self.item, "cairn", key)
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        headers = {
            "RateLimit-Limit": str(self.item.amount),
            "RateLimit-Remaining": str(max(0, stats.remaining)),
            "RateLimit-Reset": str(reset),
        }
        if not allowed:
            headers["Retry-After"] = str(max(1, reset))
        return allowed, headers


class Guard:
    def __init__(
        self,
        authenticator: Authenticator | None,
        limiter: RateLimiter | None,
        *,
        metrics_public: bool = False,
    ) -> None:
        self.authenticator = authenticator
        self.limiter = limiter
        self.metrics_open = authenticator is None or metrics_public

    async def admit(self, scope: Scope, answer: list[tuple[bytes, bytes]]) -> Response | None:
        """Let a request in (its principal goes to ``scope["state"]``), or the refusal to
        answer instead. The rate-limit fields go into ``answer``, the headers the request's
        answer will carry whichever it is."""
        path = scope["path"]
        if path == METRICS_PATH and self.metrics_open:
            scope.setdefault("state", {})["principal"] = ANONYMOUS  # anyone may scrape
            return None
        if not path.startswith("/v1") and path != METRICS_PATH:
            return None
        principal: Principal | None = ANONYMOUS
        refusal: str | None = None
        if self.authenticator is not None:
            token = _token(scope)
            if token is None:
                principal, refusal = None, _NO_TOKEN
            else:
                try:
                    principal = self.authenticator.authenticate(token)
                except AuthError as error:
                    principal, refusal = None, str(error)
        if self.limiter is not None:
            key = f"sub:{principal.subject}" if principal and self.authenticator else _client(scope)
            try:
                allowed, headers = await self.limiter.hit(key)
            except Exception as error:  # the limiter's store is down: fail open, say so
                log.warning("rate_limiter_unavailable", error=str(error))
                allowed, headers = True, {}
            answer.extend((k.lower().encode(), v.encode()) for k, v in headers.items())
            if not allowed:
                return ApiError(429, f"rate limit of {self.limiter.item} exceeded").response()
        if principal is None:
            log.info("token_refused", reason=refusal, path=scope["path"])
            # RFC 6750 §3.1: a request with no token at all gets no error code.
            challenge = "Bearer" if refusal == _NO_TOKEN else 'Bearer error="invalid_token"'
            return ApiError(
                401,
                "a valid bearer token is required",
                headers={"WWW-Authenticate": challenge},
                slug="invalid-token",
            ).response()
        scope.setdefault("state", {})["principal"] = principal
        return None


def _token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            return credentials.strip() or None if scheme.lower() == "bearer" else None
    if scope["path"].endswith(_BROWSER_TOKEN_PATHS):
        # EventSource cannot send headers: feeds also take ?access_token= (RFC 6750 §2.3).
        values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("access_token")
        if values:
            token: str = values[-1]
            return token
    return None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"ip:{client[0]}" if client else "ip:unknown"
