"""What the broker answers, as typed values.

Every result is a ``msgspec.Struct`` that ignores fields it does not know, and statuses and
event types are plain strings, not closed enums: a newer server may add both. Fields the
contract added after v1 have defaults, so an older server's answers decode too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class QueueStats(msgspec.Struct, kw_only=True):
    available: int = 0
    delayed: int = 0
    in_flight: int = 0
    published_total: int = 0
    acked_total: int = 0
    dead_lettered_total: int = 0
    expired_total: int = 0
    oldest_available_age_s: float | None = None


class Queue(msgspec.Struct, kw_only=True):
    """A queue: its settings and its stats."""

    name: str
    position: int
    """The position of the last event that changed the queue's settings."""
    created_at: datetime
    updated_at: datetime
    visibility_timeout_s: int
    delay_s: int
    retention_s: int
    max_receive_count: int | None = None
    dead_letter_queue: str | None = None
    max_message_bytes: int | None = None
    receive_wait_s: int = 0
    fifo: bool = False
    content_based_dedup: bool = False
    tags: dict[str, str] = {}
    redrive_allow_policy: str | None = None
    policy: str | None = None
    kms_master_key_id: str | None = None
    kms_data_key_reuse_period_s: int = 300
    sqs_managed_sse: bool = False
    deduplication_scope: str | None = None
    fifo_throughput_limit: str | None = None
    redrive_policy: str | None = None
    stats: QueueStats = msgspec.field(default_factory=QueueStats)


class Published(msgspec.Struct, kw_only=True):
    """A publish's answer; ``position`` is what a read's ``min_position`` waits for."""

    id: str
    position: int
    duplicate: bool = False


class Trace(msgspec.Struct, kw_only=True):
    """The W3C trace context of the request that published a message."""

    traceparent: str
    tracestate: str | None = None


class TypedAttribute(msgspec.Struct, kw_only=True):
    """A typed attribute (from the SQS door): ``String``, ``Number`` or ``Binary`` (base64)."""

    data_type: str
    string_value: str | None = None
    binary_value: str | None = None


class _Binding:
    """What a received message remembers besides what the server said: the client that
    received it (to ack, nack and extend through), its queue, and whether it is settled.
    Slots, not fields, so they are never encoded or decoded."""

    __slots__ = ("_client", "_queue", "_settled")
    _client: Any
    _queue: str
    _settled: bool


class Received(msgspec.Struct, _Binding, kw_only=True):
    """A message as a receive hands it over: leased to the holder of ``receipt``."""

    id: str
    body: Any
    receipt: str
    receive_count: int
    published_at: datetime
    position: int
    """The position of the message's publish event."""
    visible_at: datetime
    """When the lease ends, unless it is extended."""
    attributes: dict[str, str] = {}
    priority: int = 4
    group_id: str | None = None
    trace: Trace | None = None
    typed_attributes: dict[str, TypedAttribute] = {}
    dedup_id: str | None = None

    @property
    def queue(self) -> str:
        """The queue it was received from."""
        return self._queue

    @property
    def settled(self) -> bool:
        """Whether it has been acked or nacked through this object."""
        return self._settled


class HistoryEntry(msgspec.Struct, kw_only=True):
    position: int
    type: str
    at: datetime
    data: Any = None


class Message(msgspec.Struct, kw_only=True):
    """A message, its status and (read one at a time) its history."""

    id: str
    queue: str
    status: str
    """``available``, ``delayed``, ``in_flight``, ``acked``, ``dead_lettered``, ``expired``,
    ``purged``, ``redriven``, or one a newer server adds."""
    body: Any
    receive_count: int
    published_at: datetime
    visible_at: datetime
    attributes: dict[str, str] = {}
    priority: int = 4
    group_id: str | None = None
    typed_attributes: dict[str, TypedAttribute] = {}
    history: list[HistoryEntry] = []
    """Every event of the message, oldest first (empty in listings)."""


class MessagePage(msgspec.Struct, kw_only=True):
    messages: list[Message]
    next: str | None = None


class Event(msgspec.Struct, kw_only=True):
    """An event of the log. ``type`` may be one this client does not know."""

    position: int
    type: str
    at: datetime
    queue: str | None = None
    message_id: str | None = None
    data: Any = None
    trace: Trace | None = None


class EventsPage(msgspec.Struct, kw_only=True):
    events: list[Event]
    next_after: int
    """Pass it as the next page's ``after``."""


class AckResult(msgspec.Struct, kw_only=True):
    id: str
    status: int
    """204 acked, 409 the lease was lost, 404 no such message."""


class Purged(msgspec.Struct, kw_only=True):
    purged: int
    position: int
    purge_id: str
    """What ``undo_purge`` takes."""


class Undone(msgspec.Struct, kw_only=True):
    restored: int
    skipped: int
    position: int


class Redriven(msgspec.Struct, kw_only=True):
    moved: int
    position: int | None = None


class RedrivePreview(msgspec.Struct, kw_only=True):
    """What a redrive would move (``dry_run=True``); nothing was written."""

    would_move: int
    sample: list[str] = []


class Dwell(msgspec.Struct, kw_only=True):
    p50: float
    p95: float
    p99: float
    max: float


class NackReason(msgspec.Struct, kw_only=True):
    reason: str
    count: int


class Bucket(msgspec.Struct, kw_only=True):
    start: datetime
    published: int = 0
    received: int = 0
    acked: int = 0
    nacked: int = 0
    dead_lettered: int = 0
    expired: int = 0
    purged: int = 0
    dwell_s: Dwell | None = None
    nack_reasons: list[NackReason] = []


class Analytics(msgspec.Struct, kw_only=True):
    queue: str
    bucket_s: int
    buckets: list[Bucket]


class Log(msgspec.Struct, kw_only=True):
    """What the log keeps (``GET /v1/log``): the head, where the live log and the archive
    begin, and from where the past can be read."""

    head: int
    live_from: int | None = None
    archived_from: int | None = None
    archived_through: int | None = None
    as_of_from: int | None = None
    log_retention_s: float | None = None
    archive_retention_s: float | None = None
    history_retention_s: float | None = None
    epoch: str | None = None
    """Changes on every restore of a backup: positions restarted."""
