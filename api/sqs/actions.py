"""The SQS actions, each as the commands and queries of the native API: parameters checked as
SQS checks them, then one command (or query), then the answer in SQS's shape."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from api.polling import long_poll
from api.sqs import attributes as attrs
from api.sqs import md5
from api.sqs.context import Call
from api.sqs.errors import FIFO_NAME, STANDARD_NAME, SqsError, from_broker, invalid, missing
from broker import commands as cmd
from broker import ids
from broker.commands import QUEUE_NAME_PATTERN
from broker.decide import (
    FIFO_SUFFIX,
    AckReply,
    Delivery,
    MoveTaskReply,
    Published,
    PublishReply,
    QueueReply,
)
from broker.errors import (
    BrokerError,
    InvalidCommandError,
    LeaseLostError,
    LeaseSupersededError,
    MessageNotFoundError,
    MoveTaskNotFoundError,
    QueueExistsError,
    QueueNotFoundError,
)
from broker.events import QueueMoveTaskEnded, QueueMoveTaskStarted, TypedAttribute
from broker.state import to_us
from projections import queries
from projections.queries import QueueResource

Params = dict[str, Any]
Action = Callable[[Call, Params], Awaitable[Params]]
ACTIONS: Final[dict[str, Action]] = {}

_QUEUE_NAME: Final = re.compile(QUEUE_NAME_PATTERN)
"""The domain's names: a queue the native API made is reachable here too, whatever its name."""
_ENTRY_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,80}")
_GROUP_OR_DEDUP: Final = re.compile(r"[!-~]{1,128}")
_BODY_CHARACTERS: Final = re.compile(
    r"[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
MAX_BATCH: Final = 10
MAX_BATCH_BYTES: Final = 1048576
"""SQS's limit on a SendMessageBatch's messages together, whatever the queue's own."""
SYSTEM_ATTRIBUTES: Final = (
    "SenderId",
    "SentTimestamp",
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageDeduplicationId",
    "MessageGroupId",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
)


def action(function: Action) -> Action:
    """Register an SQS action under its function's name."""
    ACTIONS[function.__name__] = function
    return function


# -- parameters ---------------------------------------------------------------------------------


def _string(params: Params, name: str, *, required: bool = True) -> str | None:
    value = params.get(name)
    if value is None:
        if required:
            raise missing(name)
        return None
    if not isinstance(value, str):
        raise invalid(f"Value for parameter {name} must be a string.")
    return value


def _integer(params: Params, name: str, low: int, high: int) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(
            f"Value {value} for parameter {name} is invalid. Reason: must be between {low}"
            f" and {high}, if provided."
        )
    return value


def _names(params: Params, name: str) -> list[str]:
    value = params.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid(f"Value for parameter {name} must be a list of strings.")
    return value


def _queue(call: Call, params: Params) -> str:
    """The queue a request names: the last path segment of its ``QueueUrl``, whatever the host
    (an SDK configured for AWS sends https://sqs.<region>.amazonaws.com/...), or a bare name."""
    url = _string(params, "QueueUrl")
    assert url is not None
    name = url.rstrip("/").rsplit("/", 1)[-1]
    if not _QUEUE_NAME.match(name):
        raise SqsError("QueueDoesNotExist", "The specified queue does not exist.")
    return name


def _entries(params: Params, kind: str) -> list[Params]:
    """A batch's entries, checked whole as SQS checks them (``kind``: SQS's name for one)."""
    entries = params.get("Entries")
    if entries is None:
        raise missing("Entries")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise invalid("Entries must be a list of objects.")
    if not entries:
        raise SqsError("EmptyBatchRequest", f"There should be at least one {kind} in the request.")
    if len(entries) > MAX_BATCH:
        raise SqsError(
            "TooManyEntriesInBatchRequest",
            f"Maximum number of entries per request are {MAX_BATCH}. You have sent {len(entries)}.",
        )
    seen: set[str] = set()
    for entry in entries:
        entry_id = entry.get("Id")
        if not isinstance(entry_id, str) or not _ENTRY_ID.fullmatch(entry_id):
            raise SqsError(
                "InvalidBatchEntryId",
                "A batch entry id can only contain alphanumeric characters, hyphens and"
                " underscores. It can be at most 80 letters long.",
            )
        if entry_id in seen:
            raise SqsError("BatchEntryIdsNotDistinct", f"Id {entry_id} repeated.")
        seen.add(entry_id)
    return entries


def _failure(entry_id: str, error: SqsError) -> Params:
    return {
        "Id": entry_id,
        "SenderFault": error.sender_fault,
        "Code": error.code,
        "Message": error.message,
    }


async def _resource(call: Call, name: str) -> QueueResource:
    """The queue as the read model shows it, once it reflects everything committed so far
    (SQS reads are read-your-writes for the queue's own settings)."""
    await call.s.read_position(call.s.head.value)
    queue = await queries.get_queue(call.s.views, name, to_us(datetime.now(UTC)))
    if queue is None:
        raise SqsError("QueueDoesNotExist", "The specified queue does not exist.")
    return queue


# -- queues ---------------------------------------------------------------------------------------


@action
async def CreateQueue(call: Call, params: Params) -> Params:
    name = _string(params, "QueueName")
    assert name is not None
    call.require("manage", name)
    named = attrs.settings_changes(params.get("Attributes") or {}, creating=True)
    settings = msgspec.structs.replace(
        attrs.new_settings(named), tags=_tags(params.get("tags") or {})
    )
    try:
        # The name, its kind and the settings are the domain's to judge, as for every door.
        reply = await call.s.run(cmd.CreateQueue(queue=name, settings=settings))
    except QueueExistsError:
        # As SQS: the existing queue's URL unless an attribute the request names differs;
        # one it does not name is no difference (a queue the native API made has Cairn's
        # defaults, not SQS's).
        existing = await _resource(call, name)
        differing = attrs.differing(existing, named)
        if differing is not None:
            raise SqsError(
                "QueueNameExists",
                "A queue already exists with the same name and a different value for attribute"
                f" {differing}",
            ) from None
        return {"QueueUrl": call.url_of(name)}
    except InvalidCommandError as error:
        if error.field == "fifo":
            raise invalid(FIFO_NAME if settings.fifo else STANDARD_NAME) from None
        raise
    assert isinstance(reply, QueueReply)
    await call.s.read_position(reply.position)
    return {"QueueUrl": call.url_of(name)}


@action
async def GetQueueUrl(call: Call, params: Params) -> Params:
    name = _string(params, "QueueName")
    assert name is not None
    if not _visible(call, name):
        call.require("read", name)
    await _resource(call, name)
    return {"QueueUrl": call.url_of(name)}


@action
async def ListQueues(call: Call, params: Params) -> Params:
    prefix = _string(params, "QueueNamePrefix", required=False) or ""
    limit = _integer(params, "MaxResults", 1, 1000)
    token = _string(params, "NextToken", required=False)
    after = _decode_token(token) if token else ""
    await call.s.read_position(call.s.head.value)
    page = await queries.queue_page(
        call.s.views,
        to_us(datetime.now(UTC)),
        after=after or None,
        prefix=prefix,
        limit=1000 if limit is None else limit,
        visible=lambda name: _visible(call, name),
    )
    result: Params = {"QueueUrls": [call.url_of(q.name) for q in page.queues]}
    # Without MaxResults SQS answers up to 1000 and no token.
    if limit is not None and page.next_after is not None:
        result["NextToken"] = base64.urlsafe_b64encode(page.next_after.encode()).decode()
    return result


def _visible(call: Call, name: str) -> bool:
    return any(call.principal.may(a, name) for a in ("read", "publish", "consume"))


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid("Invalid NextToken value.") from None


@action
async def DeleteQueue(call: Call, params: Params) -> Params:
    name = _queue(call, params)
    call.require("manage", name)
    reply = await call.s.run(cmd.DeleteQueue(queue=name))
    assert isinstance(reply, QueueReply)
    await call.s.read_position(reply.position)
    return {}


@action
async def GetQueueAttributes(call: Call, params: Params) -> Params:
    name = _queue(call, params)
    call.require("read", name)
    names = _names(params, "AttributeNames")
    queue = await _resource(call, name)
    if {"All", "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"} & set(names):
        # SQS's counts follow the clock: a lease that has ended is visible at once.
        lapsed = await queries.lapsed_leases(call.s.views, name, to_us(datetime.now(UTC)))
        stats = msgspec.structs.replace(
            queue.stats,
            available=queue.stats.available + lapsed,
            in_flight=max(0, queue.stats.in_flight - lapsed),
        )
        queue = msgspec.structs.replace(queue, stats=stats)
    found = attrs.queue_attributes(queue, call.arn_of, names)  # no names: none, as SQS
    return {"Attributes": found} if found else {}


@action
async def SetQueueAttributes(call: Call, params: Params) -> Params:
    name = _queue(call, params)
    call.require("manage", name)
    if "Attributes" not in params:
        raise missing("Attributes")
    changes = attrs.settings_changes(params["Attributes"], creating=False)
    reply = await call.s.run(cmd.UpdateQueue(queue=name, changes=changes))
    assert isinstance(reply, QueueReply)
    await call.s.read_position(reply.position)
    return {}


@action
async def PurgeQueue(call: Call, params: Params) -> Params:
    name = _queue(call, params)
    call.require("manage", name)
    await call.s.run(cmd.PurgeQueue(queue=name))
    return {}


@action
async def ListDeadLetterSourceQueues(call: Call, params: Params) -> Params:
    name = _queue(call, params)
    call.require("read", name)
    await _resource(call, name)
    sources = await queries.dead_letter_sources(call.s.views, name)
    return {"queueUrls": [call.url_of(n) for n in sources if _visible(call, n)]}


# -- permissions ------------------------------------------------------------------------------


@action
async def AddPermission(call: Call, params: Params) -> Params:
    """A statement added to the queue's stored Policy, as SQS writes it (never enforced:
    Cairn's scopes are)."""
    name = _queue(call, params)
    call.require("manage", name)
    label = _label(params)
    accounts = _names(params, "AWSAccountIds")
    verbs = _names(params, "Actions")
    if not accounts:
        raise missing("AWSAccountIds")
    if not verbs:
        raise missing("Actions")
    for verb in verbs:
        if verb != "*" and verb not in _PERMITTED:
            raise invalid(f"Value SQS:{verb} for parameter ActionName is invalid.")
    queue = await _resource(call, name)
    policy = _policy(queue.policy, call.arn_of(name))
    statements: list[Params] = policy["Statement"]
    if any(statement.get("Sid") == label for statement in statements):
        raise invalid(f"Value {label} for parameter Label is invalid. Reason: Already exists.")
    statements.append(
        {
            "Sid": label,
            "Effect": "Allow",
            "Principal": {"AWS": [f"arn:aws:iam::{a}:root" for a in accounts]},
            "Action": [f"SQS:{verb}" for verb in verbs],
            "Resource": call.arn_of(name),
        }
    )
    await _set_policy(call, name, policy)
    return {}


@action
async def RemovePermission(call: Call, params: Params) -> Params:
    name = _queue(call, params)
    call.require("manage", name)
    label = _label(params)
    queue = await _resource(call, name)
    policy = _policy(queue.policy, call.arn_of(name))
    kept = [s for s in policy["Statement"] if s.get("Sid") != label]
    if len(kept) == len(policy["Statement"]):
        raise invalid(
            f"Value {label} for parameter Label is invalid. Reason: can't find label on"
            " existing policy."
        )
    await _set_policy(call, name, {**policy, "Statement": kept} if kept else None)
    return {}


_LABEL: Final = re.compile(r"[A-Za-z0-9_-]{1,80}")
_PERMITTED: Final = frozenset(
    # The actions a permission may name (SQS's list for AddPermission).
    (
        "SendMessage",
        "ReceiveMessage",
        "DeleteMessage",
        "ChangeMessageVisibility",
        "GetQueueAttributes",
        "GetQueueUrl",
        "ListDeadLetterSourceQueues",
        "PurgeQueue",
        "ListQueueTags",
    )
)


def _label(params: Params) -> str:
    label = _string(params, "Label")
    assert label is not None
    if not _LABEL.fullmatch(label):
        raise invalid(
            f"Value {label} for parameter Label is invalid. Reason: Can only include"
            " alphanumeric characters, hyphens, or underscores. 1 to 80 in length."
        )
    return label


def _policy(stored: str | None, arn: str) -> Params:
    """The queue's policy to edit; a new one as SQS starts it when there is none."""
    policy: Params = (
        {"Version": "2012-10-17", "Id": f"{arn}/SQSDefaultPolicy", "Statement": []}
        if stored is None
        else json.loads(stored)
    )
    statements = policy.get("Statement", [])
    policy["Statement"] = statements if isinstance(statements, list) else [statements]
    return policy


async def _set_policy(call: Call, name: str, policy: Params | None) -> None:
    text = None if policy is None else json.dumps(policy, separators=(",", ":"))
    reply = await call.s.run(cmd.UpdateQueue(queue=name, changes={"policy": text}))
    assert isinstance(reply, QueueReply)
    await call.s.read_position(reply.position)


# -- tags -----------------------------------------------------------------------------------------


_TAG_CHARACTERS: Final = re.compile(r"[\w\s.:/=+\-@]*")


def _tags(given: Any) -> dict[str, str]:
    if not isinstance(given, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in given.items()
    ):
        raise invalid("Tags must be a map of strings to strings.")
    for key, value in given.items():
        if not 1 <= len(key) <= 128 or len(value) > 256:
            raise invalid("A tag key is 1 to 128 characters, a value at most 256.")
        if not _TAG_CHARACTERS.fullmatch(key) or not _TAG_CHARACTERS.fullmatch(value):
            raise invalid(f"Tag {key!r} has characters a tag may not hold.")
    if len(given) > 50:
        raise invalid("A queue may have at most 50 tags.")
    return dict(given)


@action
async def TagQueue(call: Call, params: Params) -> Params:
    name = _queue(call, params)
    call.require("manage", name)
    if not params.get("Tags"):  # none at all, or an empty map: SQS wants at least one
        raise missing("Tags")
    added = _tags(params["Tags"])
    queue = await _resource(call, name)
    await _set_tags(call, name, _tags(queue.tags | added))
    return {}


@action
async def UntagQueue(call: Call, params: Params) -> Params:
    name = _queue(call, params)
    call.require("manage", name)
    keys = _names(params, "TagKeys")
    if not keys:
        raise missing("TagKeys")
    queue = await _resource(call, name)
    await _set_tags(call, name, {k: v for k, v in queue.tags.items() if k not in keys})
    return {}


async def _set_tags(call: Call, name: str, tags: dict[str, str]) -> None:
    reply = await call.s.run(cmd.UpdateQueue(queue=name, changes={"tags": tags}))
    assert isinstance(reply, QueueReply)
    await call.s.read_position(reply.position)


@action
async def ListQueueTags(call: Call, params: Params) -> Params:
    name = _queue(call, params)
    call.require("read", name)
    queue = await _resource(call, name)
    return {"Tags": queue.tags} if queue.tags else {}


# -- sending ----------------------------------------------------------------------------------


def _new_message(call: Call, params: Params, fifo: bool) -> cmd.NewMessage:
    body = params.get("MessageBody")
    if body is None:
        raise missing("MessageBody")
    if not isinstance(body, str) or body == "":
        raise invalid("The request must contain a non-empty MessageBody.")
    if _BODY_CHARACTERS.search(body):
        raise SqsError(
            "InvalidMessageContents",
            "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD |"
            " #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
        )
    typed = attrs.message_attributes(params.get("MessageAttributes"))
    delay = _integer(params, "DelaySeconds", 0, 900)
    group = _string(params, "MessageGroupId", required=False)
    dedup = _string(params, "MessageDeduplicationId", required=False)
    if fifo:
        if delay:  # SQS takes DelaySeconds=0 on a FIFO queue, and no other per-message delay
            raise invalid(
                "Value for parameter DelaySeconds is invalid. Reason: The request include"
                " parameter that is not valid for this queue type."
            )
        if group is None:
            raise missing("MessageGroupId")
    elif dedup is not None:
        raise invalid(
            "Value for parameter MessageDeduplicationId is invalid. Reason: The request"
            " includes a parameter that is not valid for this queue type."
        )
    else:
        group = None  # a standard queue keeps no order: its groups are only fairness hints
    for label, value in (("MessageGroupId", group), ("MessageDeduplicationId", dedup)):
        if value is not None and not _GROUP_OR_DEDUP.fullmatch(value):
            raise invalid(
                f"Value {value} for parameter {label} is invalid. Reason: it must be 1 to 128"
                " alphanumeric or punctuation characters."
            )
    plain, typed_only = attrs.split_plain(typed)
    return cmd.NewMessage(
        message_id=call.s.writer.new_id(),
        body=msgspec.Raw(msgspec.json.encode(body)),
        attributes=plain,
        typed_attributes=typed_only | attrs.trace_header(params.get("MessageSystemAttributes")),
        delay_s=None if fifo else delay,
        dedup_id=dedup,
        group_id=group,
        size=len(body.encode()) + attrs.attributes_size(typed),
    )


def _sent(message: cmd.NewMessage, body: str, message_id: str, position: int, fifo: bool) -> Params:
    result: Params = {"MessageId": message_id, "MD5OfMessageBody": md5.of_body(body)}
    digest = md5.of_attributes(attrs.as_sqs(message.attributes, message.typed_attributes))
    if digest is not None:
        result["MD5OfMessageAttributes"] = digest
    trace = message.typed_attributes.get(attrs.TRACE_HEADER)
    if trace is not None:
        result["MD5OfMessageSystemAttributes"] = md5.of_attributes({"AWSTraceHeader": trace})
    if fifo:
        result["SequenceNumber"] = _sequence_number(position)
    return result


def _sequence_number(position: int) -> str:
    """SQS's sequence numbers are long strings of digits that grow within a group: the
    position of the message's ``message.published`` event, zero-padded as SQS's are."""
    return f"{position:020d}"


@action
async def SendMessage(call: Call, params: Params) -> Params:
    name = _queue(call, params)
    call.require("publish", name)
    fifo = _fifo(name)
    message = _new_message(call, params, fifo)
    reply = await call.s.run(cmd.PublishMessages(queue=name, messages=(message,)))
    assert isinstance(reply, PublishReply)
    result = reply.results[0]
    return _sent(message, params["MessageBody"], result.id, result.position, fifo)


async def _publish_each(
    call: Call, name: str, checked: list[tuple[Params, cmd.NewMessage]]
) -> list[Published | BrokerError]:
    """Each entry's outcome. The entries go as one command (one decision, one set of events in
    one commit, as a native batch); only if the domain refuses that one does each entry go on
    its own, so that a refused entry fails alone, as SQS batches do."""
    if not checked:
        return []
    messages = tuple(m for _, m in checked)
    try:
        reply = await call.s.run(cmd.PublishMessages(queue=name, messages=messages))
    except QueueNotFoundError:
        raise  # the whole request's error, not each entry's
    except BrokerError:
        outcomes = await asyncio.gather(
            *(call.s.run(cmd.PublishMessages(queue=name, messages=(m,))) for m in messages),
            return_exceptions=True,
        )
        each: list[Published | BrokerError] = []
        for outcome in outcomes:
            if isinstance(outcome, BrokerError):
                each.append(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome from None
            else:
                assert isinstance(outcome, PublishReply)
                each.append(outcome.results[0])
        return each
    assert isinstance(reply, PublishReply)
    return list(reply.results)


def _fifo(name: str) -> bool:
    """Whether a queue is FIFO, without a read: the domain holds a queue FIFO exactly when its
    name ends in ``.fifo`` (``broker.decide._check_fifo``)."""
    return name.endswith(FIFO_SUFFIX)


@action
async def SendMessageBatch(call: Call, params: Params) -> Params:
    name = _queue(call, params)
    call.require("publish", name)
    entries = _entries(params, "SendMessageBatchRequestEntry")
    fifo = _fifo(name)
    successful: list[Params] = []
    failed: list[Params] = []
    checked: list[tuple[Params, cmd.NewMessage]] = []
    for entry in entries:
        try:
            checked.append((entry, _new_message(call, entry, fifo)))
        except SqsError as error:
            failed.append(_failure(entry["Id"], error))
    total = sum(m.size or 0 for _, m in checked)
    if total > MAX_BATCH_BYTES:
        raise SqsError(
            "BatchRequestTooLong",
            f"Batch requests cannot be longer than {MAX_BATCH_BYTES} bytes. You have sent"
            f" {total} bytes.",
        )
    outcomes = await _publish_each(call, name, checked)
    for (entry, message), outcome in zip(checked, outcomes, strict=True):
        if isinstance(outcome, BrokerError):
            failed.append(_failure(entry["Id"], from_broker(outcome)))
            continue
        sent = _sent(message, entry["MessageBody"], outcome.id, outcome.position, fifo)
        successful.append({"Id": entry["Id"], **sent})
    return {"Successful": successful, "Failed": failed}


# -- receiving ----------------------------------------------------------------------------------


@action
async def ReceiveMessage(call: Call, params: Params) -> Params:
    name = _queue(call, params)
    call.require("consume", name)
    count = _integer(params, "MaxNumberOfMessages", 1, MAX_BATCH) or 1
    visibility = _integer(params, "VisibilityTimeout", 0, 43200)
    wait = _integer(params, "WaitTimeSeconds", 0, 20)
    system = set(_names(params, "AttributeNames")) | set(
        _names(params, "MessageSystemAttributeNames")
    )
    wanted = _names(params, "MessageAttributeNames")
    if wait is None:  # the queue's ReceiveMessageWaitTimeSeconds
        wait = (await _resource(call, name)).receive_wait_s
    command = cmd.ReceiveMessages(queue=name, max_messages=count, visibility_timeout_s=visibility)
    deliveries = await long_poll(call.s, call.request, command, float(wait))
    if not deliveries:
        return {}
    fifo = _fifo(name)
    return {"Messages": [_message(call, d, system, wanted, fifo) for d in deliveries]}


def _message(
    call: Call, delivery: Delivery, system: set[str], wanted: list[str], fifo: bool
) -> Params:
    body = _body_text(delivery.body)
    message: Params = {
        "MessageId": delivery.id,
        "ReceiptHandle": delivery.receipt,
        "MD5OfBody": md5.of_body(body),
        "Body": body,
    }
    every = {
        "SenderId": call.account_id,
        "SentTimestamp": str(int(delivery.published_at.timestamp() * 1000)),
        "ApproximateReceiveCount": str(delivery.receive_count),
        "ApproximateFirstReceiveTimestamp": None
        if delivery.first_received_at is None
        else str(int(delivery.first_received_at.timestamp() * 1000)),
        "MessageGroupId": delivery.group_id if fifo else None,
        "MessageDeduplicationId": delivery.dedup_id if fifo else None,
        "SequenceNumber": _sequence_number(delivery.position) if fifo else None,
        "AWSTraceHeader": attrs.trace_header_of(delivery.typed_attributes),
    }
    names = set(every) if {"All", ".*"} & system else system
    chosen = {k: v for k, v in every.items() if k in names and v is not None}
    if chosen:
        message["Attributes"] = chosen
    shown = attrs.selected(attrs.as_sqs(delivery.attributes, delivery.typed_attributes), wanted)
    if shown:
        message["MessageAttributes"] = {n: _attribute_json(a) for n, a in shown.items()}
        message["MD5OfMessageAttributes"] = md5.of_attributes(shown)
    return message


def _body_text(body: msgspec.Raw) -> str:
    """A body sent through SQS is a JSON string; any other JSON body (sent natively) is
    received through SQS as its JSON text."""
    raw = bytes(body)
    if raw[:1] == b'"':
        text: str = msgspec.json.decode(raw)
        return text
    return raw.decode()


def _attribute_json(attribute: TypedAttribute) -> Params:
    if attribute.binary_value is not None:
        return {"DataType": attribute.data_type, "BinaryValue": attribute.binary_value}
    return {"DataType": attribute.data_type, "StringValue": attribute.string_value}


# -- settling -----------------------------------------------------------------------------------


def _receipt(handle: Any) -> tuple[str, str]:
    """A receipt handle and the message it names (Cairn's receipts carry the id)."""
    if not isinstance(handle, str) or not handle:
        raise missing("ReceiptHandle")
    message_id = ids.message_of(handle)
    if message_id is None or len(handle) > 256:
        raise _invalid_receipt()
    return message_id, handle


def _ack_error(outcome: str) -> SqsError | None:
    """A DeleteMessage's refusal. A receipt that no longer holds its message (received again
    since, or settled by a newer receipt) is not one: as SQS documents, the request succeeds
    and deletes nothing, and the lease stays with its holder."""
    if outcome == "not_found":
        return _invalid_receipt()
    return None


def _invalid_receipt() -> SqsError:
    return SqsError("ReceiptHandleIsInvalid", "The input receipt handle is invalid.")


@action
async def DeleteMessage(call: Call, params: Params) -> Params:
    name = _queue(call, params)
    call.require("consume", name)
    message_id, handle = _receipt(params.get("ReceiptHandle"))
    reply = await call.s.run(
        cmd.AckMessages(queue=name, entries=(cmd.AckEntry(message_id=message_id, receipt=handle),))
    )
    assert isinstance(reply, AckReply)
    error = _ack_error(reply.results[0][1])
    if error is not None:
        raise error
    return {}


@action
async def DeleteMessageBatch(call: Call, params: Params) -> Params:
    name = _queue(call, params)
    call.require("consume", name)
    entries = _entries(params, "DeleteMessageBatchRequestEntry")
    failed: list[Params] = []
    valid: list[tuple[str, cmd.AckEntry]] = []
    for entry in entries:
        try:
            message_id, handle = _receipt(entry.get("ReceiptHandle"))
        except SqsError as error:
            failed.append(_failure(entry["Id"], error))
            continue
        valid.append((entry["Id"], cmd.AckEntry(message_id=message_id, receipt=handle)))
    successful: list[Params] = []
    if valid:
        reply = await call.s.run(
            cmd.AckMessages(queue=name, entries=tuple(entry for _, entry in valid))
        )
        assert isinstance(reply, AckReply)
        for (entry_id, _), (_, outcome) in zip(valid, reply.results, strict=True):
            refusal = _ack_error(outcome)
            if refusal is None:
                successful.append({"Id": entry_id})
            else:
                failed.append(_failure(entry_id, refusal))
    return {"Successful": successful, "Failed": failed}


async def _change_visibility(call: Call, name: str, handle: Any, seconds: Any) -> None:
    message_id, receipt = _receipt(handle)
    if seconds is None:
        raise missing("VisibilityTimeout")
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= 43200:
        raise invalid(
            f"Value {seconds} for parameter VisibilityTimeout is invalid. Reason: must be"
            " between 0 and 43200."
        )
    try:
        await call.s.run(
            cmd.ExtendLease(
                queue=name, message_id=message_id, receipt=receipt, visibility_timeout_s=seconds
            )
        )
    except LeaseSupersededError:
        # SQS's answer to a receipt of a message received again since.
        raise invalid(
            f"Value {receipt} for parameter ReceiptHandle is invalid. Reason: Message does not"
            " exist or is not available for visibility timeout change."
        ) from None
    except LeaseLostError:
        raise SqsError("MessageNotInflight", "The message referred to isn't in flight.") from None
    except MessageNotFoundError:
        raise _invalid_receipt() from None


@action
async def ChangeMessageVisibility(call: Call, params: Params) -> Params:
    name = _queue(call, params)
    call.require("consume", name)
    await _change_visibility(
        call, name, params.get("ReceiptHandle"), params.get("VisibilityTimeout")
    )
    return {}


@action
async def ChangeMessageVisibilityBatch(call: Call, params: Params) -> Params:
    name = _queue(call, params)
    call.require("consume", name)
    successful: list[Params] = []
    failed: list[Params] = []
    for entry in _entries(params, "ChangeMessageVisibilityBatchRequestEntry"):
        try:
            await _change_visibility(
                call, name, entry.get("ReceiptHandle"), entry.get("VisibilityTimeout")
            )
        except SqsError as error:
            failed.append(_failure(entry["Id"], error))
        else:
            successful.append({"Id": entry["Id"]})
    return {"Successful": successful, "Failed": failed}


# -- move tasks ---------------------------------------------------------------------------------


def _queue_of_arn(arn: Any, parameter: str) -> str:
    if not isinstance(arn, str) or not arn:
        raise missing(parameter)
    name = arn.rsplit(":", 1)[-1]
    if not arn.startswith("arn:") or not _QUEUE_NAME.match(name):
        raise invalid(f"Value {arn} for parameter {parameter} is not a queue ARN.")
    return name


def _handle(source: str, task: str) -> str:
    """A task handle names its queue, so that CancelMessageMoveTask needs nothing else."""
    return base64.urlsafe_b64encode(f"{source}\n{task}".encode()).decode()


def _unhandle(handle: Any) -> tuple[str, str]:
    if not isinstance(handle, str) or not handle:
        raise missing("TaskHandle")
    try:
        source, task = base64.urlsafe_b64decode(handle.encode()).decode().split("\n")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise SqsError("ResourceNotFoundException", "The task handle is not valid.") from None
    return source, task


@action
async def StartMessageMoveTask(call: Call, params: Params) -> Params:
    """Cairn's redrive, over time: the sweeper moves the messages (``queue.move_task_*``)."""
    source = _queue_of_arn(params.get("SourceArn"), "SourceArn")
    destination_arn = params.get("DestinationArn")
    destination = (
        None if destination_arn is None else _queue_of_arn(destination_arn, "DestinationArn")
    )
    rate = _integer(params, "MaxNumberOfMessagesPerSecond", 1, 500)
    call.require("manage", source)
    task = call.s.writer.new_id()
    try:
        reply = await call.s.run(
            cmd.StartMoveTask(queue=source, task=task, destination=destination, max_per_second=rate)
        )
    except QueueNotFoundError:
        raise SqsError("ResourceNotFoundException", f"The queue {source} does not exist.") from None
    assert isinstance(reply, MoveTaskReply)
    return {"TaskHandle": _handle(source, task)}


@action
async def CancelMessageMoveTask(call: Call, params: Params) -> Params:
    source, task = _unhandle(params.get("TaskHandle"))
    call.require("manage", source)
    try:
        reply = await call.s.run(cmd.CancelMoveTask(queue=source, task=task))
    except (QueueNotFoundError, MoveTaskNotFoundError):
        raise SqsError(
            "ResourceNotFoundException", "No running move task has this handle."
        ) from None
    assert isinstance(reply, MoveTaskReply)
    return {"ApproximateNumberOfMessagesMoved": reply.moved}


_TASK_EVENTS: Final = ("queue.move_task_started", "queue.move_task_ended")


@action
async def ListMessageMoveTasks(call: Call, params: Params) -> Params:
    """The source queue's most recent tasks, newest first, from its events in the log."""
    source = _queue_of_arn(params.get("SourceArn"), "SourceArn")
    limit = _integer(params, "MaxResults", 1, 10) or 1
    call.require("read", source)
    await _resource(call, source)
    store = call.s.store
    started: dict[str, QueueMoveTaskStarted] = {}
    ended: dict[str, QueueMoveTaskEnded] = {}
    begun_at: dict[str, int] = {}
    after = 0
    while page := await store.read(after, 1000, queue=source, types=_TASK_EVENTS):
        for stored in page:
            event = stored.event()
            if isinstance(event, QueueMoveTaskStarted):
                started[event.task] = event
                begun_at[event.task] = stored.position
            elif isinstance(event, QueueMoveTaskEnded):
                ended[event.task] = event
        after = page[-1].position
    newest = sorted(started, key=begun_at.__getitem__, reverse=True)[:limit]
    results = []
    for task in newest:
        start, end = started[task], ended.get(task)
        result: Params = {
            "Status": "RUNNING" if end is None else end.status,
            "SourceArn": call.arn_of(source),
            "ApproximateNumberOfMessagesToMove": start.to_move,
            "StartedTimestamp": int(start.at.timestamp() * 1000),
        }
        if end is None:
            result["TaskHandle"] = _handle(source, task)
            moved = await _moved_so_far(call, source, task, begun_at[task])
        else:
            moved = end.moved
            if end.reason is not None:
                result["FailureReason"] = end.reason
        result["ApproximateNumberOfMessagesMoved"] = moved
        if start.destination is not None:
            result["DestinationArn"] = call.arn_of(start.destination)
        if start.max_per_second is not None:
            result["MaxNumberOfMessagesPerSecond"] = start.max_per_second
        results.append(result)
    return {"Results": results}


async def _moved_so_far(call: Call, source: str, task: str, since: int) -> int:
    moved, after = 0, since
    while page := await call.s.store.read(after, 1000, queue=source, types=["message.redriven"]):
        moved += sum(1 for s in page if getattr(s.event(), "task", None) == task)
        after = page[-1].position
    return moved
