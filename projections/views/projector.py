"""The ``views`` projector: keeps the queue and message read models, in one transaction with
its checkpoint, so queue totals and message statuses always agree with each other.

A batch is folded in memory (pure functions in ``queues.py`` and ``messages.py``) and written
back with one statement per kind of change, in the runner's one-hop transaction.
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
    QueueCreated,
    QueueDeleted,
    QueuePurged,
    QueueUpdated,
    StoredEvent,
)
from broker.store.sql import Sql
from projections.views import messages, queues
from projections.views.messages import MESSAGE_VIEWS, MessageViewRow
from projections.views.queues import QUEUE_VIEWS, QueueViewRow

_CHUNK: Final = 500


class ViewsProjector:
    name: Final = "views"
    tables: Final = (QUEUE_VIEWS, MESSAGE_VIEWS)

    def apply(self, conn: Sql, batch: list[StoredEvent]) -> None:
        decoded = [(stored.position, stored.event()) for stored in batch]
        live_queues = _load_queues(conn)
        names = {row.name: row.queue_id for row in live_queues.values()}
        wanted = {
            event.message_id for _, event in decoded if isinstance(event, messages.TRANSITIONS)
        }
        rows = _load_messages(conn, wanted)
        changed_queues: set[int] = set()
        changed_messages: set[str] = set()
        purges: list[tuple[int, int]] = []

        for position, event in decoded:
            if isinstance(event, QueueCreated):
                row = queues.apply_queue_event(None, event, position)
                live_queues[row.queue_id] = row
                names[row.name] = row.queue_id
                changed_queues.add(row.queue_id)
                continue
            queue_id = names[event.queue]
            queues.apply_queue_event(live_queues[queue_id], event, position)
            changed_queues.add(queue_id)
            match event:
                case QueueUpdated():
                    pass  # settings only: the queue's row, above
                case QueueDeleted():
                    del names[event.queue]
                case QueuePurged():
                    purges.append((queue_id, position))
                    for message in rows.values():
                        if message.queue_id == queue_id and message.status in messages.LIVE:
                            messages.purge_row(message, position)
                            changed_messages.add(message.message_id)
                case MessagePublished():
                    rows[event.message_id] = messages.new_message_row(event, queue_id, position)
                    changed_messages.add(event.message_id)
                case (
                    MessageLeased()
                    | MessageAcked()
                    | MessageNacked()
                    | MessageLeaseExtended()
                    | MessageLeaseExpired()
                    | MessageDeadLettered()
                    | MessageExpired()
                    | MessageRedriven()
                ):
                    messages.apply_message_event(rows[event.message_id], event, position)
                    changed_messages.add(event.message_id)
                case _:
                    assert_never(event)

        # Purge the stored rows first; rows this batch touched are written back afterwards
        # with their folded state, which already accounts for the purge where it applies.
        for queue_id, position in purges:
            conn.execute(
                "UPDATE message_views SET status = 'purged', purged_position = ?,"
                " updated_position = ? WHERE queue_id = ? AND status IN ('ready', 'leased')"
                " AND position < ?",
                [position, position, queue_id, position],
            )
        if changed_queues:
            conn.executemany(
                QUEUE_VIEWS.upsert, [QUEUE_VIEWS.values(live_queues[q]) for q in changed_queues]
            )
        if changed_messages:
            conn.executemany(
                MESSAGE_VIEWS.upsert, [MESSAGE_VIEWS.values(rows[m]) for m in changed_messages]
            )

    def reset(self, conn: Sql) -> None:
        for table in self.tables:
            conn.execute(f"DELETE FROM {table.name}")


def _load_queues(conn: Sql) -> dict[int, QueueViewRow]:
    found = QUEUE_VIEWS.load_all(conn.query(f"{QUEUE_VIEWS.select} WHERE NOT deleted"))
    return {row.queue_id: row for row in found}


def _load_messages(conn: Sql, ids: set[str]) -> dict[str, MessageViewRow]:
    wanted = sorted(ids)
    found: dict[str, MessageViewRow] = {}
    for start in range(0, len(wanted), _CHUNK):
        where, params = conn.one_of("message_id", wanted[start : start + _CHUNK])
        sql = f"{MESSAGE_VIEWS.select} WHERE {where}"
        for row in MESSAGE_VIEWS.load_all(conn.query(sql, params)):
            found[row.message_id] = row
    return found
