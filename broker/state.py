"""The write-side state: what decisions need, and how each event changes it.

It is a projection of the log like any other (``evolve`` is a pure fold), but it is updated
in the same transaction as the events it follows, so a decision always sees every event
before it. Times are integer microseconds since the epoch: exact, cheap to index and compare.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal, Protocol, TypeAlias, assert_never

import msgspec
from msgspec import Meta

from broker.commands import DEDUP_WINDOW_S
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
    QueueCreated,
    QueueDeleted,
    QueuePurged,
    QueueUpdated,
    StoredEvent,
)

Status: TypeAlias = Literal[
    "ready", "leased", "acked", "dead_lettered", "expired", "purged", "redriven"
]
LIVE: Final[tuple[Status, ...]] = ("ready", "leased")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(at: datetime) -> int:
    delta = at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


# Bounds that stored values never exceed; the adapters size their columns from them.
Id = Annotated[str, Meta(max_length=64)]
"""Message ids and leases."""
Name = Annotated[str, Meta(max_length=80)]
"""Queue names."""
Key = Annotated[str, Meta(max_length=128)]
"""Dedup ids."""
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


class MessageState(msgspec.Struct, frozen=True):
    message_id: Id
    queue_id: int
    position: int
    """The position of the ``message.published`` event: the message's place in its queue."""
    status: Status
    visible_at: int
    """Ready: when it becomes available. Leased: when the lease ends."""
    lease: Id | None
    """The last lease (``broker.ids.lease_of`` its receipt) while it may still ack: in flight,
    after its lease expired unclaimed, and once acked (a repeated ack is idempotent). None
    before the first receive and after a nack, which gives the lease up."""
    receive_count: Int32
    published_at: int


class DedupEntry(msgspec.Struct, frozen=True):
    queue_id: int
    dedup_id: Key
    message_id: Id
    position: int
    expires_at: int


class PutQueue(msgspec.Struct, frozen=True):
    queue: QueueState


class PutMessage(msgspec.Struct, frozen=True):
    message: MessageState


class PutDedup(msgspec.Struct, frozen=True):
    entry: DedupEntry


class PurgeMessages(msgspec.Struct, frozen=True):
    """Set every live message of the queue published before ``position`` to ``purged``."""

    queue_id: int
    position: int


Change: TypeAlias = PutQueue | PutMessage | PutDedup | PurgeMessages


class StateView(Protocol):
    """Read access to the write-side state, inside the writer's transaction."""

    @property
    def next_position(self) -> int:
        """The position the next appended event will get."""

    def queue(self, name: str) -> QueueState | None:
        """The live queue with that name."""

    def queue_by_id(self, queue_id: int) -> QueueState | None:
        """The queue with that id, deleted or not."""

    def live_queues(self) -> list[QueueState]:
        """Every live queue, by name."""

    def message(self, message_id: str) -> MessageState | None:
        """The message with that id, in whatever state."""

    def messages(self, message_ids: Sequence[str]) -> dict[str, MessageState]:
        """The messages with those ids that exist, in one look (a batch ack: on a database
        across the network, one round trip instead of one per entry)."""

    def dedup(self, queue_id: int, dedup_id: str) -> DedupEntry | None:
        """The dedup key of that queue, if one was recorded."""

    def receivable(self, queue_id: int, now: int, limit: int) -> list[MessageState]:
        """Ready messages visible at ``now``, oldest publish first."""

    def due(
        self, queue_id: int, now: int, published_before: int, limit: int
    ) -> tuple[list[MessageState], list[MessageState]]:
        """What the sweeper must record, in one look: leased messages whose lease ended at or
        before ``now`` (by lease end), and ready messages published at or before
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

    def prune_dedup(self, now: int) -> int:
        """Forget dedup keys whose window has closed; return how many."""


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
                        visibility_timeout_s=event.visibility_timeout_s,
                        delay_s=event.delay_s,
                        retention_s=event.retention_s,
                        max_receive_count=event.max_receive_count,
                        dead_letter_queue=event.dead_letter_queue,
                        created_at=at,
                        updated_at=at,
                    )
                )
            ]
        case QueueUpdated():
            queue = _live_queue(view, event.queue)
            return [
                PutQueue(
                    msgspec.structs.replace(
                        queue,
                        visibility_timeout_s=event.visibility_timeout_s,
                        delay_s=event.delay_s,
                        retention_s=event.retention_s,
                        max_receive_count=event.max_receive_count,
                        dead_letter_queue=event.dead_letter_queue,
                        updated_at=at,
                    )
                )
            ]
        case QueueDeleted():
            queue = _live_queue(view, event.queue)
            return [PutQueue(msgspec.structs.replace(queue, deleted=True, updated_at=at))]
        case QueuePurged():
            queue = _live_queue(view, event.queue)
            return [PurgeMessages(queue.queue_id, position)]
        case MessagePublished():
            queue = _live_queue(view, event.queue)
            message = MessageState(
                message_id=event.message_id,
                queue_id=queue.queue_id,
                position=position,
                status="ready",
                visible_at=at + event.delay_s * 1_000_000,
                lease=None,
                receive_count=0,
                published_at=at,
            )
            changes: list[Change] = [PutMessage(message)]
            if event.dedup_id is not None:
                entry = DedupEntry(
                    queue_id=queue.queue_id,
                    dedup_id=event.dedup_id,
                    message_id=event.message_id,
                    position=position,
                    expires_at=at + DEDUP_WINDOW_S * 1_000_000,
                )
                changes.append(PutDedup(entry))
            return changes
        case MessageLeased():
            return _put(
                view,
                event.message_id,
                status="leased",
                lease=event.lease,
                receive_count=event.receive_count,
                visible_at=to_us(event.visible_at),
            )
        case MessageAcked():
            return _put(view, event.message_id, status="acked")
        case MessageNacked():
            return _put(
                view,
                event.message_id,
                status="ready",
                lease=None,
                visible_at=to_us(event.visible_at),
            )
        case MessageLeaseExtended():
            return _put(view, event.message_id, visible_at=to_us(event.visible_at))
        case MessageLeaseExpired():
            return _put(view, event.message_id, status="ready", visible_at=at)
        case MessageDeadLettered():
            return _put(view, event.message_id, status="dead_lettered")
        case MessageExpired():
            return _put(view, event.message_id, status="expired")
        case MessageRedriven():
            return _put(view, event.message_id, status="redriven")
        case _:
            assert_never(event)


def _put(view: StateView, message_id: str, **changes: Any) -> list[Change]:
    current = view.message(message_id)
    if current is None:
        raise LookupError(f"event for unknown message {message_id}")
    return [PutMessage(msgspec.structs.replace(current, **changes))]


def _live_queue(view: StateView, name: str) -> QueueState:
    queue = view.queue(name)
    if queue is None:
        raise LookupError(f"event for unknown queue {name}")
    return queue
