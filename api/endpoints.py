"""Routes declared once, with the types that describe them: Starlette routes and the OpenAPI
document are both built from the same ``Endpoint`` list, so the docs cannot drift."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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
    """Status → response type (None: no body). Error statuses are added by the OpenAPI
    builder from ``errors``."""
    errors: tuple[int, ...] = ()
    stream: bool = False
    """A Server-Sent-Events response (``text/event-stream``)."""

    def route(self) -> Route:
        return Route(self.path, self.handler, methods=[self.method], name=self.handler.__name__)


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
                )
            )
            return handler

        return register
