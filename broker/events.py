"""Every stored event, as a tagged union of frozen msgspec Structs.

Schema-evolution rules (msgspec's own): a new field always gets a default; a field never
changes type; a tag is never renamed (stored history would be orphaned). Stored events
do not forbid unknown fields, so an older reader skips what a newer writer added.

On disk an event is split in two: the common envelope (``type``, ``at``, ``queue``,
``message_id``) lives in columns, the rest in one JSON ``data`` document. The API's event
JSON is built by concatenating those pieces (``envelope_json``), so a message body is never
parsed on the way out — feeds pay per event, not per byte of body.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, TypeAlias

import msgspec


class TypedAttribute(msgspec.Struct, frozen=True, omit_defaults=True):
    """One typed message attribute: ``data_type`` is ``String``, ``Number`` or ``Binary``,
    optionally followed by ``.<custom type>``; Binary values are base64."""

    data_type: str
    string_value: str | None = None
    binary_value: str | None = None


class Trace(msgspec.Struct, frozen=True, omit_defaults=True):
    """The W3C trace context of the request whose command appended an event."""

    traceparent: str
    tracestate: str | None = None


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    at: datetime
    queue: str
    trace: Trace | None = None
    """Absent from the stored JSON when the command carried none."""


class QueueCreated(Event, frozen=True, kw_only=True, tag="queue.created"):
    visibility_timeout_s: int
    delay_s: int
    retention_s: int
    max_receive_count: int | None = None
    dead_letter_queue: str | None = None
    # v1.1 (the SQS door's settings); absent from events written before, hence the defaults.
    max_message_bytes: int = 262144
    receive_wait_s: int = 0
    fifo: bool = False
    content_based_dedup: bool = False
    tags: dict[str, str] = {}
    redrive_allow_policy: str | None = None
    # v1.2 (the rest of SQS's attributes).
    policy: str | None = None
    kms_master_key_id: str | None = None
    kms_data_key_reuse_period_s: int = 300
    sqs_managed_sse: bool = False
    deduplication_scope: str | None = None
    fifo_throughput_limit: str | None = None
    redrive_policy: str | None = None


class QueueUpdated(Event, frozen=True, kw_only=True, tag="queue.updated"):
    """Carries the queue's complete settings after the update, not a diff."""

    visibility_timeout_s: int
    delay_s: int
    retention_s: int
    max_receive_count: int | None = None
    dead_letter_queue: str | None = None
    max_message_bytes: int = 262144
    receive_wait_s: int = 0
    fifo: bool = False
    content_based_dedup: bool = False
    tags: dict[str, str] = {}
    redrive_allow_policy: str | None = None
    # v1.2 (the rest of SQS's attributes).
    policy: str | None = None
    kms_master_key_id: str | None = None
    kms_data_key_reuse_period_s: int = 300
    sqs_managed_sse: bool = False
    deduplication_scope: str | None = None
    fifo_throughput_limit: str | None = None
    redrive_policy: str | None = None


class QueueDeleted(Event, frozen=True, kw_only=True, tag="queue.deleted"):
    """Soft delete: the queue leaves reads and commands; its events stay in the log."""


class QueuePurged(Event, frozen=True, kw_only=True, tag="queue.purged"):
    """Every message of the queue that was available, delayed or in flight is purged. The
    purge's id is this event's position (what ``queue.purge_undone`` names)."""

    purged: int


class QueuePurgeUndone(Event, frozen=True, kw_only=True, tag="queue.purge_undone"):
    """A purge undone: its messages that were still within retention are restored (each a
    ``message.restored`` after this event), the others stay purged."""

    purge: int
    restored: int
    skipped: int


class QueueRestored(Event, frozen=True, kw_only=True, tag="queue.restored"):
    """A soft-deleted queue is live again, with its settings and messages as at deletion."""


class MessageEvent(Event, frozen=True, kw_only=True):
    message_id: str


class ProducedBy(msgspec.Struct, frozen=True):
    """Which idempotent producer sent a message (the Kafka door's producers), and the
    sequences its batch covered: what makes a retry of the batch recognisable. Every message
    of the batch carries the batch's, so the batch is known even when some of its messages
    were deduplicated away."""

    producer_id: int
    epoch: int
    first_sequence: int
    last_sequence: int


class MessagePublished(MessageEvent, frozen=True, kw_only=True, tag="message.published"):
    body: msgspec.Raw
    attributes: dict[str, str] = {}
    delay_s: int = 0
    dedup_id: str | None = None
    priority: int = 4
    group_id: str | None = None
    reason: str | None = None
    """Set by the broker on a copy it publishes into a dead-letter queue: why it moved."""
    typed_attributes: dict[str, TypedAttribute] = {}
    """Typed attributes (SQS's MessageAttributes), kept exactly as sent."""
    key: str | None = None
    """The message's key (a Kafka record's key): its FIFO group when it has no other."""
    producer: ProducedBy | None = None


class LeaseEvent(MessageEvent, frozen=True, kw_only=True):
    lease: str = ""
    """Which lease: ``broker.ids.lease_of(receipt)``, never the receipt, which is the
    consumer's secret. (Events written before v1.1 carried the receipt itself, and no lease.)"""


class MessageLeased(LeaseEvent, frozen=True, kw_only=True, tag="message.leased"):
    receive_count: int
    visible_at: datetime


class MessageAcked(LeaseEvent, frozen=True, kw_only=True, tag="message.acked"):
    """The lease's holder is done with the message: it is never delivered again."""


class MessageNacked(LeaseEvent, frozen=True, kw_only=True, tag="message.nacked"):
    visible_at: datetime
    reason: str | None = None


class MessageLeaseExtended(LeaseEvent, frozen=True, kw_only=True, tag="message.lease_extended"):
    visible_at: datetime


class MessageLeaseExpired(LeaseEvent, frozen=True, kw_only=True, tag="message.lease_expired"):
    """The lease ended without an ack: the message is available again."""


class MessageDeadLettered(MessageEvent, frozen=True, kw_only=True, tag="message.dead_lettered"):
    dead_letter_queue: str
    dead_letter_message_id: str
    reason: str | None = None
    """Why: the last nack's reason, else how its last lease ended."""


class MessageExpired(MessageEvent, frozen=True, kw_only=True, tag="message.expired"):
    """The message outlived its queue's retention and will never be delivered."""


class MessageRedriven(MessageEvent, frozen=True, kw_only=True, tag="message.redriven"):
    to_queue: str
    new_message_id: str
    task: str | None = None
    """The move task that moved it, if one did (``queue.move_task_started``)."""


class QueueMoveTaskStarted(Event, frozen=True, kw_only=True, tag="queue.move_task_started"):
    """A move task: the sweeper redrives this queue's available messages, at most
    ``max_per_second``, to ``destination`` (None: back to each message's source queue), until
    none is left (``queue.move_task_ended``)."""

    task: str
    destination: str | None = None
    max_per_second: int | None = None
    to_move: int = 0


class QueueMoveTaskEnded(Event, frozen=True, kw_only=True, tag="queue.move_task_ended"):
    task: str
    status: str
    """``COMPLETED``, ``CANCELLED`` or ``FAILED`` (``reason`` says why)."""
    moved: int
    reason: str | None = None


class MessageRestored(MessageEvent, frozen=True, kw_only=True, tag="message.restored"):
    """A purged message is available again (an undone purge, ``purge``): with its own
    published_at, attributes, priority and group."""

    purge: int


AnyEvent: TypeAlias = (
    QueueCreated
    | QueueUpdated
    | QueueDeleted
    | QueuePurged
    | QueuePurgeUndone
    | QueueRestored
    | MessagePublished
    | MessageLeased
    | MessageAcked
    | MessageNacked
    | MessageLeaseExtended
    | MessageLeaseExpired
    | MessageDeadLettered
    | MessageExpired
    | MessageRedriven
    | MessageRestored
    | QueueMoveTaskStarted
    | QueueMoveTaskEnded
)

EVENT_TYPES: Final[tuple[str, ...]] = (
    "queue.created",
    "queue.updated",
    "queue.deleted",
    "queue.purged",
    "queue.purge_undone",
    "queue.restored",
    "message.published",
    "message.leased",
    "message.acked",
    "message.nacked",
    "message.lease_extended",
    "message.lease_expired",
    "message.dead_lettered",
    "message.expired",
    "message.redriven",
    "message.restored",
    "queue.move_task_started",
    "queue.move_task_ended",
)

_COMMON: Final = frozenset({"at", "queue", "message_id"})
_decoder: Final = msgspec.json.Decoder(AnyEvent)
_encoder: Final = msgspec.json.Encoder()


class _Traced(msgspec.Struct):
    trace: Trace | None = None


_TRACED: Final = b'{"trace":'
_trace_decoder: Final = msgspec.json.Decoder(_Traced)


def type_of(event: AnyEvent) -> str:
    tag = event.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def message_id_of(event: AnyEvent) -> str | None:
    return event.message_id if isinstance(event, MessageEvent) else None


_last_at: list[tuple[datetime, str]] = [(datetime.min, "")]


def encode_at(at: datetime) -> str:
    """RFC 3339 UTC with microseconds, the one spelling of time in the log and the API."""
    # Every event of a group commit shares one time: format it once (strftime is slow).
    last = _last_at[0]
    if at is last[0]:
        return last[1]
    text = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    _last_at[0] = (at, text)
    return text


_DATA_FIELDS: Final[dict[type, tuple[str, ...]]] = {
    cls: tuple(name for name in cls.__struct_fields__ if name not in _COMMON)
    for cls in AnyEvent.__args__
}


def encode_data(event: AnyEvent) -> bytes:
    """The event's own fields (everything but the common envelope), as JSON; ``trace`` only
    when there is one."""
    fields: dict[str, Any] = {name: getattr(event, name) for name in _DATA_FIELDS[type(event)]}
    if fields.get("trace", 0) is None:
        del fields["trace"]
    return _encoder.encode(fields)


def decode(type_: str, at: str, queue: str, message_id: str | None, data: bytes) -> AnyEvent:
    """Rebuild a typed event from its stored pieces (the inverse of ``encode_data``)."""
    head = b'{"type":%s,"at":"%s","queue":%s' % (
        _encoder.encode(type_),
        at.encode(),
        _encoder.encode(queue),
    )
    if message_id is not None:
        head += b',"message_id":' + _encoder.encode(message_id)
    rest = data[1:].lstrip()
    document = head + (b"," + rest if rest[:1] != b"}" else rest)
    return _decoder.decode(document)


def trace_of(data: bytes) -> Trace | None:
    """The trace context stored in an event's ``data``, if any (it is stored first)."""
    return _trace_decoder.decode(data).trace if data.startswith(_TRACED) else None


def envelope_json(
    position: int, type_: str, at: str, queue: str, message_id: str | None, data: bytes
) -> bytes:
    """The public JSON of one stored event (API.md "The event log"), built without parsing,
    but for a traced event's: its ``trace`` is stored first in ``data`` (``Event``'s first own
    field) and shown beside it, cut out as the bytes it was written as."""
    trace = b""
    if data.startswith(_TRACED):
        found = _trace_decoder.decode(data).trace
        if found is not None:
            trace = _encoder.encode(found)
            rest = data[len(_TRACED) + len(trace) :]
            data = b"{" + rest[1:] if rest[:1] == b"," else b"{}"
            trace = b',"trace":' + trace
    return b'{"position":%d,"type":%s,"at":"%s","queue":%s,"message_id":%s,"data":%s%s}' % (
        position,
        _encoder.encode(type_),
        at.encode(),
        _encoder.encode(queue),
        _encoder.encode(message_id),
        data,
        trace,
    )


class StoredEvent(msgspec.Struct, frozen=True):
    """One row of the log, as stored: the envelope in columns, the rest as JSON ``data``."""

    position: int
    type: str
    at: str
    queue: str
    message_id: str | None
    data: bytes

    @classmethod
    def of(cls, position: int, event: AnyEvent) -> StoredEvent:
        return cls(
            position,
            type_of(event),
            encode_at(event.at),
            event.queue,
            message_id_of(event),
            encode_data(event),
        )

    def event(self) -> AnyEvent:
        return decode(self.type, self.at, self.queue, self.message_id, self.data)

    def json(self) -> bytes:
        """The public JSON of this event (API.md "The event log")."""
        return envelope_json(
            self.position, self.type, self.at, self.queue, self.message_id, self.data
        )
