"""The ``views`` projector: keeps the queue and message read models, in one transaction with
its checkpoint, so queue totals and message statuses always agree with each other.

A batch is folded in memory (pure functions in ``queues.py`` and ``messages.py``) and written
back with one statement per kind of change, in the runner's one-hop transaction (see
``projections/database.py``).
"""

from __future__ import annotations

import sqlite3
from typing import Any, Final

from broker.events import MessageEvent, MessagePublished, QueueCreated, QueueDeleted, QueuePurged
from broker.ports import StoredEvent
from projections.views import messages, queues
from projections.views.messages import MessageViewRow
from projections.views.queues import QueueViewRow

_CHUNK: Final = 500


def _upsert(table: str, columns: tuple[str, ...], key: str) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        f" ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )


_UPSERT_QUEUE: Final = _upsert("queue_views", queues.COLUMNS, "queue_id")
_UPSERT_MESSAGE: Final = _upsert("message_views", messages.COLUMNS, "message_id")


class ViewsProjector:
    name: Final = "views"
    tables: Final = ("queue_views", "message_views")

    def apply(self, conn: sqlite3.Connection, batch: list[StoredEvent]) -> None:
        decoded = [(stored.position, stored.event()) for stored in batch]
        live_queues = _load_queues(conn)
        names = {row.name: row.queue_id for row in live_queues.values()}
        wanted = {
            event.message_id
            for _, event in decoded
            if isinstance(event, MessageEvent) and not isinstance(event, MessagePublished)
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
                case MessageEvent():
                    messages.apply_message_event(rows[event.message_id], event, position)
                    changed_messages.add(event.message_id)
                case _:
                    continue

        # Purge the stored rows first; rows this batch touched are written back afterwards
        # with their folded state, which already accounts for the purge where it applies.
        for queue_id, position in purges:
            conn.execute(
                "UPDATE message_views SET status = 'purged', purged_position = ?,"
                " updated_position = ? WHERE queue_id = ? AND status IN ('ready', 'leased')"
                " AND position < ?",
                (position, position, queue_id, position),
            )
        if changed_queues:
            conn.executemany(
                _UPSERT_QUEUE, [_values(live_queues[q], queues.COLUMNS) for q in changed_queues]
            )
        if changed_messages:
            conn.executemany(
                _UPSERT_MESSAGE, [_values(rows[m], messages.COLUMNS) for m in changed_messages]
            )

    def reset(self, conn: sqlite3.Connection) -> None:
        for table in self.tables:
            conn.execute(f"DELETE FROM {table}")


def _values(row: Any, columns: tuple[str, ...]) -> list[Any]:
    return [getattr(row, column) for column in columns]


def _load_queues(conn: sqlite3.Connection) -> dict[int, QueueViewRow]:
    sql = f"SELECT {', '.join(queues.COLUMNS)} FROM queue_views WHERE deleted = 0"
    return {row["queue_id"]: QueueViewRow(**dict(row)) for row in conn.execute(sql)}


def _load_messages(conn: sqlite3.Connection, ids: set[str]) -> dict[str, MessageViewRow]:
    wanted = sorted(ids)
    found: dict[str, MessageViewRow] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        sql = (
            f"SELECT {', '.join(messages.COLUMNS)} FROM message_views"
            f" WHERE message_id IN ({', '.join('?' * len(chunk))})"
        )
        for row in conn.execute(sql, chunk):
            found[row["message_id"]] = MessageViewRow(**dict(row))
    return found
