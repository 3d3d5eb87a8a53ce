"""The Starlette application: routes, error handling, middleware and the broker's lifespan."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from api import logs, openapi, services
from api.endpoints import Endpoint, routes
from api.guard import Guard, RateLimiter
from api.metrics import Metrics
from api.middleware import RequestLog
from api.problems import ApiError, from_broker
from api.routes import analytics, events, messages, ops, queues
from api.settings import Settings, from_env
from api.sqs import door as sqs_door
from api.ui import dashboard
from broker.errors import BrokerError
from projections import redis_streams

log = structlog.get_logger(component="cairn")

ENDPOINTS: list[Endpoint] = [
    *queues.endpoints.items,
    *analytics.endpoints.items,
    *messages.endpoints.items,
    *events.endpoints.items,
    *ops.endpoints.items,
]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _broker_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BrokerError)
    return from_broker(exc).response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = {404: "no such endpoint", 405: f"{request.method} is not allowed here"}.get(
        exc.status_code, str(exc.detail)
    )
    return ApiError(exc.status_code, detail, headers=dict(exc.headers or {})).response()


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled_error", path=request.url.path)
    return ApiError(500, "an unexpected error occurred; it has been logged").response()


def create_app(settings: Settings) -> Starlette:
    metrics = Metrics()
    # One Redis client for the streams and the shared rate-limit windows; it connects lazily.
    redis = redis_streams.connect(settings.redis_url) if settings.redis_url else None
    limiter = (
        RateLimiter(
            settings.rate_limit,
            redis_url=settings.redis_url,
            redis_pool=redis.connection_pool if redis is not None else None,
        )
        if settings.rate_limit
        else None
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.services = await services.start(settings, metrics, redis)
        # What start-up made (modules, routes, schemas, the store's objects) lives as long as
        # the process: out of the cycle collector's way, so that its full collections do not
        # walk it again and again (under load they took ~12% of a publish's CPU).
        gc.freeze()
        try:
            yield
        finally:
            await services.stop(app.state.services)

    exception_handlers: dict[Any, Any] = {
        ApiError: _api_error,
        BrokerError: _broker_error,
        HTTPException: _http_error,
        Exception: _unexpected,
    }
    app = Starlette(
        routes=[
            *routes(ENDPOINTS),
            *sqs_door.ROUTES,
            *dashboard.routes(auth=settings.auth),
        ],
        middleware=[
            Middleware(RequestLog, metrics=metrics),
            Middleware(Guard, authenticator=settings.authenticator(), limiter=limiter),
        ],
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )
    app.state.limiter = limiter  # the SQS door draws on the same budgets (api/sqs/door.py)
    app.state.openapi = openapi.build(
        ENDPOINTS,
        title="Cairn",
        version=version("cairn"),
        auth=settings.auth,
    )
    return app


def create_app_from_env() -> Starlette:
    """uvicorn's factory: every worker process builds its app from the ``CAIRN_*`` variables
    that ``cairn serve`` exported after validating them."""
    settings = from_env()
    logs.configure(
        level=settings.log_level,
        fmt=settings.log_format,
        file=settings.log_file,
        max_bytes=settings.log_file_max_bytes,
        backups=settings.log_file_backups,
    )
    return create_app(settings)
