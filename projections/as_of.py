"""Reads of the past: a queue, a message or a message listing as it was right after a position,
from the versions the ``views`` projector keeps of every row (``views/history.py``). The
caller waits until that projection has reached the position; the answer is then the log folded
up to it, whether or not the read models were rebuilt since.

The clock of such a read is the time of the position's event: a message whose delay had run
out by then is available, one whose delay had not is delayed.
"""

from __future__ import annotations

from typing import Any, Final

from broker.ports import EventStore
from broker.store.sql import Database, Sql
from projections.queries import (
    CursorUnknown,
    MessagePage,
    MessageResource,
    PublicStatus,
    QueueMissing,
    QueueResource,
    Stats,
    message_resource,
    page,
    resource,
    status_condition,
)
from projections.views import retention
from projections.views.history import MESSAGE_VERSIONS, QUEUE_VERSIONS, QueueVersionRow

_HOLDS: Final = "from_position <= ? AND to_position > ?"
_TOTALS: Final = {
    "acked": "acked_total",
    "dead_lettered": "dead_lettered_total",
    "expired": "expired_total",
}
_STATUSES: Final = ("ready", "leased", "acked", "dead_lettered", "expired", "purged", "redriven")
_MESSAGE_VERSIONS_AT: Final = f"{MESSAGE_VERSIONS.select} WHERE queue_id = ? AND {_HOLDS}"


def _queue_version(conn: Sql, name: str, position: int) -> QueueVersionRow:
    rows = conn.query(
        f"{QUEUE_VERSIONS.select} WHERE name = ? AND {_HOLDS} AND NOT deleted",
        [name, position, position],
    )
    if not rows:
        raise QueueMissing(name)
    return QUEUE_VERSIONS.load(rows[0])


def _stats(conn: Sql, queue_id: int, position: int, now: int) -> Stats:
    row = conn.query(
        "SELECT"
        " SUM(CASE WHEN status = 'ready' AND visible_at <= ? THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN status = 'ready' AND visible_at > ? THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN status = 'leased' THEN 1 ELSE 0 END),"
        " MIN(CASE WHEN status = 'ready' AND visible_at <= ? THEN published_at END)"
        f" FROM message_versions WHERE queue_id = ? AND {_HOLDS}"
        " AND status IN ('ready', 'leased')",
        [now, now, now, queue_id, position, position],
    )[0]
    return int(row[0] or 0), int(row[1] or 0), int(row[2] or 0), row[3]


def _queue(conn: Sql, name: str, position: int, now: int) -> QueueResource:
    version = _queue_version(conn, name, position)
    queue_id = version.queue_id
    # Totals are counted at the position: each message has one version per status it ended
    # in, and its first version begins where it was published; those history retention
    # pruned are in the queue's baseline (all of them began before ``as_of_from``).
    gone = retention.baseline(conn, queue_id)
    for status, column in _TOTALS.items():
        count = conn.query(
            "SELECT COUNT(*) FROM message_versions"
            " WHERE queue_id = ? AND status = ? AND from_position <= ?",
            [queue_id, status, position],
        )[0][0]
        setattr(version, column, int(count) + getattr(gone, status))
    version.published_total = gone.published + int(
        conn.query(
            "SELECT COUNT(*) FROM message_versions WHERE queue_id = ? AND status = 'ready'"
            " AND from_position <= ? AND from_position = position",
            [queue_id, position],
        )[0][0]
    )
    # The queue's position then: its last event at or before it, a version of it or of one
    # of its messages (one index step per status).
    last = max(version.from_position, gone.last_position)
    for status in _STATUSES:
        found = conn.query(
            "SELECT MAX(from_position) FROM message_versions"
            " WHERE queue_id = ? AND status = ? AND from_position <= ?",
            [queue_id, status, position],
        )[0][0]
        last = max(last, int(found or 0))
    version.position = last
    return resource(version, _stats(conn, queue_id, position, now), now)


async def get_queue(views: Database, name: str, position: int, now: int) -> QueueResource | None:
    try:
        return await views.snapshot(lambda conn: _queue(conn, name, position, now))
    except QueueMissing:
        return None


def _message_version(
    conn: Sql, queue: str, message_id: str, position: int
) -> tuple[Any, ...] | None:
    queue_id = _queue_version(conn, queue, position).queue_id
    rows = conn.query(
        f"{MESSAGE_VERSIONS.select} WHERE message_id = ? AND queue_id = ? AND {_HOLDS}",
        [message_id, queue_id, position, position],
    )
    return rows[0] if rows else None


async def get_message(
    views: Database, store: EventStore, queue: str, message_id: str, position: int, now: int
) -> MessageResource | None:
    """The message and its history up to the position; ``QueueMissing`` if the queue was
    not live then."""
    found = await views.snapshot(lambda conn: _message_version(conn, queue, message_id, position))
    if found is None:
        return None
    return await message_resource(store, MESSAGE_VERSIONS.load(found), now, until=position)


def _message_rows(
    conn: Sql,
    queue: str,
    position: int,
    status: PublicStatus | None,
    after: str | None,
    limit: int,
    now: int,
) -> list[tuple[Any, ...]]:
    queue_id = _queue_version(conn, queue, position).queue_id
    sql = _MESSAGE_VERSIONS_AT
    params: list[Any] = [queue_id, position, position]
    if after is not None:
        found = conn.query(
            "SELECT position FROM message_versions WHERE message_id = ? AND queue_id = ?"
            " AND from_position <= ? LIMIT 1",
            [after, queue_id, position],
        )
        if not found:
            raise CursorUnknown(after)
        sql += " AND position > ?"
        params.append(found[0][0])
    condition, values = status_condition(status, now)
    sql += condition + " ORDER BY position LIMIT ?"
    return conn.query(sql, [*params, *values, limit + 1])


async def list_messages(
    views: Database,
    store: EventStore,
    queue: str,
    *,
    position: int,
    status: PublicStatus | None,
    after: str | None,
    limit: int,
    now: int,
) -> MessagePage:
    found = await views.snapshot(
        lambda conn: _message_rows(conn, queue, position, status, after, limit, now)
    )
    return await page(store, MESSAGE_VERSIONS.load_all(found), limit, now)


async def as_of_from(views: Database) -> int:
    """The first position as-of reads are served at (``views/retention.py``)."""
    return await views.snapshot(retention.as_of_from)
