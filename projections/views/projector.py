"""The ``views`` projector: keeps the queue and message read models, in one transaction with
its checkpoint, so queue totals and message statuses always agree with each other.

A batch is folded in memory (pure functions in ``queues.py`` and ``messages.py``) and written
back with one statement per kind of change, in the runner's one-hop transaction, with the
version each event made of each row it changed (``history.py``, for as-of reads).
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
from broker.store.sql import Sql, each_one_of
from projections.views import history, messages, queues
from projections.views.history import MESSAGE_VERSIONS, QUEUE_VERSIONS
from projections.views.messages import MESSAGE_VIEWS, MessageViewRow
from projections.views.queues import QUEUE_VIEWS, QueueViewRow


class ViewsProjector:
    name: Final = "views"
    tables: Final = (QUEUE_VIEWS, MESSAGE_VIEWS, QUEUE_VERSIONS, MESSAGE_VERSIONS)

    def apply(self, conn: Sql, batch: list[StoredEvent]) -> None:
        decoded = [(stored.position, stored.event()) for stored in batch]
        live_queues = _load_queues(conn)
        names = {row.name: row.queue_id for row in live_queues.values()}
        wanted = {
            event.message_id for _, event in decoded if isinstance(event, messages.TRANSITIONS)
        }
        rows = _load_messages(conn, wanted)
        # A purge changes every live message of its queue, so each gets its version: load
        # them (purges are rare; a purge's own transaction wrote a row per message too).
        purged = {
            names[e.queue] for _, e in decoded if isinstance(e, QueuePurged) and e.queue in names
        }
        for queue_id in purged:
            for live in _live_messages(conn, queue_id):
                rows.setdefault(live.message_id, live)
        changed_queues: set[int] = set()
        changed_messages: set[str] = set()
        versions = history.Versions()

        for position, event in decoded:
            if isinstance(event, QueueCreated | QueueRestored):
                made = (
                    queues.apply_queue_event(None, event, position)
                    if isinstance(event, QueueCreated)
                    else queues.apply_queue_event(_deleted(conn, event.queue), event, position)
                )
                live_queues[made.queue_id] = made
                names[made.name] = made.queue_id
                changed_queues.add(made.queue_id)
                versions.queue(made, position)
                continue
            queue_id = names[event.queue]
            queue = queues.apply_queue_event(live_queues[queue_id], event, position)
            changed_queues.add(queue_id)
            match event:
                case QueueMoveTaskStarted() | QueueMoveTaskEnded():
                    continue  # the task is the write side's and the log's; its queue row moved
                case QueueUpdated() | QueuePurgeUndone():
                    versions.queue(queue, position)  # restored messages follow, each its own
                case QueueDeleted():
                    del names[event.queue]
                    versions.queue(queue, position)
                case QueuePurged():
                    versions.queue(queue, position)
                    for message in rows.values():
                        if message.queue_id == queue_id and message.status in messages.LIVE:
                            messages.purge_row(message, position)
                            changed_messages.add(message.message_id)
                            versions.message(message, position)
                case MessagePublished():
                    published = messages.new_message_row(event, queue_id, position)
                    rows[event.message_id] = published
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
                    message = rows[event.message_id]
                    messages.apply_message_event(message, event, position)
                    changed_messages.add(event.message_id)
                    versions.message(message, position)
                case _:
                    assert_never(event)

        versions.write(conn)
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


def _deleted(conn: Sql, name: str) -> QueueViewRow:
    rows = conn.query(
        f"{QUEUE_VIEWS.select} WHERE name = ? AND deleted ORDER BY queue_id DESC LIMIT 1", [name]
    )
    if not rows:
        raise LookupError(f"queue.restored for a queue never deleted: {name}")
    return QUEUE_VIEWS.load(rows[0])


def _live_messages(conn: Sql, queue_id: int) -> list[MessageViewRow]:
    sql = f"{MESSAGE_VIEWS.select} WHERE queue_id = ? AND status IN ('ready', 'leased')"
    return MESSAGE_VIEWS.load_all(conn.query(sql, [queue_id]))


def _load_messages(conn: Sql, ids: set[str]) -> dict[str, MessageViewRow]:
    found: dict[str, MessageViewRow] = {}
    for where, params in each_one_of(conn, "message_id", sorted(ids)):
        sql = f"{MESSAGE_VIEWS.select} WHERE {where}"
        for row in MESSAGE_VIEWS.load_all(conn.query(sql, params)):
            found[row.message_id] = row
    return found
