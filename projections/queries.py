"""Reads of the read models, in the shapes the API serves.

Statuses are stored as the write side knows them (``ready``, ``leased``, ...); the public
status splits ``ready`` into ``available`` and ``delayed`` by the time of the read, since a
delay ending is not an event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal, TypeAlias, cast

import msgspec
from tortoise import connections

from broker.ports import EventStore, StoredEvent
from broker.state import from_us
from projections.models import CONNECTION
from projections.views import messages as message_view
from projections.views import queues as queue_view

PublicStatus: TypeAlias = Literal[
    "available", "delayed", "in_flight", "acked", "dead_lettered", "expired", "purged", "redriven"
]


class QueueStats(msgspec.Struct, kw_only=True):
    available: int
    delayed: int
    in_flight: int
    published_total: int
    acked_total: int
    dead_lettered_total: int
    expired_total: int
    oldest_available_age_s: float


class QueueResource(msgspec.Struct, kw_only=True):
    name: str
    created_at: datetime
    updated_at: datetime
    position: int
    visibility_timeout_s: int
    delay_s: int
    retention_s: int
    max_receive_count: int | None
    dead_letter_queue: str | None
    stats: QueueStats


class HistoryEntry(msgspec.Struct, kw_only=True):
    position: int
    type: str
    at: str
    data: msgspec.Raw


class MessageSummary(msgspec.Struct, kw_only=True):
    id: str
    queue: str
    status: PublicStatus
    body: msgspec.Raw
    attributes: dict[str, str]
    receive_count: int
    published_at: datetime
    visible_at: datetime


class MessageResource(MessageSummary, kw_only=True):
    history: list[HistoryEntry]


class MessagePage(msgspec.Struct, kw_only=True):
    messages: list[MessageSummary]
    next: str | None


_QUEUE_SQL: Final = f"SELECT {', '.join(queue_view.COLUMNS)} FROM queue_views WHERE deleted = 0"
_MESSAGE_SQL: Final = f"SELECT {', '.join(message_view.COLUMNS)} FROM message_views"


async def _query(sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await connections.get(CONNECTION).execute_query_dict(
        sql, params or []
    )
    return rows


def public_status(status: str, visible_at: int, now: int) -> PublicStatus:
    if status == "ready":
        return "available" if visible_at <= now else "delayed"
    if status == "leased":
        return "in_flight"
    # The remaining stored names (acked, dead_lettered, expired, purged, redriven) are public
    # as they are.
    return cast(PublicStatus, status)


async def _stats(queue_ids: list[int], now: int) -> dict[int, tuple[int, int, int, int | None]]:
    if not queue_ids:
        return {}
    rows = await _query(
        "SELECT queue_id,"
        " SUM(CASE WHEN status = 'ready' AND visible_at <= ? THEN 1 ELSE 0 END) AS available,"
        " SUM(CASE WHEN status = 'ready' AND visible_at > ? THEN 1 ELSE 0 END) AS delayed,"
        " SUM(CASE WHEN status = 'leased' THEN 1 ELSE 0 END) AS in_flight,"
        " MIN(CASE WHEN status = 'ready' AND visible_at <= ? THEN published_at END) AS oldest"
        " FROM message_views WHERE status IN ('ready', 'leased')"
        f" AND queue_id IN ({', '.join('?' * len(queue_ids))}) GROUP BY queue_id",
        [now, now, now, *queue_ids],
    )
    return {
        r["queue_id"]: (r["available"], r["delayed"], r["in_flight"], r["oldest"]) for r in rows
    }


def _resource(
    row: dict[str, Any], stats: tuple[int, int, int, int | None], now: int
) -> QueueResource:
    available, delayed, in_flight, oldest = stats
    return QueueResource(
        name=row["name"],
        created_at=from_us(row["created_at"]),
        updated_at=from_us(row["updated_at"]),
        position=row["position"],
        visibility_timeout_s=row["visibility_timeout_s"],
        delay_s=row["delay_s"],
        retention_s=row["retention_s"],
        max_receive_count=row["max_receive_count"],
        dead_letter_queue=row["dead_letter_queue"],
        stats=QueueStats(
            available=available,
            delayed=delayed,
            in_flight=in_flight,
            published_total=row["published_total"],
            acked_total=row["acked_total"],
            dead_lettered_total=row["dead_lettered_total"],
            expired_total=row["expired_total"],
            oldest_available_age_s=0.0 if oldest is None else max(0, now - oldest) / 1e6,
        ),
    )


async def list_queues(now: int) -> list[QueueResource]:
    rows = await _query(_QUEUE_SQL + " ORDER BY name")
    stats = await _stats([r["queue_id"] for r in rows], now)
    return [_resource(r, stats.get(r["queue_id"], (0, 0, 0, None)), now) for r in rows]


async def get_queue(name: str, now: int) -> QueueResource | None:
    rows = await _query(_QUEUE_SQL + " AND name = ?", [name])
    if not rows:
        return None
    stats = await _stats([rows[0]["queue_id"]], now)
    return _resource(rows[0], stats.get(rows[0]["queue_id"], (0, 0, 0, None)), now)


async def queue_depths(now: int) -> dict[str, dict[str, int]]:
    """Per live queue: available / delayed / in_flight counts (for metrics)."""
    rows = await _query(_QUEUE_SQL)
    stats = await _stats([r["queue_id"] for r in rows], now)
    depths: dict[str, dict[str, int]] = {}
    for row in rows:
        available, delayed, in_flight, _ = stats.get(row["queue_id"], (0, 0, 0, None))
        depths[row["name"]] = {"available": available, "delayed": delayed, "in_flight": in_flight}
    return depths


async def _live_queue_id(name: str) -> int | None:
    rows = await _query("SELECT queue_id FROM queue_views WHERE deleted = 0 AND name = ?", [name])
    return int(rows[0]["queue_id"]) if rows else None


class _BodyOnly(msgspec.Struct):
    body: msgspec.Raw


_body_decoder: Final = msgspec.json.Decoder(_BodyOnly)


def _bodies(events: list[StoredEvent]) -> dict[int, msgspec.Raw]:
    """Message bodies by publish position, sliced out of the log without parsing them."""
    return {stored.position: _body_decoder.decode(stored.data).body for stored in events}


def _summary(row: dict[str, Any], body: msgspec.Raw, now: int) -> MessageSummary:
    return MessageSummary(
        id=row["message_id"],
        queue=row["queue"],
        status=public_status(row["status"], row["visible_at"], now),
        body=body,
        attributes=msgspec.json.decode(row["attributes"], type=dict[str, str]),
        receive_count=row["receive_count"],
        published_at=from_us(row["published_at"]),
        visible_at=from_us(row["visible_at"]),
    )


class QueueMissing(LookupError):
    """No live queue by that name."""


class CursorUnknown(LookupError):
    """The ``after`` cursor names no message of that queue."""


async def get_message(
    store: EventStore, queue: str | None, message_id: str, now: int
) -> MessageResource | None:
    """The message with its history; ``queue`` None finds it by id alone, in any live queue."""
    if queue is None:
        rows = await _query(
            _MESSAGE_SQL + " WHERE message_id = ? AND queue_id IN"
            " (SELECT queue_id FROM queue_views WHERE deleted = 0)",
            [message_id],
        )
    else:
        queue_id = await _live_queue_id(queue)
        if queue_id is None:
            raise QueueMissing(queue)
        rows = await _query(
            _MESSAGE_SQL + " WHERE message_id = ? AND queue_id = ?", [message_id, queue_id]
        )
    if not rows:
        return None
    row = rows[0]
    history = await store.read_message(message_id)
    if row["purged_position"] is not None:
        history += await store.read_positions([row["purged_position"]])
        history.sort(key=lambda stored: stored.position)
    body = _bodies([e for e in history if e.position == row["position"]])
    summary = _summary(row, body[row["position"]], now)
    return MessageResource(
        **msgspec.structs.asdict(summary),
        history=[
            HistoryEntry(position=e.position, type=e.type, at=e.at, data=msgspec.Raw(e.data))
            for e in history
        ],
    )


async def list_messages(
    store: EventStore,
    queue: str,
    *,
    status: PublicStatus | None,
    after: str | None,
    limit: int,
    now: int,
) -> MessagePage:
    queue_id = await _live_queue_id(queue)
    if queue_id is None:
        raise QueueMissing(queue)
    sql = _MESSAGE_SQL + " WHERE queue_id = ?"
    params: list[Any] = [queue_id]
    if after is not None:
        found = await _query(
            "SELECT position FROM message_views WHERE message_id = ? AND queue_id = ?",
            [after, queue_id],
        )
        if not found:
            raise CursorUnknown(after)
        sql += " AND position > ?"
        params.append(found[0]["position"])
    if status == "available":
        sql += " AND status = 'ready' AND +visible_at <= ?"  # walk by position (see sqlite.py)
        params.append(now)
    elif status == "delayed":
        sql += " AND status = 'ready' AND visible_at > ?"
        params.append(now)
    elif status == "in_flight":
        sql += " AND status = 'leased'"
    elif status is not None:
        sql += " AND status = ?"
        params.append(status)
    sql += " ORDER BY position LIMIT ?"
    params.append(limit + 1)
    rows = await _query(sql, params)
    more = len(rows) > limit
    rows = rows[:limit]
    bodies = _bodies(await store.read_positions([r["position"] for r in rows]))
    return MessagePage(
        messages=[_summary(r, bodies[r["position"]], now) for r in rows],
        next=rows[-1]["message_id"] if more else None,
    )
