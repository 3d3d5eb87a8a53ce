"""What every SQL store shares: the connection port, the write side's tables, the write-side
state inside a transaction, and the reads of the log. Written once, in the SQL that SQLite and
PostgreSQL both speak (``?`` placeholders; an adapter whose driver wants others rewrites them),
so that an adapter is only what differs per technology: connections, locks, durability,
wake-ups and the translation of driver errors (``sqlite.py``, ``postgres.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol, TypeVar

from broker.events import MessagePublished, StoredEvent
from broker.state import (
    Change,
    DedupEntry,
    MessageState,
    PurgeMessages,
    PutDedup,
    PutMessage,
    PutQueue,
    QueueState,
)
from broker.store.tables import Table

T = TypeVar("T")
_MAX_PARAMS: Final = 500


class Sql(Protocol):
    """A connection inside one thread: synchronous, so that a whole group-commit batch or
    projector batch runs in one hop to the driver. Driver errors are the adapter's to
    translate (into ``StoreUnavailableError``) at the boundary where the batch is run."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a statement that returns rows; all of them."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; how many rows it changed."""

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each of ``rows``."""


class Database(Protocol):
    """A database this process reads and writes through ``Sql`` connections of its own, on
    threads of its own: the log and its write-side state, or the read models."""

    async def open(self) -> None:
        """Connect; the schema must already exist."""

    async def close(self) -> None:
        """Disconnect and stop the threads."""

    async def transaction(self, fn: Callable[[Sql], T]) -> T:
        """Run ``fn`` in one write transaction: all of it commits, or none of it."""

    async def snapshot(self, fn: Callable[[Sql], T]) -> T:
        """Run a read-only ``fn``, seeing only committed transactions."""


EVENTS: Final = Table("events", StoredEvent, key=("position",))
"""The log. Its schema is the one table Tortoise declares by hand (``tortoise.EventRow``):
triggers refuse UPDATE and DELETE of its rows, and the column list here must match it."""

QUEUES: Final = Table(
    "broker_queues", QueueState, key=("queue_id",), indexes=(("name", "deleted"),)
)
MESSAGES: Final = Table(
    "broker_messages",
    MessageState,
    key=("message_id",),
    # receive: ready by position; sweeper: due leases by time, retention by publish time.
    indexes=(
        ("queue_id", "status", "position"),
        ("queue_id", "status", "visible_at"),
        ("queue_id", "status", "published_at"),
    ),
)
DEDUP: Final = Table(
    "broker_dedup", DedupEntry, key=("queue_id", "dedup_id"), indexes=(("expires_at",),)
)
WRITE_SIDE: Final = (QUEUES, MESSAGES, DEDUP)


# ---- the log ------------------------------------------------------------------------------


def read_events(
    conn: Sql,
    after: int,
    limit: int,
    *,
    queue: str | None = None,
    types: Sequence[str] | None = None,
    until: int | None = None,
) -> list[StoredEvent]:
    sql = f"{EVENTS.select} WHERE position > ?"
    params: list[Any] = [after]
    if until is not None:
        sql += " AND position <= ?"
        params.append(until)
    if queue is not None:
        sql += " AND queue = ?"
        params.append(queue)
    if types:
        clauses = []
        for pattern in types:
            if pattern.endswith("*"):
                clauses.append("substr(type, 1, ?) = ?")
                params += [len(pattern) - 1, pattern[:-1]]
            else:
                clauses.append("type = ?")
                params.append(pattern)
        sql += " AND (" + " OR ".join(clauses) + ")"
    sql += " ORDER BY position LIMIT ?"
    params.append(limit)
    return EVENTS.load_all(conn.query(sql, params))


def read_positions(conn: Sql, positions: Sequence[int]) -> list[StoredEvent]:
    wanted = sorted(set(positions))
    found: list[StoredEvent] = []
    for start in range(0, len(wanted), _MAX_PARAMS):
        chunk = wanted[start : start + _MAX_PARAMS]
        marks = ",".join("?" * len(chunk))
        sql = f"{EVENTS.select} WHERE position IN ({marks}) ORDER BY position"
        found += EVENTS.load_all(conn.query(sql, chunk))
    return found


def read_message(conn: Sql, message_id: str) -> list[StoredEvent]:
    return EVENTS.load_all(
        conn.query(f"{EVENTS.select} WHERE message_id = ? ORDER BY position", [message_id])
    )


def head(conn: Sql) -> int:
    return int(conn.query("SELECT MAX(position) FROM events")[0][0] or 0)


# ---- the write-side state, inside the writer's transaction ---------------------------------


class SqlStateTx:
    """The ``StateTx`` of every SQL store, inside a transaction its adapter opened (and in
    which it made sure no other writer can append: SQLite's write lock, PostgreSQL's advisory
    lock), so the head read here is the head the batch appends after.

    Message rows are the hot ones (a publish, a lease, an ack each write one): they are kept
    here, newest state per id, and reach the table in one ``executemany`` before any query that
    scans the table, and at the end. Point lookups read them here."""

    def __init__(self, conn: Sql) -> None:
        self._conn = conn
        self._next = head(conn) + 1
        self._rows: list[tuple[Any, ...]] = []
        self._appended: dict[int, StoredEvent] = {}
        self._queues_by_name: dict[str, QueueState | None] = {}
        self._messages_written: dict[str, MessageState] = {}
        self.queues_touched: set[str] = set()
        """The queues of the events appended, for the adapter's commit notification."""

    @property
    def next_position(self) -> int:
        return self._next

    def queue(self, name: str) -> QueueState | None:
        if name not in self._queues_by_name:
            rows = self._conn.query(f"{QUEUES.select} WHERE name = ? AND NOT deleted", [name])
            self._queues_by_name[name] = QUEUES.load(rows[0]) if rows else None
        return self._queues_by_name[name]

    def queue_by_id(self, queue_id: int) -> QueueState | None:
        rows = self._conn.query(f"{QUEUES.select} WHERE queue_id = ?", [queue_id])
        return QUEUES.load(rows[0]) if rows else None

    def live_queues(self) -> list[QueueState]:
        return QUEUES.load_all(self._conn.query(f"{QUEUES.select} WHERE NOT deleted ORDER BY name"))

    def message(self, message_id: str) -> MessageState | None:
        written = self._messages_written.get(message_id)
        if written is not None:
            return written
        rows = self._conn.query(f"{MESSAGES.select} WHERE message_id = ?", [message_id])
        return MESSAGES.load(rows[0]) if rows else None

    def dedup(self, queue_id: int, dedup_id: str) -> DedupEntry | None:
        rows = self._conn.query(
            f"{DEDUP.select} WHERE queue_id = ? AND dedup_id = ?", [queue_id, dedup_id]
        )
        return DEDUP.load(rows[0]) if rows else None

    def _messages(self, where: str, params: Sequence[Any]) -> list[MessageState]:
        self._write_messages()
        return MESSAGES.load_all(self._conn.query(f"{MESSAGES.select} WHERE {where}", params))

    def receivable(self, queue_id: int, now: int, limit: int) -> list[MessageState]:
        # "+visible_at" keeps that term off the index: SQLite would otherwise pick the
        # (queue_id, status, visible_at) index and sort every ready message by position
        # (10 ms at 100k ready); walking (queue_id, status, position) stops after `limit`.
        return self._messages(
            "queue_id = ? AND status = 'ready' AND +visible_at <= ? ORDER BY position LIMIT ?",
            [queue_id, now, limit],
        )

    def due_leases(self, queue_id: int, now: int, limit: int) -> list[MessageState]:
        return self._messages(
            "queue_id = ? AND status = 'leased' AND visible_at <= ?"
            " ORDER BY visible_at, position LIMIT ?",
            [queue_id, now, limit],
        )

    def expired_ready(self, queue_id: int, published_before: int, limit: int) -> list[MessageState]:
        return self._messages(
            "queue_id = ? AND status = 'ready' AND published_at <= ?"
            " ORDER BY published_at, position LIMIT ?",
            [queue_id, published_before, limit],
        )

    def count_live(self, queue_id: int) -> int:
        self._write_messages()
        rows = self._conn.query(
            "SELECT COUNT(*) FROM broker_messages"
            " WHERE queue_id = ? AND status IN ('ready', 'leased')",
            [queue_id],
        )
        return int(rows[0][0])

    def next_visible_at(self, queue_id: int, now: int) -> int | None:
        self._write_messages()
        rows = self._conn.query(
            "SELECT MIN(visible_at) FROM broker_messages"
            " WHERE queue_id = ? AND status = 'ready' AND visible_at > ?",
            [queue_id, now],
        )
        return None if rows[0][0] is None else int(rows[0][0])

    def published(self, position: int) -> MessagePublished:
        stored = self._appended.get(position)
        if stored is None:
            found = self._conn.query(f"{EVENTS.select} WHERE position = ?", [position])
            if not found:
                raise LookupError(f"no event at position {position}")
            stored = EVENTS.load(found[0])
        event = stored.event()
        if not isinstance(event, MessagePublished):
            raise LookupError(f"event {position} is {event.__class__.__name__}")
        return event

    def append(self, event: StoredEvent) -> None:
        if event.position != self._next:
            raise ValueError(f"event at {event.position}, but the next position is {self._next}")
        self._rows.append(EVENTS.values(event))
        self.queues_touched.add(event.queue)
        if event.type == "message.published":
            self._appended[event.position] = event
        self._next += 1

    def apply(self, changes: Sequence[Change]) -> None:
        for change in changes:
            match change:
                case PutQueue(queue):
                    self._queues_by_name.clear()
                    self._conn.execute(QUEUES.upsert, QUEUES.values(queue))
                case PutMessage(message):
                    self._messages_written[message.message_id] = message
                case PutDedup(entry):
                    self._conn.execute(DEDUP.upsert, DEDUP.values(entry))
                case PurgeMessages(queue_id, position):
                    self._write_messages()
                    self._conn.execute(
                        "UPDATE broker_messages SET status = 'purged' WHERE queue_id = ?"
                        " AND status IN ('ready', 'leased') AND position < ?",
                        [queue_id, position],
                    )

    def prune_dedup(self, now: int) -> int:
        return self._conn.execute("DELETE FROM broker_dedup WHERE expires_at <= ?", [now])

    def flush(self) -> None:
        """Write what is still kept here; the adapter calls it once, just before COMMIT."""
        self._write_messages()
        if self._rows:
            self._conn.executemany(EVENTS.insert, self._rows)
            self._rows = []

    def _write_messages(self) -> None:
        if self._messages_written:
            self._conn.executemany(
                MESSAGES.upsert, [MESSAGES.values(m) for m in self._messages_written.values()]
            )
            self._messages_written.clear()
