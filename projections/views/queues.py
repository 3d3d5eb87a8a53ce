"""The queue read model: settings, timestamps and lifetime totals per queue incarnation."""

from __future__ import annotations

import msgspec

from broker.events import (
    AnyEvent,
    MessageAcked,
    MessageDeadLettered,
    MessageExpired,
    MessagePublished,
    QueueCreated,
    QueueDeleted,
    QueuePurged,
    QueueUpdated,
)
from broker.state import to_us


class QueueViewRow(msgspec.Struct, kw_only=True):
    queue_id: int
    name: str
    created_at: int
    updated_at: int
    position: int
    visibility_timeout_s: int
    delay_s: int
    retention_s: int
    max_receive_count: int | None
    dead_letter_queue: str | None
    deleted: bool = False
    published_total: int = 0
    acked_total: int = 0
    dead_lettered_total: int = 0
    expired_total: int = 0
    purged_total: int = 0


COLUMNS = tuple(QueueViewRow.__struct_fields__)


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
            visibility_timeout_s=event.visibility_timeout_s,
            delay_s=event.delay_s,
            retention_s=event.retention_s,
            max_receive_count=event.max_receive_count,
            dead_letter_queue=event.dead_letter_queue,
        )
    if row is None:
        raise LookupError(f"{event.__class__.__name__} for unknown queue {event.queue}")
    row.position = position
    match event:
        case QueueUpdated():
            row.visibility_timeout_s = event.visibility_timeout_s
            row.delay_s = event.delay_s
            row.retention_s = event.retention_s
            row.max_receive_count = event.max_receive_count
            row.dead_letter_queue = event.dead_letter_queue
            row.updated_at = to_us(event.at)
        case QueueDeleted():
            row.deleted = True
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
        case _:
            return row  # other message events change no total; the position moved above
    return row
