"""The queue read model: settings, timestamps and lifetime totals per queue incarnation."""

from __future__ import annotations

from typing import Final, assert_never

import msgspec

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
)
from broker.state import Int32, Name, stored_settings, to_us
from broker.store.tables import Table


class QueueViewRow(msgspec.Struct):
    queue_id: int
    name: Name
    created_at: int
    updated_at: int
    position: int
    visibility_timeout_s: Int32
    delay_s: Int32
    retention_s: Int32
    max_receive_count: Int32 | None
    dead_letter_queue: Name | None
    deleted: bool = False
    published_total: int = 0
    acked_total: int = 0
    dead_lettered_total: int = 0
    expired_total: int = 0
    purged_total: int = 0
    max_message_bytes: Int32 = 262144
    receive_wait_s: Int32 = 0
    fifo: bool = False
    content_based_dedup: bool = False
    tags: str = "{}"
    """JSON."""
    redrive_allow_policy: str | None = None
    policy: str | None = None
    kms_master_key_id: str | None = None
    kms_data_key_reuse_period_s: Int32 = 300
    sqs_managed_sse: bool = False
    deduplication_scope: str | None = None
    fifo_throughput_limit: str | None = None
    redrive_policy: str | None = None


QUEUE_VIEWS: Final = Table(
    "queue_views", QueueViewRow, key=("queue_id",), indexes=(("name", "deleted"),)
)


def apply_queue_event(row: QueueViewRow | None, event: AnyEvent, position: int) -> QueueViewRow:
    """The queue's row after ``event``. ``row`` is the live queue the event names (None only
    for ``queue.created``)."""
    if isinstance(event, QueueCreated):
        at = to_us(event.at)
        return QueueViewRow(
            queue_id=position,
            name=event.queue,
            created_at=at,
            updated_at=at,
            position=position,
            **stored_settings(event),
        )
    if row is None:
        raise LookupError(f"{event.__class__.__name__} for unknown queue {event.queue}")
    row.position = position
    match event:
        case QueueUpdated():
            for name, value in stored_settings(event).items():
                setattr(row, name, value)
            row.updated_at = to_us(event.at)
        case QueueDeleted():
            row.deleted = True
            row.updated_at = to_us(event.at)
        case QueueRestored():
            row.deleted = False
            row.updated_at = to_us(event.at)
        case QueuePurged():
            row.purged_total += event.purged
        case MessagePublished():
            row.published_total += 1
        case MessageAcked():
            row.acked_total += 1
        case MessageDeadLettered():
            row.dead_lettered_total += 1
        case MessageExpired():
            row.expired_total += 1
        case (
            QueueCreated()
            | QueuePurgeUndone()
            | MessageRestored()
            | MessageLeased()
            | MessageNacked()
            | MessageLeaseExtended()
            | MessageLeaseExpired()
            | MessageRedriven()
            | QueueMoveTaskStarted()
            | QueueMoveTaskEnded()
        ):
            pass  # no total changes; the queue's position moved above
        case _:
            assert_never(event)
    return row
