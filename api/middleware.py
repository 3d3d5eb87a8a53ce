"""The canonical request line, request ids and request metrics: one pure ASGI middleware (no
BaseHTTPMiddleware: it buffers, and it would break streaming responses)."""

from __future__ import annotations

import itertools
import os
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import Metrics

log = structlog.get_logger(component="cairn.http")


class RequestLog:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # Which process answered, for --workers N deployments (debugging, and tests that
        # must know a command and a feed met different workers).
        self.worker = str(os.getpid()).encode()
        # Request ids need only be unique: a random prefix per process and a counter are
        # enough, and cost nothing next to a uuid4 per request (~3% of the CPU).
        self.prefix = uuid.uuid4().hex[:12]
        self.counter = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _header(scope, b"x-request-id") or f"{self.prefix}{next(self.counter):x}"
        status = 500
        structlog.contextvars.bind_contextvars(request_id=request_id)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                headers.append((b"x-cairn-worker", self.worker))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
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


def _header(scope: Scope, name: bytes) -> str | None:
    headers: Any = scope.get("headers", [])
    for key, value in headers:
        if key == name:
            decoded: str = value.decode("latin-1")[:128]
            return decoded
    return None
