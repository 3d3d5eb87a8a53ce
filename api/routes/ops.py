"""Operational endpoints (no ``/v1``, no auth) and the projections' status."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import metrics as metrics_module
from api.endpoints import Endpoints
from api.responses import json_response
from api.routes.queues import now_us, read_query
from api.schemas import Health, ProjectionInfo, ProjectionsResponse, ReadQuery
from api.services import Services, services
from broker.errors import BrokerError
from projections import queries, redis_streams

endpoints = Endpoints("operations")


@endpoints.add("GET", "/healthz", "The process is up", responses={200: Health})
async def healthz(request: Request) -> Response:
    return json_response(Health("ok"))


@endpoints.add(
    "GET",
    "/readyz",
    "The store answers and no projection is stuck",
    responses={200: Health, 503: Health},
)
async def readyz(request: Request) -> Response:
    s = services(request)
    checks: dict[str, str] = {}
    try:
        await s.store.head()
        checks["store"] = "ok"
    except BrokerError as error:
        checks["store"] = f"unavailable: {error.detail}"
    else:  # (the read models are in the store's database, or in a file beside it)
        checks["projections"] = await _projections_check(s)
    if s.writer.failing is not None:  # reads work, writes do not (a full disk, say)
        checks["store"] = f"refusing writes: {s.writer.failing}"
    if s.redis is not None:
        checks["redis"] = "ok" if await redis_streams.ping(s.redis) else "unavailable"
    ready = all(v == "ok" for v in checks.values()) and not s.shutdown.is_set()
    return json_response(Health("ok" if ready else "unavailable", checks), 200 if ready else 503)


async def _projections_check(s: Services) -> str:
    """``ok``, or which projections are stuck at which event. Not the error: it may name a
    queue, and ``/readyz`` is open to anyone; the projector's log has it."""
    try:
        stuck = await s.runner.stuck()
    except BrokerError as error:
        return f"unavailable: {error.detail}"
    said = [
        f"{each.projection} stuck at position {each.position} for {each.for_s:.0f} s"
        for each in stuck
    ]
    return "; ".join(said) or "ok"


@endpoints.add(
    "GET", metrics_module.PATH, "Prometheus metrics", responses={200: None}, permission="metrics"
)
async def metrics(request: Request) -> Response:
    # The read side's gauges are computed here, when scraped, and only then: a broker that
    # nobody scrapes spends nothing on them, however many queues it holds.
    s = services(request)
    head = await s.store.head()
    per_queue = not s.settings.no_metrics_per_queue
    depths = await queries.queue_depths(s.views, now_us()) if per_queue else None
    s.metrics.set_read_side(head, await s.projections())
    return Response(s.metrics.render(depths), media_type=metrics_module.CONTENT_TYPE)


@endpoints.add("GET", "/openapi.json", "This document", responses={200: None})
async def openapi(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


@endpoints.add(
    "GET",
    "/v1/projections",
    "Where each projection stands against the log head",
    query=ReadQuery,
    responses={200: ProjectionsResponse},
    errors=(422,),
    permission="any",
)
async def projections(request: Request) -> Response:
    s = services(request)
    await s.read_position(read_query(request).min_position)
    head = await s.store.head()
    infos = [
        ProjectionInfo(name, position, max(0, head - position))
        for name, position in (await s.projections()).items()
    ]
    # Like every read, it says what it reflects: the position all the projections listed have
    # reached (API.md, "Clarifications of v1").
    lowest = min((info.position for info in infos), default=head)
    return json_response(ProjectionsResponse(infos, head), position=lowest)
