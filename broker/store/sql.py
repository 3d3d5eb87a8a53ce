"""What every SQL store shares: the connection port, the write side's tables, the write-side
state inside a transaction, and the reads of the log. Written once, in the SQL that SQLite and
PostgreSQL both speak (``?`` placeholders; an adapter whose driver wants others rewrites them),
so that an adapter is only what differs per technology: connections, locks, durability,
wake-ups and the translation of driver errors (``sqlite.py``, ``postgres.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

from broker.events import MessagePublished, StoredEvent
from broker.state import (
    FINISHED,
    LIVE,
    PRODUCER_KEPT_S,
    PRUNE_BATCH,
    PRUNE_QUEUES,
    Change,
    DedupEntry,
    GroupState,
    IdempotencyRecord,
    MessageState,
    ProducerState,
    PurgeMessages,
    PurgeRecord,
    PutDedup,
    PutGroup,
    PutIdempotency,
    PutMessage,
    PutProducer,
    PutPurge,
    PutQueue,
    QueueDue,
    QueueState,
    earliest,
    message_prune_at,
    message_sweep_at,
    queue_due_now,
    sweep_due,
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

    def one_of(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """A condition that ``column`` is one of ``values``, and its parameters: SQLite's
        ``IN (?, ?, ...)``; PostgreSQL's ``= ANY(?)`` with one array, so that a lookup of any
        number of values is one statement the server prepares once (a prepared ``IN`` of 30
        placeholders was planned as a scan of the whole table)."""

    def bytewise(self, column: str) -> str:
        """``column`` compared and ordered byte by byte: SQLite's default (BINARY) already
        is; PostgreSQL's follows the database's collation unless told ``COLLATE "C"``."""


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
    # receive: ready by rank and position; redrive and listings: by position; sweeper: due
    # leases by time, retention by publish time; a group's next messages; a purge's undo.
    indexes=(
        ("queue_id", "status", "position"),
        ("queue_id", "status", "rank", "position"),
        ("queue_id", "status", "visible_at"),
        ("queue_id", "status", "published_at"),
        ("queue_id", "group_id", "status", "position"),
        ("queue_id", "purged_by"),
    ),
)
GROUPS: Final = Table("broker_groups", GroupState, key=("queue_id", "group_id"))
DEDUP: Final = Table(
    "broker_dedup", DedupEntry, key=("queue_id", "dedup_id"), indexes=(("expires_at",),)
)
PURGES: Final = Table(
    "broker_purges", PurgeRecord, key=("position",), indexes=(("queue_id", "undone"),)
)
DUE: Final = Table(
    "broker_due", QueueDue, key=("queue_id",), indexes=(("sweep_at",), ("prune_at",))
)
"""What the sweeper and the pruner visit: the queues whose time has come, by one index."""
PRODUCERS: Final = Table(
    "broker_producers",
    ProducerState,
    key=("queue_id", "producer_id"),
    indexes=(("updated_at",),),
)
IDEMPOTENCY: Final = Table(
    "broker_idempotency",
    IdempotencyRecord,
    key=("subject", "idempotency_key"),
    indexes=(("expires_at",),),
)


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


def each_one_of(conn: Sql, column: str, values: Sequence[Any]) -> Iterator[tuple[str, list[Any]]]:
    """``one_of`` for any number of values: a condition and its parameters per chunk of them,
    each within what one statement may take."""
    for start in range(0, len(values), _MAX_PARAMS):
        yield conn.one_of(column, values[start : start + _MAX_PARAMS])


def read_positions(conn: Sql, positions: Sequence[int]) -> list[StoredEvent]:
    found: list[StoredEvent] = []
    for where, params in each_one_of(conn, "position", sorted(set(positions))):
        found += EVENTS.load_all(
            conn.query(f"{EVENTS.select} WHERE {where} ORDER BY position", params)
        )
    return found


def read_message(conn: Sql, message_id: str) -> list[StoredEvent]:
    return EVENTS.load_all(
        conn.query(f"{EVENTS.select} WHERE message_id = ? ORDER BY position", [message_id])
    )


def head(conn: Sql) -> int:
    return int(conn.query("SELECT MAX(position) FROM events")[0][0] or 0)


def last_position(conn: Sql, queue: str, type_: str, before: int | None) -> int:
    sql = "SELECT position FROM events WHERE queue = ? AND type = ?"
    params: list[Any] = [queue, type_]
    if before is not None:
        sql += " AND position < ?"
        params.append(before)
    rows = conn.query(sql + " ORDER BY position DESC LIMIT 1", params)
    return int(rows[0][0]) if rows else 0


def position_at(conn: Sql, at: str) -> int:
    # Times rise with positions (each writer's clock is made monotonic), so the latest time
    # is the last position; walking the ``at`` index down finds it in one step.
    rows = conn.query(
        "SELECT position FROM events WHERE at <= ? ORDER BY at DESC, position DESC LIMIT 1", [at]
    )
    return int(rows[0][0]) if rows else 0


# ---- the write-side state, inside the writer's transaction ---------------------------------

# "+visible_at" keeps that term off the index: SQLite would otherwise pick the (queue_id,
# status, visible_at) index and sort every ready message by rank (10 ms at 100k ready);
# walking (queue_id, status, rank, position) stops after the limit.
_RECEIVABLE: Final = (
    "SELECT "
    + ", ".join(f"m.{c}" for c in MESSAGES.columns)
    + ", "
    + ", ".join(f"e.{c}" for c in EVENTS.columns)
    # LEFT: a message published in this same transaction has its event still kept here
    + " FROM broker_messages m LEFT JOIN events e ON e.position = m.position"
    " WHERE m.queue_id = ? AND m.status = 'ready' AND +m.visible_at <= ?"
    " ORDER BY m.rank, m.position LIMIT ?"
)

# Due lease ends and retention expiries in one round trip: each part limited in a subquery of
# its own (which both dialects allow in a UNION ALL), the whole put in order once more (no
# dialect promises to keep a subquery's order through a UNION).
_DUE: Final = (
    f"SELECT part, {MESSAGES.column_list} FROM ("
    f"SELECT 0 AS part, * FROM ({MESSAGES.select} WHERE queue_id = ? AND status = 'leased'"
    " AND visible_at <= ? ORDER BY visible_at, position LIMIT ?) AS due"
    f" UNION ALL SELECT 1 AS part, * FROM ({MESSAGES.select} WHERE queue_id = ?"
    " AND status IN ('ready', 'waiting') AND published_at <= ?"
    " ORDER BY published_at, position LIMIT ?) AS stale"
    ") AS found ORDER BY part, CASE WHEN part = 0 THEN visible_at ELSE published_at END, position"
)


_PRUNE_FINISHED: Final = (
    "DELETE FROM broker_messages WHERE message_id IN (SELECT message_id FROM broker_messages"
    " WHERE queue_id = ? AND status IN (" + ", ".join(f"'{s}'" for s in FINISHED) + ")"
    " AND visible_at <= ? LIMIT ?)"
)
_PRUNE_UNDONE: Final = (
    "DELETE FROM broker_messages WHERE message_id IN (SELECT message_id FROM broker_messages"
    " WHERE queue_id = ? AND purged_by = ? AND status = 'purged' LIMIT ?)"
)

# A time is only ever lowered here (None lowers nothing); ``reschedule`` and ``prune`` set it.
# The row is written only when a time does go down, which it mostly does not (a publish is due
# long after the queue's oldest message): no transaction rewrites an unchanged row and its two
# index entries.
_LOWERS: Final = {
    c: f"excluded.{c} IS NOT NULL AND (broker_due.{c} IS NULL OR excluded.{c} < broker_due.{c})"
    for c in ("sweep_at", "prune_at")
}
_LOWER_DUE: Final = (
    f"{DUE.insert} ON CONFLICT (queue_id) DO UPDATE SET "
    + ", ".join(
        f"{c} = CASE WHEN {lowers} THEN excluded.{c} ELSE broker_due.{c} END"
        for c, lowers in _LOWERS.items()
    )
    + " WHERE "
    + " OR ".join(f"({lowers})" for lowers in _LOWERS.values())
)
_DUE_QUEUES: Final = (
    "SELECT "
    + ", ".join(f"q.{c}" for c in QUEUES.columns)
    + " FROM broker_due d JOIN broker_queues q ON q.queue_id = d.queue_id"
    " WHERE d.sweep_at <= ? AND NOT q.deleted ORDER BY d.sweep_at LIMIT ?"
)


def _earliest_of(column: str, statuses: Sequence[str]) -> str:
    """One row: per status, the queue's earliest ``column``, each one step down the
    (queue_id, status, column) index (a MIN across an IN could walk every row of them)."""
    return "SELECT " + ", ".join(
        f"(SELECT {column} FROM broker_messages WHERE queue_id = ? AND status = '{status}'"
        f" ORDER BY {column} LIMIT 1)"
        for status in statuses
    )


_EARLIEST_LEASE_END: Final = _earliest_of("visible_at", ("leased",))
_OLDEST_AVAILABLE: Final = _earliest_of("published_at", ("ready", "waiting"))
_EARLIEST_FINISHED: Final = _earliest_of("visible_at", FINISHED)

_PREFETCH: Final = 64
"""How many candidates the first receive of a queue in a batch reads."""


def _receive_order(message: MessageState) -> tuple[int, int]:
    return message.rank, message.position


@dataclass
class _Candidates:
    """Ready messages of one queue read in this transaction, by position, at time ``now``;
    ``complete``: there were no more."""

    now: int
    rows: list[MessageState]
    complete: bool


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
        self._queues_by_id: dict[int, QueueState | None] = {}
        self._sweep_lower: dict[int, int] = {}
        self._prune_lower: dict[int, int] = {}
        """Due times (``QueueDue``) to lower at the next look at them or at the flush: one
        statement per queue and transaction, however many rows of it were stored."""
        self._messages_written: dict[str, MessageState] = {}
        self._messages_read: dict[str, MessageState] = {}
        self._bodies: dict[int, StoredEvent] = {}
        """message.published events read with their messages (by ``receivable``)."""
        self._groups: dict[tuple[int, str], GroupState | None] = {}
        self._producers: dict[tuple[int, int], ProducerState | None] = {}
        self._candidates: dict[int, _Candidates] = {}
        self._made_ready: dict[int, set[str]] = {}
        self._next_visible: dict[int, tuple[int, int | None]] = {}
        """Rows this transaction has read, so that folding the events about them (a lease
        for each message received) does not read each one again: on a database across the
        network a round trip per message would dominate the batch."""
        self.queues_touched: set[str] = set()
        """The queues of the events appended, for the adapter's commit notification."""

    @property
    def next_position(self) -> int:
        return self._next

    def queue(self, name: str) -> QueueState | None:
        if name not in self._queues_by_name:
            rows = self._conn.query(f"{QUEUES.select} WHERE name = ? AND NOT deleted", [name])
            found = self._queues_by_name[name] = QUEUES.load(rows[0]) if rows else None
            if found is not None:
                self._queues_by_id[found.queue_id] = found
        return self._queues_by_name[name]

    def queue_by_id(self, queue_id: int) -> QueueState | None:
        if queue_id not in self._queues_by_id:
            rows = self._conn.query(f"{QUEUES.select} WHERE queue_id = ?", [queue_id])
            self._queues_by_id[queue_id] = QUEUES.load(rows[0]) if rows else None
        return self._queues_by_id[queue_id]

    def deleted_queue(self, name: str) -> QueueState | None:
        rows = self._conn.query(
            f"{QUEUES.select} WHERE name = ? AND deleted ORDER BY queue_id DESC LIMIT 1", [name]
        )
        return QUEUES.load(rows[0]) if rows else None

    def group(self, queue_id: int, group_id: str) -> GroupState | None:
        key = (queue_id, group_id)
        if key not in self._groups:
            rows = self._conn.query(
                f"{GROUPS.select} WHERE queue_id = ? AND group_id = ?", [queue_id, group_id]
            )
            self._groups[key] = GROUPS.load(rows[0]) if rows else None
        return self._groups[key]

    def waiting(self, queue_id: int, group_id: str, after: int, limit: int) -> list[MessageState]:
        if limit <= 0:
            return []
        return self._messages(
            "queue_id = ? AND group_id = ? AND status = 'waiting' AND position > ?"
            " ORDER BY position LIMIT ?",
            [queue_id, group_id, after, limit],
        )

    def producer(self, queue_id: int, producer_id: int) -> ProducerState | None:
        key = (queue_id, producer_id)
        if key not in self._producers:
            rows = self._conn.query(
                f"{PRODUCERS.select} WHERE queue_id = ? AND producer_id = ?",
                [queue_id, producer_id],
            )
            self._producers[key] = PRODUCERS.load(rows[0]) if rows else None
        return self._producers[key]

    def purge(self, position: int) -> PurgeRecord | None:
        rows = self._conn.query(f"{PURGES.select} WHERE position = ?", [position])
        return PURGES.load(rows[0]) if rows else None

    def purged_by(self, queue_id: int, purge: int) -> list[MessageState]:
        return self._messages(
            "queue_id = ? AND purged_by = ? AND status = 'purged' ORDER BY position",
            [queue_id, purge],
        )

    def idempotency(self, subject: str, key: str) -> IdempotencyRecord | None:
        rows = self._conn.query(
            f"{IDEMPOTENCY.select} WHERE subject = ? AND idempotency_key = ?", [subject, key]
        )
        return IDEMPOTENCY.load(rows[0]) if rows else None

    def available(self, queue_id: int, now: int, after: int, limit: int) -> list[MessageState]:
        return self._messages(
            "queue_id = ? AND status IN ('ready', 'waiting') AND +visible_at <= ?"
            " AND position > ? ORDER BY position LIMIT ?",
            [queue_id, now, after, limit],
        )

    def live_queues(self) -> list[QueueState]:
        return QUEUES.load_all(self._conn.query(f"{QUEUES.select} WHERE NOT deleted ORDER BY name"))

    def due_queues(self, now: int, limit: int) -> list[QueueState]:
        self._lower_due()
        found = QUEUES.load_all(self._conn.query(_DUE_QUEUES, [now, limit]))
        for queue in found:
            self._queues_by_id[queue.queue_id] = queue
        return sorted(found, key=lambda q: q.name)

    def reschedule(self, queue_ids: Sequence[int]) -> None:
        self._write_messages()
        self._lower_due()
        exact: list[tuple[int | None, int]] = []
        for queue_id in queue_ids:
            queue = self.queue_by_id(queue_id)
            if queue is None:
                continue
            (lease_end,) = self._conn.query(_EARLIEST_LEASE_END, [queue_id])[0]
            oldest = earliest(*self._conn.query(_OLDEST_AVAILABLE, [queue_id] * 2)[0])
            exact.append((sweep_due(queue, lease_end, oldest), queue_id))
        if exact:
            self._conn.executemany("UPDATE broker_due SET sweep_at = ? WHERE queue_id = ?", exact)

    def _lower(self, lowered: dict[int, int], queue_id: int, at: int | None) -> None:
        if at is not None:
            known = lowered.get(queue_id)
            if known is None or at < known:
                lowered[queue_id] = at

    def _lower_for(self, message: MessageState) -> None:
        if message.status in LIVE:
            queue = self.queue_by_id(message.queue_id)
            retention_s = 0 if queue is None else queue.retention_s
            self._lower(self._sweep_lower, message.queue_id, message_sweep_at(message, retention_s))
        else:
            self._lower(self._prune_lower, message.queue_id, message_prune_at(message))

    def _lower_due(self) -> None:
        queue_ids = self._sweep_lower.keys() | self._prune_lower.keys()
        if queue_ids:
            self._conn.executemany(
                _LOWER_DUE,
                [
                    (q, self._sweep_lower.get(q), self._prune_lower.get(q))
                    for q in sorted(queue_ids)
                ],
            )
            self._sweep_lower.clear()
            self._prune_lower.clear()

    def message(self, message_id: str) -> MessageState | None:
        known = self._messages_written.get(message_id) or self._messages_read.get(message_id)
        if known is not None:
            return known
        rows = self._conn.query(f"{MESSAGES.select} WHERE message_id = ?", [message_id])
        return self._remember(MESSAGES.load_all(rows))[0] if rows else None

    def _remember(self, rows: list[MessageState]) -> list[MessageState]:
        for row in rows:
            self._messages_read[row.message_id] = row
        return rows

    def dedup(self, queue_id: int, dedup_id: str) -> DedupEntry | None:
        rows = self._conn.query(
            f"{DEDUP.select} WHERE queue_id = ? AND dedup_id = ?", [queue_id, dedup_id]
        )
        return DEDUP.load(rows[0]) if rows else None

    def _messages(self, where: str, params: Sequence[Any]) -> list[MessageState]:
        self._write_messages()
        rows = self._conn.query(f"{MESSAGES.select} WHERE {where}", params)
        return self._remember(MESSAGES.load_all(rows))

    def receivable(self, queue_id: int, now: int, limit: int) -> list[MessageState]:
        """The first ``limit`` ready messages, by position.

        A batch often holds many receives of one queue (every consumer's): the first one
        reads more candidates than it needs, and the next ones take theirs from what is left,
        as long as that is still the head of the queue. What the batch itself made ready (a
        publish, a nack, an expiry) joins them; a message it leased leaves. Only when the
        candidates left could be overtaken by rows not yet read does it read again (twice as
        many). On PostgreSQL that is one round trip for the batch's receives, not one each."""
        cache = self._candidates.get(queue_id)
        if cache is not None and cache.now == now:
            found = self._usable(queue_id, cache, now, limit)
            if found is not None:
                return found
            want = max(limit, 2 * len(cache.rows))
        else:
            want = max(limit, _PREFETCH)
        self._write_messages()
        # With each message its message.published event (its body, which a delivery carries),
        # in the same round trip.
        rows = self._conn.query(_RECEIVABLE, [queue_id, now, want])
        width = len(MESSAGES.columns)
        for row in rows:
            if row[width] is not None:
                self._bodies[row[2]] = EVENTS.load(row[width:])
        loaded = self._remember([MESSAGES.load(row[:width]) for row in rows])
        cache = _Candidates(now, loaded, complete=len(loaded) < want)
        self._candidates[queue_id] = cache
        self._made_ready.pop(queue_id, None)  # the query saw them
        found = self._usable(queue_id, cache, now, limit)
        assert found is not None
        return found

    def _usable(
        self, queue_id: int, cache: _Candidates, now: int, limit: int
    ) -> list[MessageState] | None:
        """The first ``limit`` ready messages as far as the cache can tell, or None if rows it
        never read might come before them."""
        latest: dict[str, MessageState] = {}
        for row in cache.rows:
            latest[row.message_id] = self._latest(row)
        for message_id in self._made_ready.get(queue_id, ()):
            state = self._messages_written.get(message_id) or self._messages_read[message_id]
            latest[message_id] = state
        ready = sorted(
            (m for m in latest.values() if m.status == "ready" and m.visible_at <= now),
            key=_receive_order,
        )
        if not cache.complete:
            horizon = _receive_order(cache.rows[-1]) if cache.rows else (-1, 0)
            ready = [m for m in ready if _receive_order(m) <= horizon]
            if len(ready) < limit:
                return None
        return ready[:limit]

    def _latest(self, row: MessageState) -> MessageState:
        return (
            self._messages_written.get(row.message_id)
            or self._messages_read.get(row.message_id)
            or row
        )

    def due(
        self, queue_id: int, now: int, published_before: int, limit: int
    ) -> tuple[list[MessageState], list[MessageState]]:
        self._write_messages()
        rows = self._conn.query(_DUE, [queue_id, now, limit, queue_id, published_before, limit])
        leases = self._remember([MESSAGES.load(row[1:]) for row in rows if row[0] == 0])
        stale = self._remember([MESSAGES.load(row[1:]) for row in rows if row[0] == 1])
        return leases, stale

    def count_live(self, queue_id: int) -> int:
        self._write_messages()
        rows = self._conn.query(
            "SELECT COUNT(*) FROM broker_messages"
            " WHERE queue_id = ? AND status IN ('ready', 'waiting', 'leased')",
            [queue_id],
        )
        return int(rows[0][0])

    def next_visible_at(self, queue_id: int, now: int) -> int | None:
        # Asked by every receive that found nothing, and the same for all of a batch's (which
        # share one now) until a message of the queue becomes ready again.
        known = self._next_visible.get(queue_id)
        if known is not None and known[0] == now:
            return known[1]
        self._write_messages()
        rows = self._conn.query(
            "SELECT MIN(visible_at) FROM broker_messages"
            " WHERE queue_id = ? AND status = 'ready' AND visible_at > ?",
            [queue_id, now],
        )
        found = None if rows[0][0] is None else int(rows[0][0])
        self._next_visible[queue_id] = (now, found)
        return found

    def messages(self, message_ids: Sequence[str]) -> dict[str, MessageState]:
        found: dict[str, MessageState] = {}
        for message_id in message_ids:
            known = self._messages_written.get(message_id) or self._messages_read.get(message_id)
            if known is not None:
                found[message_id] = known
        wanted = sorted({i for i in message_ids if i not in found})
        for where, params in each_one_of(self._conn, "message_id", wanted):
            rows = self._conn.query(f"{MESSAGES.select} WHERE {where}", params)
            found.update((m.message_id, m) for m in self._remember(MESSAGES.load_all(rows)))
        return found

    def published(self, positions: Sequence[int]) -> dict[int, MessagePublished]:
        stored = {p: e for p in positions if (e := self._appended.get(p) or self._bodies.get(p))}
        missing = [p for p in positions if p not in stored]
        if missing:
            stored.update((e.position, e) for e in read_positions(self._conn, missing))
        found: dict[int, MessagePublished] = {}
        for position in positions:
            event = stored[position].event() if position in stored else None
            if not isinstance(event, MessagePublished):
                raise LookupError(f"no message.published event at position {position}")
            found[position] = event
        return found

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
                    before = self.queue_by_id(queue.queue_id)
                    self._queues_by_name.clear()
                    self._queues_by_id[queue.queue_id] = queue
                    self._conn.execute(QUEUES.upsert, QUEUES.values(queue))
                    if queue.deleted and before is not None and not before.deleted:
                        # The sweeper visits live queues only (a restore makes it due again).
                        self._sweep_lower.pop(queue.queue_id, None)
                        self._conn.execute(
                            "UPDATE broker_due SET sweep_at = NULL WHERE queue_id = ?",
                            [queue.queue_id],
                        )
                    elif queue_due_now(before, queue):
                        self._lower(self._sweep_lower, queue.queue_id, 0)
                case PutMessage(message):
                    self._messages_written[message.message_id] = message
                    self._lower_for(message)
                    if message.status == "ready":
                        self._made_ready.setdefault(message.queue_id, set()).add(message.message_id)
                        self._next_visible.pop(message.queue_id, None)
                case PutGroup(group):
                    self._groups[(group.queue_id, group.group_id)] = group
                    self._conn.execute(GROUPS.upsert, GROUPS.values(group))
                case PutDedup(entry):
                    self._conn.execute(DEDUP.upsert, DEDUP.values(entry))
                case PutPurge(purge):
                    self._conn.execute(PURGES.upsert, PURGES.values(purge))
                    if purge.undone:  # what it took and nothing restored can be pruned
                        self._lower(self._prune_lower, purge.queue_id, 0)
                case PutIdempotency(record):
                    self._conn.execute(IDEMPOTENCY.upsert, IDEMPOTENCY.values(record))
                case PutProducer(producer):
                    self._producers[(producer.queue_id, producer.producer_id)] = producer
                    self._conn.execute(PRODUCERS.upsert, PRODUCERS.values(producer))
                case PurgeMessages(queue_id, position):
                    self._write_messages()
                    self._messages_read.clear()  # the UPDATE below changes rows read before
                    self._candidates.pop(queue_id, None)
                    self._made_ready.pop(queue_id, None)
                    self._next_visible.pop(queue_id, None)
                    self._conn.execute(
                        "UPDATE broker_messages SET status = 'purged', purged_by = ?"
                        " WHERE queue_id = ? AND status IN ('ready', 'waiting', 'leased')"
                        " AND position < ?",
                        [position, queue_id, position],
                    )
                    # None of the queue's groups has a live message left.
                    self._conn.execute("DELETE FROM broker_groups WHERE queue_id = ?", [queue_id])
                    for key in [k for k in self._groups if k[0] == queue_id]:
                        self._groups[key] = None

    def prune(self, now: int, finished_before: int) -> int:
        pruned = self._conn.execute("DELETE FROM broker_dedup WHERE expires_at <= ?", [now])
        pruned += self._conn.execute("DELETE FROM broker_idempotency WHERE expires_at <= ?", [now])
        pruned += self._conn.execute(
            "DELETE FROM broker_producers WHERE updated_at <= ?",
            [now - PRODUCER_KEPT_S * 1_000_000],
        )
        self._producers.clear()
        self._write_messages()  # a row finished in this batch must not come back at the flush
        self._lower_due()
        # Only the queues with rows to prune; each DELETE walks the (queue_id, status,
        # visible_at) index (one across queues would scan the table on PostgreSQL).
        exact: list[tuple[int | None, int]] = []
        for (queue_id,) in self._conn.query(
            "SELECT queue_id FROM broker_due WHERE prune_at <= ? ORDER BY prune_at LIMIT ?",
            [finished_before, PRUNE_QUEUES],
        ):
            gone = self._conn.execute(_PRUNE_FINISHED, [queue_id, finished_before, PRUNE_BATCH])
            more = gone >= PRUNE_BATCH
            for (position,) in self._conn.query(
                "SELECT position FROM broker_purges WHERE queue_id = ? AND undone", [queue_id]
            ):
                taken = self._conn.execute(_PRUNE_UNDONE, [queue_id, position, PRUNE_BATCH])
                more = more or taken >= PRUNE_BATCH
                gone += taken
            pruned += gone
            finished = earliest(
                *self._conn.query(_EARLIEST_FINISHED, [queue_id] * len(FINISHED))[0]
            )
            exact.append((0 if more else finished, queue_id))
        if exact:
            self._conn.executemany("UPDATE broker_due SET prune_at = ? WHERE queue_id = ?", exact)
        self._messages_read.clear()
        self._candidates.clear()
        self._made_ready.clear()
        return pruned

    def flush(self) -> None:
        """Write what is still kept here; the adapter calls it once, just before COMMIT."""
        self._write_messages()
        self._lower_due()
        if self._rows:
            self._conn.executemany(EVENTS.insert, self._rows)
            self._rows = []

    def _write_messages(self) -> None:
        if self._messages_written:
            self._conn.executemany(
                MESSAGES.upsert, [MESSAGES.values(m) for m in self._messages_written.values()]
            )
            self._messages_read.update(self._messages_written)
            self._messages_written.clear()
