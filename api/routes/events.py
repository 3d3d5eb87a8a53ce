"""The event log: pages of it, and Server-Sent-Events feeds that replay and then follow it.

A feed registers with the live tail *before* it reads the past, so every event is either in
what it reads from the store (positions up to where its subscription starts) or in what the
tail hands it afterwards; positions it has already sent are skipped. Catch-up and the switch
to live therefore deliver each matching event exactly once, in position order.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Final

import msgspec
from msgspec import Meta
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response

from api.auth import Principal
from api.body import parse_query
from api.endpoints import Endpoints, forbidden, principal
from api.problems import ApiError, FieldError
from api.responses import json_response
from api.routes.queues import now_us, queue_name
from api.schemas import INT64_MAX, MinPosition, Position
from api.services import Services, services
from broker.commands import QueueName
from broker.errors import QueueNotFoundError
from projections import queries
from projections.tail import Overflow, frame_of, matches

endpoints = Endpoints("events")

_TYPE_PATTERN: Final = re.compile(r"^[a-z_]+(\.[a-z_]+)*(\.\*|\*)?$")
_PAGE: Final = 1000

TypesFilter = Annotated[
    str,
    Meta(
        pattern=r"^ *[a-z_]+(\.[a-z_]+)*(\.\*|\*)? *(, *[a-z_]+(\.[a-z_]+)*(\.\*|\*)? *)*$",
        description="Comma-separated event types; one ending in * is a prefix (message.*).",
    ),
]


class EventsQuery(msgspec.Struct, kw_only=True):
    after: Position = 0
    limit: Annotated[int, Meta(ge=1, le=_PAGE)] = 500
    queue: QueueName | None = None
    types: TypesFilter | None = None
    """Comma-separated event types; a type ending in ``*`` is a prefix (``message.*``)."""
    min_position: MinPosition | None = None


class QueueStreamQuery(msgspec.Struct, kw_only=True):
    after: Position | None = None
    last_event_id: Position | None = None
    types: TypesFilter | None = None
    access_token: str | None = None
    min_position: MinPosition | None = None


class StreamQuery(QueueStreamQuery, kw_only=True):
    queue: QueueName | None = None


class EventsPage(msgspec.Struct):
    events: list[msgspec.Raw]
    next_after: int


def _types(raw: str | None) -> list[str] | None:
    if raw is None or raw.strip() == "":
        return None
    types = [t.strip() for t in raw.split(",") if t.strip()]
    for type_ in types:
        if not _TYPE_PATTERN.match(type_):
            raise ApiError(
                422,
                f"{type_!r} is not an event type or a prefix ending in '*'",
                errors=[FieldError("query.types", "not an event type")],
            )
    return types


@endpoints.add(
    "GET",
    "/v1/events",
    "A page of the event log",
    query=EventsQuery,
    responses={200: EventsPage},
    errors=(422,),
    permission="log",
)
async def list_events(request: Request) -> Response:
    s = services(request)
    query = parse_query(request, EventsQuery)
    types = _types(query.types)
    caller = principal(request)
    if query.queue is not None and not caller.can_read(query.queue):
        raise forbidden()
    at = await s.log_position(query.min_position)
    if caller.reads_everything or query.queue is not None:
        found = await s.store.read(query.after, query.limit, queue=query.queue, types=types)
        scanned = found[-1].position if found else query.after
    else:  # only the queues this caller may read; page on by what was scanned
        found, scanned = [], query.after
        while len(found) < query.limit:
            batch = await s.store.read(scanned, _PAGE, types=types, until=at)
            if not batch:
                break
            for stored in batch:
                scanned = stored.position
                if caller.can_read(stored.queue):
                    found.append(stored)
                    if len(found) == query.limit:
                        break
    page = EventsPage([msgspec.Raw(stored.json()) for stored in found], scanned)
    return json_response(page, position=max(at, page.next_after))


def _start(request: Request, query: QueueStreamQuery) -> int | None:
    """Where a feed resumes: Last-Event-ID header, then ?last_event_id, then ?after."""
    header = request.headers.get("last-event-id")
    if header is not None and header.strip():
        try:
            value = int(header.strip())
        except ValueError:
            value = -1
        if not 0 <= value <= INT64_MAX:
            raise ApiError(
                422,
                f"Last-Event-ID {header!r} is not a position",
                errors=[FieldError("header.Last-Event-ID", "not a position (0..2^63-1)")],
            )
        return value
    if query.last_event_id is not None:
        return query.last_event_id
    return query.after


@endpoints.add(
    "GET",
    "/v1/events/stream",
    "Follow the event log (Server-Sent Events)",
    query=StreamQuery,
    responses={200: None},
    errors=(422,),
    stream=True,
    permission="log",
)
async def event_stream(request: Request) -> Response:
    query = parse_query(request, StreamQuery)
    return await _feed(request, query, query.queue)


@endpoints.add(
    "GET",
    "/v1/queues/{name}/events/stream",
    "Follow one queue's events (Server-Sent Events)",
    query=QueueStreamQuery,
    responses={200: None},
    errors=(404, 422),
    stream=True,
    permission="log",
)
async def queue_event_stream(request: Request) -> Response:
    name = queue_name(request)
    query = parse_query(request, QueueStreamQuery)
    if await queries.get_queue(services(request).views, name, now_us()) is None:
        raise QueueNotFoundError(f"queue {name!r} does not exist")
    return await _feed(request, query, name)


async def _feed(request: Request, query: QueueStreamQuery, queue: str | None) -> Response:
    s = services(request)
    types = _types(query.types)
    caller = principal(request)
    if queue is not None and not caller.can_read(queue):
        raise forbidden()
    start = _start(request, query)
    at = await s.log_position(query.min_position)
    if start is None:
        start = await s.store.head()  # no position given: only what happens from now on
    return EventSourceResponse(
        _frames(s, start, queue, types, caller),
        ping=s.settings.sse_heartbeat_s,
        ping_message_factory=lambda: ServerSentEvent(comment="heartbeat"),
        send_timeout=30,
        headers={"X-Cairn-Position": str(max(at, start))},
    )


async def _frames(
    s: Services, last: int, queue: str | None, types: list[str] | None, caller: Principal
) -> AsyncIterator[bytes]:
    wanted: Callable[[str, str], bool] = matches(queue, types)

    def accept(event_queue: str, event_type: str) -> bool:
        return wanted(event_queue, event_type) and caller.can_read(event_queue)

    def expired() -> bool:  # a token that expires during a stream ends the stream
        return caller.expires_at is not None and time.time() >= caller.expires_at

    capacity = s.settings.sse_buffer_events
    subscription = s.tail.subscribe(capacity)
    s.metrics.subscribers.inc()
    try:
        yield b": cairn event feed\nretry: %d\n\n" % s.settings.sse_retry_ms
        while not s.shutdown.is_set() and not expired():
            # Replay from the store up to where the live subscription starts.
            until = subscription.start
            while last < until:
                batch = await s.store.read(last, _PAGE, queue=queue, types=types, until=until)
                chunk = [frame_of(e).sse for e in batch if caller.can_read(e.queue)]
                if chunk:
                    yield b"".join(chunk)
                last = batch[-1].position if len(batch) == _PAGE else until
            # Then follow the live tail.
            try:
                while not s.shutdown.is_set() and not expired():
                    frames = await subscription.take(1.0)
                    if not frames:
                        continue
                    chunk = [f.sse for f in frames if f.position > last and accept(f.queue, f.type)]
                    last = max(last, frames[-1].position)
                    if chunk:
                        yield b"".join(chunk)
            except Overflow:
                s.metrics.feed_overflows.inc()
                subscription = s.tail.subscribe(capacity)
                await asyncio.sleep(0)  # let the writer and the other feeds run first
    finally:
        subscription.close()
        s.metrics.subscribers.dec()
