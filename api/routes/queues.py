"""Queue management: create, list, read, update, soft-delete and restore, purge and undo,
redrive."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from api import past
from api.body import parse_query
from api.endpoints import Endpoints, principal
from api.problems import ApiError
from api.responses import json_response, no_content
from api.schemas import (
    INT64_MAX,
    AsOfQuery,
    CreateQueueRequest,
    DryRunResponse,
    PurgeRequest,
    PurgeResponse,
    QueueList,
    QueueListQuery,
    ReadQuery,
    RedriveRequest,
    RedriveResponse,
    RestoreQueueRequest,
    UndoPurgeRequest,
    UndoPurgeResponse,
    UpdateQueueRequest,
)
from api.services import Services, services
from broker.commands import (
    QUEUE_NAME_PATTERN,
    CreateQueue,
    DeleteQueue,
    PurgeQueue,
    QueueSettings,
    RedriveMessages,
    RestoreQueue,
    UndoPurge,
    UpdateQueue,
)
from broker.decide import (
    DryRunReply,
    PurgeReply,
    QueueReply,
    RedriveReply,
    UndoReply,
    settings_for,
)
from broker.errors import QueueNotFoundError
from broker.state import to_us
from projections import as_of, queries
from projections.queries import QueueResource, QueueStats

endpoints = Endpoints("queues")

_NAME: Final = re.compile(QUEUE_NAME_PATTERN)


def queue_name(request: Request) -> str:
    """The ``{name}`` path parameter; a name that cannot exist is simply not found."""
    name: str = request.path_params["name"]
    if not _NAME.match(name):  # QUEUE_NAME_PATTERN refuses a trailing newline itself
        raise QueueNotFoundError(f"queue {name!r} does not exist")
    return name


def read_query(request: Request) -> ReadQuery:
    return parse_query(request, ReadQuery)


def now_us() -> int:
    return to_us(datetime.now(UTC))


async def _settle(s: Services, position: int) -> int:
    """Management commands are rare: they answer once the read model shows them, so that the
    next read sees the change even without ``min_position``. The command is durable either
    way, so a slow read model delays the answer but never turns it into an error."""
    try:
        return await s.read_position(position)
    except ApiError:
        return s.runner.watermarks["views"].value


async def _queue_after(
    s: Services, name: str, position: int, status: int, fallback: QueueSettings | None = None
) -> Response:
    """The queue resource once the read model has caught up with the command just run."""
    at = await _settle(s, position)
    resource = await queries.get_queue(s.views, name, now_us())
    if resource is None:
        if fallback is None:
            raise QueueNotFoundError(f"queue {name!r} does not exist")
        now = datetime.now(UTC)
        resource = QueueResource(
            name=name,
            created_at=now,
            updated_at=now,
            position=position,
            **msgspec.structs.asdict(fallback),
            stats=QueueStats(
                available=0,
                delayed=0,
                in_flight=0,
                published_total=0,
                acked_total=0,
                dead_lettered_total=0,
                expired_total=0,
                oldest_available_age_s=0.0,
            ),
        )
    return json_response(resource, status, position=at)


@endpoints.add(
    "POST",
    "/v1/queues",
    "Create a queue",
    body=CreateQueueRequest,
    responses={201: QueueResource},
    errors=(409, 413, 415, 422),
    permission="manage",
)
async def create_queue(request: Request) -> Response:
    s = services(request)
    req = await s.request_body(request, CreateQueueRequest)
    given = {f: getattr(req, f) for f in QueueSettings.__struct_fields__}
    if given["max_message_bytes"] is msgspec.UNSET:
        given["max_message_bytes"] = s.settings.max_message_bytes
    settings = settings_for(req.name, QueueSettings(**given))
    reply = await s.execute(CreateQueue(queue=req.name, settings=settings))
    assert isinstance(reply, QueueReply)
    return await _queue_after(s, req.name, reply.position, 201, fallback=settings)


@endpoints.add(
    "GET",
    "/v1/queues",
    "List live queues, by name",
    query=QueueListQuery,
    responses={200: QueueList},
    errors=(422,),
    permission="read",
)
async def list_queues(request: Request) -> Response:
    s = services(request)
    query = parse_query(request, QueueListQuery)
    at = await s.read_position(query.min_position)
    page = await queries.queue_page(
        s.views,
        now_us(),
        after=query.after,
        prefix=query.prefix,
        limit=query.limit,
        visible=principal(request).can_read,
    )
    return json_response(QueueList(page.queues, page.next_after), position=at)


@endpoints.add(
    "GET",
    "/v1/queues/{name}",
    "Read a queue and its stats, now or as of a position or time",
    query=AsOfQuery,
    responses={200: QueueResource},
    errors=(404, 410, 422),
    permission="read",
)
async def get_queue(request: Request) -> Response:
    s = services(request)
    name = queue_name(request)
    query = parse_query(request, AsOfQuery)
    if query.as_of is not None:
        then = await past.resolve(s, query.as_of, query.min_position)
        resource = await as_of.get_queue(s.views, name, then.position, then.now)
        if resource is None:
            raise QueueNotFoundError(f"queue {name!r} did not exist at position {then.position}")
        return json_response(resource, position=then.position)
    at = await s.read_position(query.min_position)
    resource = await queries.get_queue(s.views, name, now_us())
    if resource is None:
        raise QueueNotFoundError(f"queue {name!r} does not exist")
    return json_response(resource, position=at)


@endpoints.add(
    "PATCH",
    "/v1/queues/{name}",
    "Change some of a queue's settings",
    body=UpdateQueueRequest,
    responses={200: QueueResource},
    errors=(404, 413, 415, 422),
    permission="manage",
)
async def update_queue(request: Request) -> Response:
    s = services(request)
    name = queue_name(request)
    req = await s.request_body(request, UpdateQueueRequest)
    changes = {
        f: getattr(req, f) for f in req.__struct_fields__ if getattr(req, f) is not msgspec.UNSET
    }
    reply = await s.execute(UpdateQueue(queue=name, changes=changes))
    assert isinstance(reply, QueueReply)
    return await _queue_after(s, name, reply.position, 200)


@endpoints.add(
    "DELETE",
    "/v1/queues/{name}",
    "Soft-delete a queue",
    responses={204: None},
    errors=(404,),
    permission="manage",
)
async def delete_queue(request: Request) -> Response:
    s = services(request)
    reply = await s.execute(DeleteQueue(queue=queue_name(request)))
    assert isinstance(reply, QueueReply)
    await _settle(s, reply.position)
    return no_content(reply.position)


@endpoints.add(
    "POST",
    "/v1/queues/{name}/purge",
    "Remove every available, delayed and in-flight message",
    body=PurgeRequest,
    body_optional=True,
    responses={200: PurgeResponse},
    errors=(404, 413, 415, 422),
    permission="manage",
)
async def purge_queue(request: Request) -> Response:
    s = services(request)
    name = queue_name(request)
    await s.request_body(request, PurgeRequest, empty_ok=True)  # a body, if any, must be {}
    reply = await s.execute(PurgeQueue(queue=name))
    assert isinstance(reply, PurgeReply)
    at = await _settle(s, reply.position)
    return json_response(
        PurgeResponse(reply.purged, reply.position, str(reply.position)), position=at
    )


def _purge_id(request: Request) -> int:
    """A purge's id is its event's position; anything else names no purge."""
    text: str = request.path_params["purge_id"]
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= INT64_MAX:
        raise ApiError(404, f"no purge {text!r} of this queue", slug="purge-not-found")
    return int(text)


@endpoints.add(
    "POST",
    "/v1/queues/{name}/purges/{purge_id}/undo",
    "Make what a purge removed available again",
    body=UndoPurgeRequest,
    body_optional=True,
    responses={200: UndoPurgeResponse},
    errors=(404, 413, 415, 422),
    permission="manage",
)
async def undo_purge(request: Request) -> Response:
    s = services(request)
    name = queue_name(request)
    purge = _purge_id(request)
    await s.request_body(request, UndoPurgeRequest, empty_ok=True)
    reply = await s.execute(UndoPurge(queue=name, purge=purge))
    assert isinstance(reply, UndoReply)
    at = await _settle(s, reply.position)
    return json_response(
        UndoPurgeResponse(reply.restored, reply.skipped, reply.position), position=at
    )


@endpoints.add(
    "POST",
    "/v1/queues/{name}/restore",
    "Bring a soft-deleted queue back, with its messages",
    body=RestoreQueueRequest,
    body_optional=True,
    responses={200: QueueResource},
    errors=(404, 409, 413, 415, 422),
    permission="manage",
)
async def restore_queue(request: Request) -> Response:
    s = services(request)
    name = queue_name(request)
    await s.request_body(request, RestoreQueueRequest, empty_ok=True)
    reply = await s.execute(RestoreQueue(queue=name))
    assert isinstance(reply, QueueReply)
    return await _queue_after(s, name, reply.position, 200)


@endpoints.add(
    "POST",
    "/v1/queues/{name}/redrive",
    "Move available messages to another queue",
    body=RedriveRequest,
    body_optional=True,
    responses={200: (RedriveResponse, DryRunResponse)},
    errors=(404, 413, 415, 422),
    permission="manage",
)
async def redrive(request: Request) -> Response:
    s = services(request)
    name = queue_name(request)
    req = await s.request_body(request, RedriveRequest, empty_ok=True)
    reply = await s.execute(
        RedriveMessages(queue=name, to=req.to, max=req.max, where=req.where, dry_run=req.dry_run)
    )
    if isinstance(reply, DryRunReply):
        return json_response(DryRunResponse(reply.would_move, reply.sample))
    assert isinstance(reply, RedriveReply)
    return json_response(RedriveResponse(reply.moved, reply.position))
