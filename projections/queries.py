"""Reads of the read models, in the shapes the API serves.

Statuses are stored as the write side knows them (``ready``, ``leased``, ...); the public
status splits ``ready`` into ``available`` and ``delayed`` by the time of the read, since a
delay ending is not an event.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final, Literal, TypeAlias, cast

import msgspec

from broker.events import StoredEvent, TypedAttribute
from broker.ports import EventStore
from broker.state import from_us
from broker.store.sql import Database, Sql
from projections.runner import checkpoint
from projections.views.messages import MESSAGE_VIEWS, MessageViewRow
from projections.views.projector import ViewsProjector
from projections.views.queues import QUEUE_VIEWS, QueueViewRow

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
    max_message_bytes: int
    receive_wait_s: int
    fifo: bool
    content_based_dedup: bool
    tags: dict[str, str]
    redrive_allow_policy: str | None
    policy: str | None
    kms_master_key_id: str | None
    kms_data_key_reuse_period_s: int
    sqs_managed_sse: bool
    deduplication_scope: str | None
    fifo_throughput_limit: str | None
    redrive_policy: str | None
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
    priority: int
    group_id: str | None
    typed_attributes: dict[str, TypedAttribute]
    key: str | None = None


class MessageResource(MessageSummary, kw_only=True):
    history: list[HistoryEntry]


class MessagePage(msgspec.Struct, kw_only=True):
    messages: list[MessageSummary]
    next: str | None


def public_status(status: str, visible_at: int, now: int) -> PublicStatus:
    if status == "ready":
        return "available" if visible_at <= now else "delayed"
    if status == "leased":
        return "in_flight"
    # The remaining stored names (acked, dead_lettered, expired, purged, redriven) are public
    # as they are.
    return cast(PublicStatus, status)


Stats: TypeAlias = tuple[int, int, int, int | None]
"""available, delayed, in flight, and when the oldest available message was published."""
_NO_STATS: Final[Stats] = (0, 0, 0, None)
_LIVE_QUEUES: Final = f"{QUEUE_VIEWS.select} WHERE NOT deleted"


def _stats(conn: Sql, queue_ids: list[int], now: int) -> dict[int, Stats]:
    if not queue_ids:
        return {}
    where, params = conn.one_of("queue_id", queue_ids)
    rows = conn.query(
        "SELECT queue_id,"
        " SUM(CASE WHEN status = 'ready' AND visible_at <= ? THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN status = 'ready' AND visible_at > ? THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN status = 'leased' THEN 1 ELSE 0 END),"
        " MIN(CASE WHEN status = 'ready' AND visible_at <= ? THEN published_at END)"
        f" FROM message_views WHERE status IN ('ready', 'leased') AND {where} GROUP BY queue_id",
        [now, now, now, *params],
    )
    return {r[0]: (int(r[1]), int(r[2]), int(r[3]), r[4]) for r in rows}


def resource(row: QueueViewRow, stats: Stats, now: int) -> QueueResource:
    available, delayed, in_flight, oldest = stats
    return QueueResource(
        name=row.name,
        created_at=from_us(row.created_at),
        updated_at=from_us(row.updated_at),
        position=row.position,
        visibility_timeout_s=row.visibility_timeout_s,
        delay_s=row.delay_s,
        retention_s=row.retention_s,
        max_receive_count=row.max_receive_count,
        dead_letter_queue=row.dead_letter_queue,
        max_message_bytes=row.max_message_bytes,
        receive_wait_s=row.receive_wait_s,
        fifo=bool(row.fifo),  # SQLite answers 0/1
        content_based_dedup=bool(row.content_based_dedup),
        tags=msgspec.json.decode(row.tags),
        redrive_allow_policy=row.redrive_allow_policy,
        policy=row.policy,
        kms_master_key_id=row.kms_master_key_id,
        kms_data_key_reuse_period_s=row.kms_data_key_reuse_period_s,
        sqs_managed_sse=bool(row.sqs_managed_sse),
        deduplication_scope=row.deduplication_scope,
        fifo_throughput_limit=row.fifo_throughput_limit,
        redrive_policy=row.redrive_policy,
        stats=QueueStats(
            available=available,
            delayed=delayed,
            in_flight=in_flight,
            published_total=row.published_total,
            acked_total=row.acked_total,
            dead_lettered_total=row.dead_lettered_total,
            expired_total=row.expired_total,
            oldest_available_age_s=0.0 if oldest is None else max(0, now - oldest) / 1e6,
        ),
    )


def _queues(conn: Sql, now: int, name: str | None = None) -> list[QueueResource]:
    if name is None:
        rows = QUEUE_VIEWS.load_all(conn.query(_LIVE_QUEUES + " ORDER BY name"))
    else:
        rows = QUEUE_VIEWS.load_all(conn.query(_LIVE_QUEUES + " AND name = ?", [name]))
    stats = _stats(conn, [r.queue_id for r in rows], now)
    return [resource(r, stats.get(r.queue_id, _NO_STATS), now) for r in rows]


class QueuePage(msgspec.Struct, frozen=True):
    queues: list[QueueResource]
    next_after: str | None
    """The last name of this page when more follow; None on the last page."""


def _names_page(
    conn: Sql, after: str | None, prefix: str, limit: int, visible: Callable[[str], bool]
) -> tuple[list[QueueViewRow], bool]:
    """Up to ``limit`` live queues ``visible`` names, in byte order, after ``after`` and starting
    with ``prefix``; and whether more follow. Read in chunks along the index of live names, so
    a page costs what it skips for the token's scope, never the whole table."""
    name = conn.bytewise("name")
    sql = f"{_LIVE_QUEUES} AND {name} > ? AND {name} >= ? ORDER BY {name} LIMIT ?"
    chunk = limit + 1
    cursor = after or ""
    found: list[QueueViewRow] = []
    while True:
        rows = QUEUE_VIEWS.load_all(conn.query(sql, [cursor, prefix, chunk]))
        for row in rows:
            if not row.name.startswith(prefix):  # past the prefix's names: nothing further
                return found, False
            if visible(row.name):
                if len(found) == limit:
                    return found, True
                found.append(row)
        if len(rows) < chunk:
            return found, False
        cursor = rows[-1].name


async def queue_page(
    views: Database,
    now: int,
    *,
    after: str | None = None,
    prefix: str = "",
    limit: int = 1000,
    visible: Callable[[str], bool] = lambda _: True,
) -> QueuePage:
    """One page of the live queues ``visible`` lets the caller see, by name in byte order."""

    def page(conn: Sql) -> QueuePage:
        rows, more = _names_page(conn, after, prefix, limit, visible)
        stats = _stats(conn, [r.queue_id for r in rows], now)
        queues = [resource(r, stats.get(r.queue_id, _NO_STATS), now) for r in rows]
        return QueuePage(queues, rows[-1].name if more else None)

    return await views.snapshot(page)


async def list_queues(views: Database, now: int) -> list[QueueResource]:
    return await views.snapshot(lambda conn: _queues(conn, now))


async def get_queue(views: Database, name: str, now: int) -> QueueResource | None:
    found = await views.snapshot(lambda conn: _queues(conn, now, name))
    return found[0] if found else None


async def lapsed_leases(views: Database, name: str, now: int) -> int:
    """The live queue's in-flight messages whose lease has ended by ``now`` but that the
    sweeper has not yet made available again: SQS counts them visible at once."""
    rows = await views.snapshot(
        lambda conn: conn.query(
            "SELECT COUNT(*) FROM message_views m JOIN queue_views q"
            " ON m.queue_id = q.queue_id AND NOT q.deleted AND q.name = ?"
            " WHERE m.status = 'leased' AND m.visible_at <= ?",
            [name, now],
        )
    )
    return int(rows[0][0]) if rows else 0


async def dead_letter_sources(views: Database, name: str) -> list[str]:
    """The live queues whose dead-letter queue is ``name``, by name (an unindexed look at the
    live queues' rows, but one statement, and no stats computed for any of them)."""
    rows = await views.snapshot(
        lambda conn: conn.query(
            "SELECT name FROM queue_views WHERE NOT deleted AND dead_letter_queue = ?", [name]
        )
    )
    return sorted(str(r[0]) for r in rows)


async def live_queue_id(views: Database, name: str) -> int | None:
    """The id of the live queue of that name, if there is one."""
    rows = await views.snapshot(
        lambda conn: conn.query(
            "SELECT queue_id FROM queue_views WHERE NOT deleted AND name = ?", [name]
        )
    )
    return int(rows[0][0]) if rows else None


async def live_queue_ids(views: Database) -> list[tuple[str, int]]:
    """Every live queue's name and id, by name."""
    rows = await views.snapshot(
        lambda conn: conn.query(
            "SELECT name, queue_id FROM queue_views WHERE NOT deleted ORDER BY name"
        )
    )
    return [(str(r[0]), int(r[1])) for r in rows]


async def queue_depths(views: Database, now: int) -> dict[str, dict[str, int]]:
    """Per live queue: available / delayed / in_flight counts (for metrics)."""
    return {
        queue.name: {
            "available": queue.stats.available,
            "delayed": queue.stats.delayed,
            "in_flight": queue.stats.in_flight,
        }
        for queue in await list_queues(views, now)
    }


class QueueMissing(LookupError):
    """No live queue by that name."""


class CursorUnknown(LookupError):
    """The ``after`` cursor names no message of that queue."""


def _live_queue_id(conn: Sql, name: str) -> int:
    rows = conn.query("SELECT queue_id FROM queue_views WHERE NOT deleted AND name = ?", [name])
    if not rows:
        raise QueueMissing(name)
    return int(rows[0][0])


class Published(msgspec.Struct):
    """What a listing shows of a message's ``message.published`` event beyond its row."""

    body: msgspec.Raw
    typed_attributes: dict[str, TypedAttribute] = {}
    key: str | None = None


_published_decoder: Final = msgspec.json.Decoder(Published)


def bodies(events: list[StoredEvent]) -> dict[int, Published]:
    """Message bodies (and typed attributes) by publish position, sliced out of the log
    without parsing the bodies."""
    return {stored.position: _published_decoder.decode(stored.data) for stored in events}


def summary(row: MessageViewRow, published: Published, now: int) -> MessageSummary:
    return MessageSummary(
        id=row.message_id,
        queue=row.queue,
        status=public_status(row.status, row.visible_at, now),
        body=published.body,
        attributes=msgspec.json.decode(row.attributes, type=dict[str, str]),
        typed_attributes=published.typed_attributes,
        receive_count=row.receive_count,
        published_at=from_us(row.published_at),
        visible_at=from_us(row.visible_at),
        priority=row.priority,
        group_id=row.group_id,
        key=published.key,
    )


def _message_row(conn: Sql, queue: str | None, message_id: str) -> MessageViewRow | None:
    if queue is None:
        where = (
            "message_id = ? AND queue_id IN (SELECT queue_id FROM queue_views WHERE NOT deleted)"
        )
        params: list[Any] = [message_id]
    else:
        where, params = "message_id = ? AND queue_id = ?", [message_id, _live_queue_id(conn, queue)]
    rows = conn.query(f"{MESSAGE_VIEWS.select} WHERE {where}", params)
    return MESSAGE_VIEWS.load(rows[0]) if rows else None


async def get_message(
    views: Database, store: EventStore, queue: str | None, message_id: str, now: int
) -> tuple[MessageResource | None, int]:
    """The message with its history (``queue`` None finds it by id alone, in any live queue),
    and the position both reflect. The log runs ahead of the read model: a history read to the
    log's end would show an ack beside a status still in flight. So the row and the views
    projection's checkpoint are read in one snapshot, and the history stops at that
    checkpoint (API.md v1.2: status and history describe one position)."""

    def read(conn: Sql) -> tuple[MessageViewRow | None, int]:
        return _message_row(conn, queue, message_id), checkpoint(conn, ViewsProjector.name)

    row, position = await views.snapshot(read)
    if row is None:
        return None, position
    return await message_resource(store, row, now, until=position), position


async def message_resource(
    store: EventStore, row: MessageViewRow, now: int, until: int | None = None
) -> MessageResource:
    """The message of ``row`` with its history (up to ``until``, for a read of the past): the
    events that name it and the purge that removed it, if one did."""
    history = [
        e for e in await store.read_message(row.message_id) if until is None or e.position <= until
    ]
    if row.purged_position is not None:
        history += await store.read_positions([row.purged_position])
        history.sort(key=lambda stored: stored.position)
    body = bodies([e for e in history if e.position == row.position])
    return MessageResource(
        **msgspec.structs.asdict(summary(row, body[row.position], now)),
        history=[
            HistoryEntry(position=e.position, type=e.type, at=e.at, data=msgspec.Raw(e.data))
            for e in history
        ],
    )


def _message_rows(
    conn: Sql, queue: str, status: PublicStatus | None, after: str | None, limit: int, now: int
) -> list[MessageViewRow]:
    queue_id = _live_queue_id(conn, queue)
    sql = f"{MESSAGE_VIEWS.select} WHERE queue_id = ?"
    params: list[Any] = [queue_id]
    if after is not None:
        found = conn.query(
            "SELECT position FROM message_views WHERE message_id = ? AND queue_id = ?",
            [after, queue_id],
        )
        if not found:
            raise CursorUnknown(after)
        sql += " AND position > ?"
        params.append(found[0][0])
    # "+visible_at": walk by position, not by the visible_at index (see sql.py).
    condition, values = status_condition(status, now, visible_at="+visible_at")
    sql += condition + " ORDER BY position LIMIT ?"
    return MESSAGE_VIEWS.load_all(conn.query(sql, [*params, *values, limit + 1]))


def status_condition(
    status: PublicStatus | None, now: int, *, visible_at: str = "visible_at"
) -> tuple[str, list[Any]]:
    """The SQL (``AND ...``) and values that keep a listing's rows of one public status."""
    match status:
        case None:
            return "", []
        case "available":
            return f" AND status = 'ready' AND {visible_at} <= ?", [now]
        case "delayed":
            return " AND status = 'ready' AND visible_at > ?", [now]
        case "in_flight":
            return " AND status = 'leased'", []
        case _:
            return " AND status = ?", [status]


async def page(
    store: EventStore, rows: Sequence[MessageViewRow], limit: int, now: int
) -> MessagePage:
    """A listing's page from up to ``limit + 1`` rows (one more says a next page exists),
    with the bodies read from the log."""
    shown = rows[:limit]
    by_position = bodies(await store.read_positions([r.position for r in shown]))
    return MessagePage(
        messages=[summary(r, by_position[r.position], now) for r in shown],
        next=shown[-1].message_id if len(rows) > limit else None,
    )


async def list_messages(
    views: Database,
    store: EventStore,
    queue: str,
    *,
    status: PublicStatus | None,
    after: str | None,
    limit: int,
    now: int,
) -> MessagePage:
    rows = await views.snapshot(lambda conn: _message_rows(conn, queue, status, after, limit, now))
    return await page(store, rows, limit, now)
