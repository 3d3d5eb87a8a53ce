"""Producing and consuming: publish (one or a batch), receive with long polling, ack, nack,
extend, batch ack, and reading a message with its history."""

from __future__ import annotations

from typing import Final, Literal

from starlette.requests import Request
from starlette.responses import Response

from api import past
from api.body import check_depth, parse_query
from api.endpoints import Endpoints, principal
from api.polling import long_poll
from api.problems import ApiError, FieldError
from api.responses import json_response, no_content
from api.routes.queues import now_us, queue_name, read_query
from api.schemas import (
    AckRequest,
    AckResult,
    AsOfQuery,
    BatchAckRequest,
    BatchAckResponse,
    BatchPublishRequest,
    BatchPublishResponse,
    ExtendRequest,
    ExtendResponse,
    MessageListQuery,
    NackRequest,
    PublishRequest,
    PublishResponse,
    ReadQuery,
    ReceiveRequest,
    ReceiveResponse,
)
from api.services import Services, services
from broker.commands import (
    AckEntry,
    AckMessages,
    ExtendLease,
    NackMessage,
    NewMessage,
    PublishMessages,
    ReceiveMessages,
)
from broker.decide import (
    AckOutcome,
    AckReply,
    ExtendReply,
    NackReply,
    PublishReply,
)
from broker.errors import MessageNotFoundError, QueueNotFoundError
from projections import as_of, queries
from projections.queries import MessagePage, MessageResource

endpoints = Endpoints("messages")

_ACK_STATUS: Final[dict[AckOutcome, Literal[204, 404, 409]]] = {
    "acked": 204,
    "lease_lost": 409,
    "not_found": 404,
}


def _message_id(request: Request) -> str:
    message_id: str = request.path_params["id"]
    return message_id


def _new_message(s: Services, req: PublishRequest, field: str, nesting: int) -> NewMessage:
    """``nesting``: how deep the body sits in the request, which counts towards the limit.
    (Its size is the queue's to judge, by its ``max_message_bytes``: ``decide``.)"""
    # Everything else in a request is typed, so only a body can nest without bound.
    check_depth(req.body, s.settings.max_json_depth - nesting, field)
    return NewMessage(
        message_id=s.writer.new_id(),
        body=req.body,
        attributes=req.attributes,
        delay_s=req.delay_s,
        dedup_id=req.dedup_id,
        priority=req.priority,
        group_id=req.group_id,
        key=req.key,
    )


@endpoints.add(
    "POST",
    "/v1/queues/{name}/messages",
    "Publish a message",
    body=PublishRequest,
    responses={201: PublishResponse, 200: PublishResponse},
    errors=(404, 413, 415, 422),
    permission="publish",
)
async def publish(request: Request) -> Response:
    s = services(request)
    name = queue_name(request)
    req = await s.request_body(request, PublishRequest)
    reply = await s.execute(
        PublishMessages(queue=name, messages=(_new_message(s, req, "body.body", nesting=1),))
    )
    assert isinstance(reply, PublishReply)
    result = reply.results[0]
    return json_response(
        result,
        200 if result.duplicate else 201,
    )


@endpoints.add(
    "POST",
    "/v1/queues/{name}/messages/batch",
    "Publish 1..100 messages, all or none",
    body=BatchPublishRequest,
    responses={201: BatchPublishResponse},
    errors=(404, 413, 415, 422),
    permission="publish",
)
async def publish_batch(request: Request) -> Response:
    s = services(request)
    name = queue_name(request)
    req = await s.request_body(request, BatchPublishRequest, field_prefix="")
    messages = tuple(
        _new_message(s, entry, f"messages[{i}].body", nesting=3)
        for i, entry in enumerate(req.messages)
    )
    reply = await s.execute(PublishMessages(queue=name, messages=messages), entries="messages")
    assert isinstance(reply, PublishReply)
    return json_response(
        BatchPublishResponse(reply.results),
        201,
    )


@endpoints.add(
    "POST",
    "/v1/queues/{name}/receive",
    "Receive (lease) messages, long-polling up to wait_s",
    body=ReceiveRequest,
    body_optional=True,
    responses={200: ReceiveResponse},
    errors=(404, 413, 415, 422),
    permission="consume",
    idempotent=False,
)
async def receive(request: Request) -> Response:
    s = services(request)
    name = queue_name(request)
    req = await s.request_body(request, ReceiveRequest, empty_ok=True)
    command = ReceiveMessages(
        queue=name, max_messages=req.max_messages, visibility_timeout_s=req.visibility_timeout_s
    )
    return json_response(ReceiveResponse(await long_poll(s, request, command, req.wait_s)))


@endpoints.add(
    "POST",
    "/v1/queues/{name}/messages/{id}/ack",
    "Acknowledge (delete) a received message",
    body=AckRequest,
    responses={204: None},
    errors=(404, 409, 413, 415, 422),
    permission="consume",
)
async def ack(request: Request) -> Response:
    s = services(request)
    name = queue_name(request)
    message_id = _message_id(request)
    req = await s.request_body(request, AckRequest)
    reply = await s.execute(
        AckMessages(queue=name, entries=(AckEntry(message_id=message_id, receipt=req.receipt),))
    )
    assert isinstance(reply, AckReply)
    outcome = reply.results[0][1]
    if outcome == "not_found":
        raise MessageNotFoundError(f"message {message_id!r} not found in queue {name!r}")
    if outcome == "lease_lost":
        raise ApiError(
            409,
            "the receipt no longer holds the message's lease",
            slug="lease-lost",
            errors=[FieldError("body.receipt", "lease lost")],
        )
    return no_content(reply.position)


@endpoints.add(
    "POST",
    "/v1/queues/{name}/ack",
    "Acknowledge up to 100 messages, each on its own",
    body=BatchAckRequest,
    responses={200: BatchAckResponse},
    errors=(404, 413, 415, 422),
    permission="consume",
)
async def ack_batch(request: Request) -> Response:
    s = services(request)
    name = queue_name(request)
    req = await s.request_body(request, BatchAckRequest, field_prefix="")
    entries = tuple(AckEntry(message_id=a.id, receipt=a.receipt) for a in req.acks)
    reply = await s.execute(AckMessages(queue=name, entries=entries))
    assert isinstance(reply, AckReply)
    return json_response(
        BatchAckResponse([AckResult(mid, _ACK_STATUS[o]) for mid, o in reply.results])
    )


@endpoints.add(
    "POST",
    "/v1/queues/{name}/messages/{id}/nack",
    "End a lease now; redeliver after delay_s",
    body=NackRequest,
    responses={204: None},
    errors=(404, 409, 413, 415, 422),
    permission="consume",
)
async def nack(request: Request) -> Response:
    s = services(request)
    name = queue_name(request)
    req = await s.request_body(request, NackRequest)
    reply = await s.execute(
        NackMessage(
            queue=name,
            message_id=_message_id(request),
            receipt=req.receipt,
            delay_s=req.delay_s,
            reason=req.reason,
        )
    )
    assert isinstance(reply, NackReply)
    return no_content(reply.position)


@endpoints.add(
    "POST",
    "/v1/queues/{name}/messages/{id}/extend",
    "Make a lease end visibility_timeout_s from now",
    body=ExtendRequest,
    responses={200: ExtendResponse},
    errors=(404, 409, 413, 415, 422),
    permission="consume",
)
async def extend(request: Request) -> Response:
    s = services(request)
    name = queue_name(request)
    req = await s.request_body(request, ExtendRequest)
    reply = await s.execute(
        ExtendLease(
            queue=name,
            message_id=_message_id(request),
            receipt=req.receipt,
            visibility_timeout_s=req.visibility_timeout_s,
        )
    )
    assert isinstance(reply, ExtendReply)
    return json_response(ExtendResponse(reply.visible_at))


@endpoints.add(
    "GET",
    "/v1/queues/{name}/messages/{id}",
    "A message, its status and its history, now or as of a position or time",
    query=AsOfQuery,
    responses={200: MessageResource},
    errors=(404, 410, 422),
    permission="read",
)
async def get_message(request: Request) -> Response:
    s = services(request)
    name = queue_name(request)
    message_id = _message_id(request)
    query = parse_query(request, AsOfQuery)
    when = ""
    try:
        if query.as_of is not None:
            then = await past.resolve(s, query.as_of, query.min_position)
            at, when = then.position, f" at position {then.position}"
            found = await as_of.get_message(s.views, s.store, name, message_id, at, then.now)
        else:
            await s.read_position(query.min_position)
            found, at = await queries.get_message(s.views, s.store, name, message_id, now_us())
    except queries.QueueMissing:
        raise QueueNotFoundError(f"queue {name!r} does not exist{when}") from None
    if found is None:
        raise MessageNotFoundError(f"message {message_id!r} not found in queue {name!r}{when}")
    return json_response(found, position=at)


@endpoints.add(
    "GET",
    "/v1/messages/{id}",
    "Find a message by its id alone, with its status and history",
    query=ReadQuery,
    responses={200: MessageResource},
    errors=(404, 422),
    permission="any",  # and a 404, not a 403, for a queue the token may not read
)
async def find_message(request: Request) -> Response:
    s = services(request)
    message_id = _message_id(request)
    await s.read_position(read_query(request).min_position)
    found, at = await queries.get_message(s.views, s.store, None, message_id, now_us())
    # A message of a queue the caller may not read does not exist, as far as it can tell.
    if found is None or not principal(request).can_read(found.queue):
        raise MessageNotFoundError(f"message {message_id!r} not found")
    return json_response(found, position=at)


@endpoints.add(
    "GET",
    "/v1/queues/{name}/messages",
    "List a queue's messages, oldest first, now or as of a position or time",
    query=MessageListQuery,
    responses={200: MessagePage},
    errors=(404, 410, 422),
    permission="read",
)
async def list_messages(request: Request) -> Response:
    s = services(request)
    name = queue_name(request)
    query = parse_query(request, MessageListQuery)
    when = ""
    try:
        if query.as_of is not None:
            then = await past.resolve(s, query.as_of, query.min_position)
            at, when = then.position, f" at position {then.position}"
            page = await as_of.list_messages(
                s.views,
                s.store,
                name,
                position=at,
                status=query.status,
                after=query.after,
                limit=query.limit,
                now=then.now,
            )
        else:
            at = await s.read_position(query.min_position)
            page = await queries.list_messages(
                s.views,
                s.store,
                name,
                status=query.status,
                after=query.after,
                limit=query.limit,
                now=now_us(),
            )
    except queries.QueueMissing:
        raise QueueNotFoundError(f"queue {name!r} does not exist{when}") from None
    except queries.CursorUnknown:
        raise ApiError(
            404,
            "the cursor names no message of this queue",
            errors=[FieldError("query.after", "unknown message id")],
        ) from None
    return json_response(page, position=at)
