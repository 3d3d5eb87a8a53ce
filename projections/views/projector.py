"""The ``views`` projector: keeps the queue and message read models, in one transaction with
its checkpoint, so queue totals and message statuses always agree with each other.

A batch is folded in memory (pure functions in ``queues.py`` and ``messages.py``, over the rows
``batch.py`` reads once and keeps, so each event sees what the batch's earlier events did) and
written back with one statement per kind of change, in the runner's one-hop transaction, with
the version each event made of each row it changed (``history.py``, for as-of reads).
"""

from __future__ import annotations

from typing import Final, assert_never

from broker.events import (
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
from broker.store.sql import Sql
from projections.views import history, messages, queues
from projections.views.batch import BatchRows
from projections.views.history import MESSAGE_VERSIONS, QUEUE_VERSIONS
from projections.views.messages import MESSAGE_VIEWS
from projections.views.queues import QUEUE_VIEWS
from projections.views.retention import (
    HISTORY_BASELINE,
    HISTORY_CLOCK,
    HISTORY_HORIZON,
    HistoryRetention,
)


class ViewsProjector:
    name: Final = "views"
    tables: Final = (
        QUEUE_VIEWS,
        MESSAGE_VIEWS,
        QUEUE_VERSIONS,
        MESSAGE_VERSIONS,
        HISTORY_CLOCK,
        HISTORY_BASELINE,
        HISTORY_HORIZON,
    )

    def __init__(self, retention: HistoryRetention | None = None) -> None:
        self.retention = retention
        """None: keep every finished message and version (tests that compare whole models)."""

    def apply(self, conn: Sql, batch: list[StoredEvent]) -> None:
        decoded = [(stored.position, stored.event()) for stored in batch]
        rows = BatchRows(conn, [event for _, event in decoded])
        changed_queues: set[int] = set()
        changed_messages: set[str] = set()
        versions = history.Versions()

        for position, event in decoded:
            if isinstance(event, QueueCreated):
                queue = queues.apply_queue_event(None, event, position)
                rows.add_live(queue)
            elif isinstance(event, QueueRestored):
                queue = queues.apply_queue_event(rows.deleted_queue(event.queue), event, position)
                rows.add_live(queue)
            else:
                queue = queues.apply_queue_event(rows.live_queue(event.queue), event, position)
            changed_queues.add(queue.queue_id)
            match event:
                case QueueMoveTaskStarted() | QueueMoveTaskEnded():
                    continue  # the task is the write side's and the log's; its queue row moved
                case QueueCreated() | QueueRestored() | QueueUpdated() | QueuePurgeUndone():
                    versions.queue(queue, position)  # restored messages follow, each its own
                case QueueDeleted():
                    rows.remove_live(queue)
                    versions.queue(queue, position)
                case QueuePurged():
                    versions.queue(queue, position)
                    for message in rows.live_messages(queue.queue_id):
                        messages.purge_row(message, position)
                        changed_messages.add(message.message_id)
                        versions.message(message, position)
                case MessagePublished():
                    published = messages.new_message_row(event, queue.queue_id, position)
                    rows.messages[event.message_id] = published
                    changed_messages.add(event.message_id)
                    versions.message(published, position)
                case (
                    MessageRestored()
                    | MessageLeased()
                    | MessageAcked()
                    | MessageNacked()
                    | MessageLeaseExtended()
                    | MessageLeaseExpired()
                    | MessageDeadLettered()
                    | MessageExpired()
                    | MessageRedriven()
                ):
                    message = rows.messages[event.message_id]
                    messages.apply_message_event(message, event, position)
                    changed_messages.add(event.message_id)
                    versions.message(message, position)
                case _:
                    assert_never(event)

        versions.write(conn)
        if changed_queues:
            conn.executemany(
                QUEUE_VIEWS.upsert, [QUEUE_VIEWS.values(rows.queues[q]) for q in changed_queues]
            )
        if changed_messages:
            conn.executemany(
                MESSAGE_VIEWS.upsert,
                [MESSAGE_VIEWS.values(rows.messages[m]) for m in changed_messages],
            )
        if self.retention is not None:
            self.retention.after_batch(conn, batch)

    def reset(self, conn: Sql) -> None:
        for table in self.tables:
            conn.execute(f"DELETE FROM {table.name}")
