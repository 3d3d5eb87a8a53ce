"""A queue's analytics: counts, dwell times and nack reasons per time bucket."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from api.body import parse_query
from api.endpoints import Endpoints
from api.past import parse_time
from api.problems import ApiError, FieldError
from api.responses import json_response
from api.routes.queues import queue_name
from api.schemas import AnalyticsQuery
from api.services import services
from broker.errors import QueueNotFoundError
from broker.state import to_us
from projections.analytics.buckets import KEPT_S
from projections.analytics.projector import AnalyticsProjector
from projections.analytics.query import Analytics, analytics

endpoints = Endpoints("analytics")

MAX_BUCKETS: Final = 1000
DEFAULT_WINDOW: Final = timedelta(hours=1)


@endpoints.add(
    "GET",
    "/v1/queues/{name}/analytics",
    "Counts, dwell times and nack reasons of a queue, per time bucket",
    query=AnalyticsQuery,
    responses={200: Analytics},
    errors=(404, 422),
    permission="read",
)
async def get_analytics(request: Request) -> Response:
    s = services(request)
    name = queue_name(request)
    query = parse_query(request, AnalyticsQuery)
    now = datetime.now(UTC)
    end = _time(query.to, "to") if query.to is not None else now
    start = _time(query.from_, "from") if query.from_ is not None else end - DEFAULT_WINDOW
    if start >= end:
        raise _invalid("from", f"must be before to ({end.isoformat()})")
    size = query.bucket_s
    # From the bucket holding ``from`` to the one holding ``to`` (excluded when ``to`` is
    # where a bucket starts), in whole microseconds: a float second would round.
    step = size * 1_000_000
    first = to_us(start) // step * size
    last = max(-(-to_us(end) // step) * size, first + size)
    count = (last - first) // size
    if count > MAX_BUCKETS:
        raise _invalid(
            "bucket_s",
            f"from..to holds {count} buckets of {size} s; at most {MAX_BUCKETS}:"
            " ask for a larger bucket_s or a shorter window",
        )
    kept = KEPT_S[size]
    if kept is not None and start < now - timedelta(seconds=kept):
        raise _invalid(
            "bucket_s",
            f"{size} s buckets are kept for {kept // 3600} h; from is older:"
            " ask for a larger bucket_s",
        )
    at = await s.read_position(query.min_position, AnalyticsProjector.name)
    found = await analytics(s.views, name, size, first, last)
    if found is None:
        raise QueueNotFoundError(f"queue {name!r} does not exist")
    return json_response(found, position=at)


def _time(text: str, field: str) -> datetime:
    parsed = parse_time(text)
    if parsed is None:
        raise _invalid(field, f"{text!r} is not an RFC 3339 time")
    return parsed


def _invalid(field: str, why: str) -> ApiError:
    return ApiError(422, f"query.{field}: {why}", errors=[FieldError(f"query.{field}", why)])
