"""The Starlette application: routes, the one middleware (errors, auth, logs, metrics) and the
broker's lifespan."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp

from api import logs, openapi, services
from api.endpoints import Endpoint, routes
from api.guard import Guard, RateLimiter
from api.kafka import serve as kafka
from api.metrics import Metrics
from api.middleware import Gateway
from api.routes import analytics, events, messages, ops, queues
from api.settings import Settings, from_env
from api.sqs import door as sqs_door
from api.ui import dashboard
from projections import redis_streams

ENDPOINTS: list[Endpoint] = [
    *queues.endpoints.items,
    *analytics.endpoints.items,
    *messages.endpoints.items,
    *events.endpoints.items,
    *ops.endpoints.items,
]


class _App(Starlette):
    """Starlette's routing, state and lifespan behind Cairn's one middleware
    (``api.middleware.Gateway``), which replaces Starlette's own stack."""

    def __init__(self, gateway: Callable[[ASGIApp], ASGIApp], **kwargs: Any) -> None:
        self._gateway = gateway
        super().__init__(**kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        return self._gateway(self.router)


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
        running = app.state.services = await services.start(settings, metrics, redis)
        if settings.kafka_port is not None:
            door = kafka.door_of(running)
            running.tasks.append(asyncio.create_task(kafka.serve(door), name="cairn-kafka"))
        # What start-up made (modules, routes, schemas, the store's objects) lives as long as
        # the process: out of the cycle collector's way, so that its full collections do not
        # walk it again and again (under load they took ~12% of a publish's CPU).
        gc.freeze()
        try:
            yield
        finally:
            await services.stop(app.state.services)

    guard = Guard(settings.authenticator(), limiter, metrics_public=settings.metrics_public)
    app = _App(
        lambda router: Gateway(router, metrics, guard),
        routes=[
            *routes(ENDPOINTS),
            *sqs_door.ROUTES,
            *dashboard.routes(auth=settings.auth),
        ],
        lifespan=lifespan,
    )
    app.state.limiter = limiter  # the SQS door draws on the same budgets (api/sqs/door.py)
    app.state.openapi = openapi.build(
        ENDPOINTS,
        title="Cairn",
        version=version("cairn"),
        auth=settings.auth,
        metrics_public=settings.metrics_public,
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
