"""The one middleware every request passes, in place of Starlette's stack: the request id, the
gate (``api.guard``), errors as problem+json, request metrics and the canonical request line.

Starlette wraps an app in a server-error middleware, the user's middlewares and an exception
middleware, each a coroutine frame per request and a ``send`` wrapper per message; profiled
under a publish load that machinery and its wrappers were a third of the serving thread. Here
it is one frame and one ``send`` wrapper, pure ASGI (no ``BaseHTTPMiddleware``: it buffers,
and it would break streaming responses).
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from typing import Any, Final

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.guard import Guard
from api.metrics import Metrics
from api.problems import ApiError, from_broker
from broker.errors import BrokerError

log = structlog.get_logger(component="cairn.http")
errors_log = structlog.get_logger(component="cairn")

_DETAIL: Final = {404: "no such endpoint"}


class Gateway:
    def __init__(self, app: ASGIApp, metrics: Metrics, guard: Guard) -> None:
        self.app = app
        self.metrics = metrics
        self.guard = guard
        # Which process answered, for --workers N deployments (debugging, and tests that
        # must know a command and a feed met different workers).
        self.worker = str(os.getpid()).encode()
        # Request ids need only be unique: a random prefix per process and a counter are
        # enough, and cost nothing next to a uuid4 per request (~3% of the CPU).
        self.prefix = uuid.uuid4().hex[:12]
        self.counter = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the lifespan
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _header(scope, b"x-request-id") or f"{self.prefix}{next(self.counter):x}"
        structlog.contextvars.bind_contextvars(request_id=request_id)
        answer: list[tuple[bytes, bytes]] = [
            (b"x-request-id", request_id.encode()),
            (b"x-cairn-worker", self.worker),
        ]
        status = 0  # no answer started yet

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *answer]
            await send(message)

        try:
            refusal = await self.guard.admit(scope, answer)
            if refusal is not None:
                await refusal(scope, receive, send_with_headers)
            else:
                await self.app(scope, receive, send_with_headers)
        except Exception as error:
            if status:  # the answer has begun: nothing to do but let the server close it
                raise
            await problem_of(error, scope)(scope, receive, send_with_headers)
        finally:
            seconds = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            status = status or 500
            self.metrics.observe_request(scope["method"], template, status, seconds)
            log.info(
                "request",
                method=scope["method"],
                route=template,
                path=scope["path"],
                status=status,
                duration_ms=round(seconds * 1000, 3),
            )
            structlog.contextvars.unbind_contextvars("request_id")


def problem_of(error: Exception, scope: Scope) -> Response:
    """The problem+json answer for an exception a route (or the router) raised."""
    if isinstance(error, ApiError):
        return error.response()
    if isinstance(error, BrokerError):
        return from_broker(error).response()
    if isinstance(error, ClientDisconnect):  # the body never ended: nobody hears the answer,
        # but the request line says what happened (api/http.py answers it where it can)
        return ApiError(400, "the client went away before the request body ended").response()
    if isinstance(error, HTTPException):  # the router's 404 and 405
        detail = _DETAIL.get(error.status_code) or (
            f"{scope['method']} is not allowed here"
            if error.status_code == 405
            else str(error.detail)
        )
        return ApiError(error.status_code, detail, headers=dict(error.headers or {})).response()
    errors_log.exception("unhandled_error", path=scope["path"])
    return ApiError(500, "an unexpected error occurred; it has been logged").response()


def _header(scope: Scope, name: bytes) -> str | None:
    headers: Any = scope.get("headers", [])
    for key, value in headers:
        if key == name:
            decoded: str = value.decode("latin-1")[:128]
            return decoded
    return None
