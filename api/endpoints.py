"""Routes declared once, with the types that describe them: Starlette routes and the OpenAPI
document are both built from the same ``Endpoint`` list, so the docs cannot drift."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from api import idempotency, tracing
from api.auth import Action, Principal
from api.problems import ApiError
from api.services import services

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    body: Any = None
    query: Any = None
    responses: Mapping[int, Any] = field(default_factory=dict)
    """Status → response type (None: no body; a tuple: one of these). Error statuses are
    added by the OpenAPI builder from ``errors``."""
    errors: tuple[int, ...] = ()
    stream: bool = False
    """A Server-Sent-Events response (``text/event-stream``)."""
    body_optional: bool = False
    """An empty body means all defaults."""
    permission: Action | None = None
    """What the caller's token must allow, on the ``{name}`` queue when the path has one.
    None: not behind the gate (operational endpoints)."""
    idempotent: bool = True
    """A command route that takes ``Idempotency-Key`` (every POST/PATCH/DELETE under ``/v1``
    but receive, which says False: a repeated receive is another receive)."""

    @property
    def is_command(self) -> bool:
        return self.method in ("POST", "PATCH", "DELETE") and self.path.startswith("/v1/")

    def guarded(self) -> Handler:
        """The handler, behind the scope check this endpoint asks for (and, on a command
        route, with the request's trace context and under its idempotency key)."""
        handler = self.command() if self.is_command else self.handler
        permission = self.permission
        if permission is None:
            return handler

        async def guarded(request: Request) -> Response:
            if not principal(request).may(permission, request.path_params.get("name")):
                raise forbidden()
            return await handler(request)

        return guarded

    def command(self) -> Handler:
        handler, idempotent = self.handler, self.idempotent

        async def command(request: Request) -> Response:
            token = tracing.CURRENT.set(tracing.trace_of(request.headers))
            try:
                if not idempotent:
                    return await handler(request)
                running = services(request)
                return await idempotency.run(
                    handler,
                    request,
                    subject=principal(request).subject,
                    limit=running.settings.max_request_bytes,
                    inflight=running.inflight,
                    recall=running.writer.recall,
                    keep=running.writer.record_answer,
                )
            finally:
                tracing.CURRENT.reset(token)

        return command


def routes(endpoints: list[Endpoint]) -> list[Route]:
    """One Starlette route per path, dispatching on the method, so that a 405 answer's
    ``Allow`` names every method the path has."""
    by_path: dict[str, dict[str, Handler]] = {}
    for endpoint in endpoints:
        by_path.setdefault(endpoint.path, {})[endpoint.method] = endpoint.guarded()
    return [
        Route(path, _Serve(handlers), methods=list(handlers)) for path, handlers in by_path.items()
    ]


class _Serve:
    """A path's handlers as the ASGI app its route calls. (Given a function, Starlette would
    wrap it in an exception-handling layer of its own; errors are ``api.middleware``'s.)"""

    def __init__(self, handlers: dict[str, Handler]) -> None:
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        response = await self.handlers[method](Request(scope, receive, send))
        await response(scope, receive, send)


def forbidden() -> ApiError:
    """The one 403: a valid token whose scope does not allow the action (RFC 6750)."""
    return ApiError(
        403,
        "the token's scope does not allow this",
        headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
        slug="insufficient-scope",
    )


def principal(request: Request) -> Principal:
    """Who is calling (set by ``api.guard.Guard``; anonymous when authentication is off)."""
    found: Principal = request.scope.get("state", {}).get("principal", _NOBODY)
    return found


_NOBODY: Final = Principal(subject="nobody")
"""Who a request is if it somehow bypassed the gate: allowed nothing."""


class Endpoints:
    """A module's endpoints; handlers register with the ``@endpoints.add(...)`` decorator."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.items: list[Endpoint] = []

    def add(
        self,
        method: str,
        path: str,
        summary: str,
        *,
        body: Any = None,
        query: Any = None,
        responses: Mapping[int, Any] | None = None,
        errors: tuple[int, ...] = (),
        stream: bool = False,
        body_optional: bool = False,
        permission: Action | None = None,
        idempotent: bool = True,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.items.append(
                Endpoint(
                    method=method,
                    path=path,
                    handler=handler,
                    summary=summary,
                    tag=self.tag,
                    body=body,
                    query=query,
                    responses=responses or {},
                    errors=errors,
                    stream=stream,
                    body_optional=body_optional,
                    permission=permission,
                    idempotent=idempotent,
                )
            )
            return handler

        return register
