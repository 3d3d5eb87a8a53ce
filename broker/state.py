"""The write-side state: what decisions need, and how each event changes it.

It is a projection of the log like any other (``evolve`` is a pure fold), but it is updated
in the same transaction as the events it follows, so a decision always sees every event
before it. Times are integer microseconds since the epoch: exact, cheap to index and compare.

**Groups** (FIFO message groups). A group's messages are delivered in publish order, one
receive at a time: only its head may be received, and only while none of the group is in
flight. The state says so with statuses: of a group's live messages at most one is ``ready``
(its head, when nothing of the group is leased); the others are ``waiting``. So a receive
finds every message it may take among the ``ready`` ones, walking one index in order, and
never scans a queue's groups. ``GroupState`` counts a group's live and leased messages and
names its head; when the head leaves or a lease ends with nothing else of the group in flight,
the earliest waiting message becomes the head.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal, Protocol, TypeAlias, assert_never

import msgspec
from msgspec import Meta

from broker.commands import DEDUP_WINDOW_S, QueueSettings
from broker.events import (
    AnyEvent,
    MessageAcked,
    MessageDeadLettered,
    MessageExpired,
    MessageLeased,
    MessageLeaseExpired,
    MessageLeaseExtended,
    MessageNacked,
    MessagePublished,
    MessageRedriven,
    MessageRestored,
    QueueCreated,
    QueueDeleted,
    QueueMoveTaskEnded,
    QueueMoveTaskStarted,
    QueuePurged,
    QueuePurgeUndone,
    QueueRestored,
    QueueUpdated,
    StoredEvent,
)

Status: TypeAlias = Literal[
    "ready", "waiting", "leased", "acked", "dead_lettered", "expired", "purged", "redriven"
]
LIVE: Final[tuple[Status, ...]] = ("ready", "waiting", "leased")
FINISHED: Final[tuple[Status, ...]] = ("acked", "dead_lettered", "expired", "redriven")
"""Statuses a message never leaves: it is done with, and only a late ack can still name it."""
FINISHED_KEPT_S: Final = 300
"""How long the write side keeps a finished message after its ``visible_at`` (when it
finished, or when its last lease would have ended if that is later): a retried ack is
answered as the first one was (``204`` for the same receipt, ``409`` for a lost lease) for at
least this long after the lease, and is a ``404`` after it. Then the row is pruned, so that
the write side holds the live messages and a window of recent ones, however long the log."""
PRUNE_BATCH: Final = 5000
"""At most this many message rows a sweep prunes per queue: a sweep shares the writer with
commands, and a backlog of finished rows is worked off over a few sweeps instead."""
PRUNE_QUEUES: Final = 1000
"""At most this many queues one prune visits (those due longest first; the others at the next
sweep), as a full sweep visits at most ``Sweep.queues``."""
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MAX_PRIORITY: Final = 9
SETTINGS: Final = QueueSettings.__struct_fields__


def to_us(at: datetime) -> int:
    delta = at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def rank_of(priority: int) -> int:
    """The order a receive takes ready messages in is rank, then position: one ascending
    walk of one index gives the highest priority first (an index on priority could only
    give both columns ascending, or both descending)."""
    return MAX_PRIORITY - priority


# Bounds that stored values never exceed; the adapters size their columns from them.
Id = Annotated[str, Meta(max_length=64)]
"""Message ids and leases."""
Name = Annotated[str, Meta(max_length=80)]
"""Queue names."""
Key = Annotated[str, Meta(max_length=128)]
"""Dedup ids and group ids."""
Text = Annotated[str, Meta(max_length=1024)]
"""Nack reasons."""
Token = Annotated[str, Meta(max_length=255)]
"""Idempotency keys and subjects."""
Int32 = Annotated[int, Meta(ge=-(2**31), le=2**31 - 1)]
"""Settings and counters that are small by contract."""


class QueueState(msgspec.Struct, frozen=True):
    queue_id: int
    """The position of the queue's ``queue.created`` event: names are reused after a delete,
    ids never are."""
    name: Name
    visibility_timeout_s: Int32
    delay_s: Int32
    retention_s: Int32
    max_receive_count: Int32 | None
    dead_letter_queue: Name | None
    created_at: int
    updated_at: int
    deleted: bool = False
    max_message_bytes: Int32 = 262144
    receive_wait_s: Int32 = 0
    fifo: bool = False
    content_based_dedup: bool = False
    tags: str = "{}"
    """JSON: a column holds text, not a mapping."""
    redrive_allow_policy: str | None = None
    move_task: str | None = None
    """The running move task, a ``MoveTask`` as JSON; None when none runs."""
    policy: str | None = None
    kms_master_key_id: str | None = None
    kms_data_key_reuse_period_s: Int32 = 300
    sqs_managed_sse: bool = False
    deduplication_scope: str | None = None
    fifo_throughput_limit: str | None = None
    redrive_policy: str | None = None


class MoveTask(msgspec.Struct, frozen=True, kw_only=True):
    task: str
    destination: str | None
    max_per_second: int | None
    started_at: int
    moved: int = 0


def move_task_of(queue: QueueState) -> MoveTask | None:
    return None if queue.move_task is None else msgspec.json.decode(queue.move_task, type=MoveTask)


class MessageState(msgspec.Struct, frozen=True):
    message_id: Id
    queue_id: int
    position: int
    """The position of the ``message.published`` event: the message's place in its queue."""
    status: Status
    visible_at: int
    """Ready or waiting: when it becomes available. Leased: when the lease ends."""
    lease: Id | None
    """The last lease (``broker.ids.lease_of`` its receipt) while it may still ack: in flight,
    after its lease expired unclaimed, and once acked (a repeated ack is idempotent). None
    before the first receive and after a nack, which gives the lease up."""
    receive_count: Int32
    published_at: int
    rank: Int32 = rank_of(4)
    group_id: Key | None = None
    purged_by: int | None = None
    """The position of the purge that removed it (what an undo names)."""
    reason: Text | None = None
    """Its last nack's reason, or (a copy in a dead-letter queue) why it was moved there."""
    first_leased_at: int | None = None
    """When it was first received (SQS's ApproximateFirstReceiveTimestamp)."""


class GroupState(msgspec.Struct, frozen=True):
    queue_id: int
    group_id: Key
    live: Int32
    """Its messages that are ready, waiting or leased."""
    leased: Int32
    head: Id | None
    """The one message of the group that is ``ready``, if any."""


class DedupEntry(msgspec.Struct, frozen=True):
    queue_id: int
    dedup_id: Key
    message_id: Id
    position: int
    expires_at: int


def dedup_key(queue: QueueState, group_id: str | None, dedup_id: str) -> str:
    """What a message's dedup id is recorded (and looked up) under: the id itself, or on a
    queue whose ``deduplication_scope`` is ``messageGroup`` the id within its group, hashed so
    that it fits the column (a dedup id and a group id are 128 characters each)."""
    if queue.deduplication_scope != "messageGroup":
        return dedup_id
    scoped = hashlib.sha256(f"{group_id or ''}\n{dedup_id}".encode()).hexdigest()
    return f"group:{scoped}"


class PurgeRecord(msgspec.Struct, frozen=True):
    position: int
    """The ``queue.purged`` event's position: the purge's id."""
    queue_id: int
    undone: bool = False


class IdempotencyRecord(msgspec.Struct, frozen=True):
    """A command run with an ``Idempotency-Key``: kept 24 h, so a repeat gets the first
    answer instead of running again."""

    subject: Token
    idempotency_key: Token
    fingerprint: Annotated[str, Meta(max_length=64)]
    """A digest of the method, path and body (as parsed JSON) the key was first used with."""
    expires_at: int
    reply_kind: Annotated[str, Meta(max_length=32)]
    reply: bytes
    """The command's reply (JSON of the ``reply_kind`` Struct), kept with the command itself:
    if the answer below was never recorded (its process died first), a repeat is answered
    from this."""
    answer: bytes | None = None
    """The first answer (status, headers, body), once the door that ran the command gave it."""


PRODUCER_BATCHES: Final = 5
"""How many of an idempotent producer's last batches are remembered: librdkafka and the Java
client keep at most 5 in flight, so a retry is always one of these."""
PRODUCER_KEPT_S: Final = 86_400
"""How long an idempotent producer that sends nothing is remembered (Kafka's
``producer.id.expiration.ms``); after it, a new batch of it must start its sequence again."""
SEQUENCE_WRAP: Final = 2**31
"""Sequences are int32 and go on from 0 after the largest."""


class ProducerBatchSeen(msgspec.Struct, frozen=True, array_like=True):
    first_sequence: int
    last_sequence: int
    position: int
    """Where its first message was published: what a retry of it is answered."""
    message_id: str


class ProducerState(msgspec.Struct, frozen=True):
    """An idempotent producer, as far as one queue has seen it."""

    queue_id: int
    producer_id: int
    epoch: Int32
    last_sequence: Int32
    batches: str
    """JSON: its last ``PRODUCER_BATCHES`` batches (``ProducerBatchSeen``), oldest first."""
    updated_at: int

    def seen(self) -> list[ProducerBatchSeen]:
        return msgspec.json.decode(self.batches, type=list[ProducerBatchSeen])


class QueueDue(msgspec.Struct, frozen=True):
    """When the sweeper and the pruner may next have something to do for one queue, so that
    they visit the queues that are due instead of every queue (an idle queue costs nothing).
    Kept by the adapters as they store rows, not by ``evolve``: each time is a lower bound,
    lowered whenever a row is stored that is due sooner, and set exactly (``sweep_due``,
    ``prune_due``) for each queue a sweep or prune visited. None: nothing to do until a row
    is stored."""

    queue_id: int
    sweep_at: int | None = None
    """The earliest lease end or retention expiry of its live messages; 0 (at once) while a
    move task runs, and after a change that may make anything due (``queue_due_now``)."""
    prune_at: int | None = None
    """The earliest ``visible_at`` of its finished messages (which are pruned
    ``FINISHED_KEPT_S`` after it); 0 while an undone purge of it leaves rows to prune."""


def message_sweep_at(message: MessageState, retention_s: int) -> int | None:
    """When the sweeper has something to record for this message, as far as it alone goes:
    a leased one when its lease ends, a ready or waiting one when it outlives retention."""
    if message.status == "leased":
        return message.visible_at
    if message.status in ("ready", "waiting"):
        return message.published_at + retention_s * 1_000_000
    return None


def message_prune_at(message: MessageState) -> int | None:
    """The time a finished message's row is kept from (see ``FINISHED_KEPT_S``)."""
    return message.visible_at if message.status in FINISHED else None


def queue_due_now(before: QueueState | None, after: QueueState) -> bool:
    """Whether a change of a live queue may make something due that its stored messages did
    not: it came back from deletion, its retention got shorter, or a move task runs."""
    if after.deleted:
        return False
    if after.move_task is not None:
        return True
    return before is not None and (before.deleted or after.retention_s < before.retention_s)


def sweep_due(queue: QueueState, lease_end: int | None, oldest_published: int | None) -> int | None:
    """A queue's exact ``sweep_at``: from its earliest lease end and the publish time of its
    oldest ready or waiting message."""
    if queue.deleted:
        return None
    if queue.move_task is not None:
        return 0
    if oldest_published is None:
        return lease_end
    return earliest(lease_end, oldest_published + queue.retention_s * 1_000_000)


def earliest(*times: int | None) -> int | None:
    return min((t for t in times if t is not None), default=None)


class PutQueue(msgspec.Struct, frozen=True):
    queue: QueueState


class PutMessage(msgspec.Struct, frozen=True):
    message: MessageState


class PutGroup(msgspec.Struct, frozen=True):
    group: GroupState


class PutDedup(msgspec.Struct, frozen=True):
    entry: DedupEntry


class PutPurge(msgspec.Struct, frozen=True):
    purge: PurgeRecord


class PurgeMessages(msgspec.Struct, frozen=True):
    """Set every live message of the queue published before ``position`` to ``purged`` (by
    the purge at ``position``), and forget the queue's groups: none has a live message left."""

    queue_id: int
    position: int


class PutIdempotency(msgspec.Struct, frozen=True):
    record: IdempotencyRecord


class PutProducer(msgspec.Struct, frozen=True):
    producer: ProducerState


Change: TypeAlias = (
    PutQueue
    | PutMessage
    | PutGroup
    | PutDedup
    | PutPurge
    | PurgeMessages
    | PutIdempotency
    | PutProducer
)


class StateView(Protocol):
    """Read access to the write-side state, inside the writer's transaction."""

    @property
    def next_position(self) -> int:
        """The position the next appended event will get."""

    def queue(self, name: str) -> QueueState | None:
        """The live queue with that name."""

    def queue_by_id(self, queue_id: int) -> QueueState | None:
        """The queue with that id, deleted or not."""

    def deleted_queue(self, name: str) -> QueueState | None:
        """The most recently deleted queue of that name."""

    def live_queues(self) -> list[QueueState]:
        """Every live queue, by name."""

    def due_queues(self, now: int, limit: int) -> list[QueueState]:
        """The live queues whose ``QueueDue.sweep_at`` is at or before ``now``: at most
        ``limit``, the earliest due first; by name. One indexed look, however many queues."""

    def message(self, message_id: str) -> MessageState | None:
        """The message with that id, in whatever state."""

    def messages(self, message_ids: Sequence[str]) -> dict[str, MessageState]:
        """The messages with those ids that exist, in one look (a batch ack: on a database
        across the network, one round trip instead of one per entry)."""

    def group(self, queue_id: int, group_id: str) -> GroupState | None:
        """A group of the queue that has (or had) live messages."""

    def waiting(self, queue_id: int, group_id: str, after: int, limit: int) -> list[MessageState]:
        """The group's waiting messages published after position ``after``, in order."""

    def purge(self, position: int) -> PurgeRecord | None:
        """The purge whose ``queue.purged`` event is at that position."""

    def purged_by(self, queue_id: int, purge: int) -> list[MessageState]:
        """The messages that purge removed and that are still purged, by position."""

    def dedup(self, queue_id: int, dedup_id: str) -> DedupEntry | None:
        """The dedup key of that queue, if one was recorded."""

    def idempotency(self, subject: str, key: str) -> IdempotencyRecord | None:
        """The command last run by ``subject`` with that idempotency key, if kept."""

    def producer(self, queue_id: int, producer_id: int) -> ProducerState | None:
        """What the queue has seen of that idempotent producer, if it is remembered."""

    def available(self, queue_id: int, now: int, after: int, limit: int) -> list[MessageState]:
        """Ready and waiting messages visible at ``now`` published after position ``after``,
        by position (what a redrive may move)."""

    def receivable(self, queue_id: int, now: int, limit: int) -> list[MessageState]:
        """Ready messages visible at ``now``, highest priority (lowest rank) first, then in
        publish order. A group contributes its head only (see the module docstring)."""

    def due(
        self, queue_id: int, now: int, published_before: int, limit: int
    ) -> tuple[list[MessageState], list[MessageState]]:
        """What the sweeper must record, in one look: leased messages whose lease ended at or
        before ``now`` (by lease end), and ready or waiting messages published at or before
        ``published_before`` (by publish time); at most ``limit`` of each."""

    def count_live(self, queue_id: int) -> int:
        """How many of the queue's messages are available, delayed or in flight."""

    def next_visible_at(self, queue_id: int, now: int) -> int | None:
        """The earliest future time a ready message of the queue becomes visible."""

    def published(self, positions: Sequence[int]) -> dict[int, MessagePublished]:
        """The ``message.published`` events at those positions (bodies and attributes), by
        position, in one look."""


class StateTx(StateView, Protocol):
    """An adapter's transaction: the stored state, and storing exactly what the writer hands
    it. The writer folds each event into changes (``evolve``) itself; an adapter only keeps
    them, so that later reads in the same transaction see them."""

    def append(self, event: StoredEvent) -> None:
        """Store the event at ``next_position`` (which it carries), and move past it."""

    def apply(self, changes: Sequence[Change]) -> None:
        """Store these state changes."""

    def reschedule(self, queue_ids: Sequence[int]) -> None:
        """Set each queue's ``sweep_at`` exactly (``sweep_due``), from the rows as they are
        now: called once a full sweep's events are stored, for the queues it visited."""

    def prune(self, now: int, finished_before: int) -> int:
        """Forget dedup keys whose window has closed, idempotency records past their 24 h,
        idempotent producers silent for ``PRODUCER_KEPT_S`` (each one indexed look across
        queues), the rows of finished messages whose ``visible_at`` is at or before
        ``finished_before`` (``FINISHED_KEPT_S``), and those of messages a purge took that is
        undone (no undo can bring them back any more): of the queues whose ``prune_at`` is at
        or before ``finished_before`` (at most ``PRUNE_QUEUES``, the earliest first, deleted
        ones too), at most ``PRUNE_BATCH`` message rows per queue and purge; then their
        ``prune_at`` exactly. Purged messages of a purge not undone stay: an undo restores or
        counts them. Return how many rows were forgotten."""


def stored_settings(event: QueueCreated | QueueUpdated) -> dict[str, Any]:
    """A queue event's settings as rows keep them (the write side's and the read models'):
    every setting under its own name, the tags as JSON text."""
    settings = {name: getattr(event, name) for name in SETTINGS}
    settings["tags"] = msgspec.json.encode(event.tags).decode()
    return settings


def evolve(view: StateView, event: AnyEvent, position: int) -> list[Change]:
    """The state changes one event makes. Pure: reads ``view``, returns changes."""
    at = to_us(event.at)
    match event:
        case QueueCreated():
            return [
                PutQueue(
                    QueueState(
                        queue_id=position,
                        name=event.queue,
                        created_at=at,
                        updated_at=at,
                        **stored_settings(event),
                    )
                )
            ]
        case QueueUpdated():
            queue = _live_queue(view, event.queue)
            return [
                PutQueue(msgspec.structs.replace(queue, updated_at=at, **stored_settings(event)))
            ]
        case QueueDeleted():
            queue = _live_queue(view, event.queue)
            return [PutQueue(msgspec.structs.replace(queue, deleted=True, updated_at=at))]
        case QueueRestored():
            deleted = view.deleted_queue(event.queue)
            if deleted is None:
                raise LookupError(f"queue.restored for a queue never deleted: {event.queue}")
            return [PutQueue(msgspec.structs.replace(deleted, deleted=False, updated_at=at))]
        case QueuePurged():
            queue = _live_queue(view, event.queue)
            return [
                PurgeMessages(queue.queue_id, position),
                PutPurge(PurgeRecord(position=position, queue_id=queue.queue_id)),
            ]
        case QueuePurgeUndone():
            purge = view.purge(event.purge)
            if purge is None:
                raise LookupError(f"queue.purge_undone for an unknown purge {event.purge}")
            return [PutPurge(msgspec.structs.replace(purge, undone=True))]
        case MessagePublished():
            return _published(view, event, position, at)
        case MessageRestored():
            return _restored(view, event, at)
        case MessageLeased():
            message = _message(view, event.message_id)
            leased = msgspec.structs.replace(
                message,
                status="leased",
                lease=event.lease,
                receive_count=event.receive_count,
                visible_at=to_us(event.visible_at),
                first_leased_at=message.first_leased_at or at,
            )
            return [PutMessage(leased), *_group_leased(view, message)]
        case MessageAcked():
            return _leave(view, _message(view, event.message_id), "acked")
        case MessageDeadLettered():
            return _leave(view, _message(view, event.message_id), "dead_lettered")
        case MessageExpired():
            return _leave(view, _message(view, event.message_id), "expired")
        case MessageRedriven():
            changes = _leave(view, _message(view, event.message_id), "redriven")
            if event.task is not None:  # one more moved by the running task
                source = _live_queue(view, event.queue)
                task = move_task_of(source)
                if task is not None and task.task == event.task:
                    counted = msgspec.structs.replace(task, moved=task.moved + 1)
                    moving = msgspec.json.encode(counted).decode()
                    changes.append(PutQueue(msgspec.structs.replace(source, move_task=moving)))
            return changes
        case QueueMoveTaskStarted():
            queue = _live_queue(view, event.queue)
            task = MoveTask(
                task=event.task,
                destination=event.destination,
                max_per_second=event.max_per_second,
                started_at=at,
            )
            encoded = msgspec.json.encode(task).decode()
            return [PutQueue(msgspec.structs.replace(queue, move_task=encoded))]
        case QueueMoveTaskEnded():
            queue = _live_queue(view, event.queue)
            return [PutQueue(msgspec.structs.replace(queue, move_task=None))]
        case MessageNacked():
            message = msgspec.structs.replace(
                _message(view, event.message_id),
                lease=None,
                visible_at=to_us(event.visible_at),
                reason=event.reason,
            )
            return _release(view, message)
        case MessageLeaseExtended():
            message = _message(view, event.message_id)
            extended = msgspec.structs.replace(message, visible_at=to_us(event.visible_at))
            return [PutMessage(extended)]
        case MessageLeaseExpired():
            message = msgspec.structs.replace(_message(view, event.message_id), visible_at=at)
            return _release(view, message)
        case _:
            assert_never(event)


def _published(view: StateView, event: MessagePublished, position: int, at: int) -> list[Change]:
    queue = _live_queue(view, event.queue)
    changes: list[Change] = []
    status: Status = "ready"
    if event.group_id is not None:
        group = view.group(queue.queue_id, event.group_id) or GroupState(
            queue.queue_id, event.group_id, live=0, leased=0, head=None
        )
        # The head of an empty group, else behind the others (nothing of a group with live
        # messages can be without a head or a lease: see _promote).
        first = group.live == 0
        status = "ready" if first else "waiting"
        head = event.message_id if first else group.head
        changes.append(PutGroup(msgspec.structs.replace(group, live=group.live + 1, head=head)))
    message = MessageState(
        message_id=event.message_id,
        queue_id=queue.queue_id,
        position=position,
        status=status,
        visible_at=at + event.delay_s * 1_000_000,
        lease=None,
        receive_count=0,
        published_at=at,
        rank=rank_of(event.priority),
        group_id=event.group_id,
        reason=event.reason,
    )
    changes.insert(0, PutMessage(message))
    if event.dedup_id is not None:
        entry = DedupEntry(
            queue_id=queue.queue_id,
            dedup_id=dedup_key(queue, event.group_id, event.dedup_id),
            message_id=event.message_id,
            position=position,
            expires_at=at + DEDUP_WINDOW_S * 1_000_000,
        )
        changes.append(PutDedup(entry))
    if event.producer is not None:
        changes.append(PutProducer(_produced(view, queue, event, position, at)))
    return changes


def _produced(
    view: StateView, queue: QueueState, event: MessagePublished, position: int, at: int
) -> ProducerState:
    """The producer's state after one of its messages: the first message of a batch adds the
    batch (keeping the last ``PRODUCER_BATCHES``); the batch's other messages change
    nothing more."""
    by = event.producer
    assert by is not None
    known = view.producer(queue.queue_id, by.producer_id)
    seen = [] if known is None or known.epoch != by.epoch else known.seen()
    if seen and seen[-1].first_sequence == by.first_sequence:
        assert known is not None
        return msgspec.structs.replace(known, updated_at=at)
    seen.append(ProducerBatchSeen(by.first_sequence, by.last_sequence, position, event.message_id))
    return ProducerState(
        queue_id=queue.queue_id,
        producer_id=by.producer_id,
        epoch=by.epoch,
        last_sequence=by.last_sequence,
        batches=msgspec.json.encode(seen[-PRODUCER_BATCHES:]).decode(),
        updated_at=at,
    )


def _restored(view: StateView, event: MessageRestored, at: int) -> list[Change]:
    message = msgspec.structs.replace(
        _message(view, event.message_id), status="waiting", purged_by=None, visible_at=at
    )
    if message.group_id is None:
        return [PutMessage(msgspec.structs.replace(message, status="ready"))]
    group = view.group(message.queue_id, message.group_id) or GroupState(
        message.queue_id, message.group_id, live=0, leased=0, head=None
    )
    group = msgspec.structs.replace(group, live=group.live + 1)
    changes: list[Change] = []
    if group.leased == 0:
        # Publish order comes first: an older message back from the purge goes before the
        # group's present head.
        current: MessageState | None = None
        if group.head is not None:
            current = view.message(group.head)
        if current is None or current.position > message.position:
            if current is not None:
                changes.append(PutMessage(msgspec.structs.replace(current, status="waiting")))
            message = msgspec.structs.replace(message, status="ready")
            group = msgspec.structs.replace(group, head=message.message_id)
    return [PutMessage(message), *changes, PutGroup(group)]


def _group_leased(view: StateView, message: MessageState) -> list[Change]:
    if message.group_id is None:
        return []
    group = _group(view, message)
    head = None if group.head == message.message_id else group.head
    return [PutGroup(msgspec.structs.replace(group, leased=group.leased + 1, head=head))]


def _leave(view: StateView, message: MessageState, status: Status) -> list[Change]:
    """The message is done with (acked, expired, moved): it leaves its group's way."""
    gone = msgspec.structs.replace(message, status=status)
    if message.group_id is None or message.status not in LIVE:
        return [PutMessage(gone)]
    group = _group(view, message)
    group = msgspec.structs.replace(
        group,
        live=group.live - 1,
        leased=group.leased - (message.status == "leased"),
        head=None if group.head == message.message_id else group.head,
    )
    return [PutMessage(gone), *_promote(view, group, exclude=message.message_id)]


def _release(view: StateView, message: MessageState) -> list[Change]:
    """A lease ended (nack, expiry): the message is available again, at its group's head
    once nothing of the group is in flight."""
    if message.group_id is None:
        return [PutMessage(msgspec.structs.replace(message, status="ready"))]
    group = _group(view, message)
    group = msgspec.structs.replace(group, leased=group.leased - 1)
    waiting = msgspec.structs.replace(message, status="waiting")
    return [PutMessage(waiting), *_promote(view, group, also=waiting)]


def _promote(
    view: StateView,
    group: GroupState,
    *,
    exclude: str | None = None,
    also: MessageState | None = None,
) -> list[Change]:
    """The group as it is now; and, when nothing of it is in flight and it has no head, its
    earliest waiting message as the head. ``also``: a message just made waiting that the
    store does not show yet; ``exclude``: one that just left."""
    changes: list[Change] = []
    if group.leased == 0 and group.head is None and group.live > 0:
        candidates = [
            m
            for m in view.waiting(group.queue_id, group.group_id, after=0, limit=2)
            if m.message_id != exclude
        ]
        if also is not None:
            candidates = [m for m in candidates if m.message_id != also.message_id] + [also]
        if candidates:
            head = min(candidates, key=lambda m: m.position)
            changes.append(PutMessage(msgspec.structs.replace(head, status="ready")))
            group = msgspec.structs.replace(group, head=head.message_id)
    return [*changes, PutGroup(group)]


def _message(view: StateView, message_id: str) -> MessageState:
    current = view.message(message_id)
    if current is None:
        raise LookupError(f"event for unknown message {message_id}")
    return current


def _group(view: StateView, message: MessageState) -> GroupState:
    assert message.group_id is not None
    group = view.group(message.queue_id, message.group_id)
    if group is None:
        raise LookupError(f"no group {message.group_id} for message {message.message_id}")
    return group


def _live_queue(view: StateView, name: str) -> QueueState:
    queue = view.queue(name)
    if queue is None:
        raise LookupError(f"event for unknown queue {name}")
    return queue
