"""The SQLite adapter of the event store.

Why not the ORM here: a group-commit batch is one synchronous function (``BEGIN IMMEDIATE``,
decide and apply each command, insert the events, ``COMMIT``) run in one hop on a dedicated
thread with its own connection. Through the ORM every statement would be its own hop to
aiosqlite's thread (~50 µs) and every row its own model object (~230 µs); here a statement is a
few µs of C. Tortoise still owns the schema (``broker/store/tortoise.py``) and its migrations.

Durability: WAL with ``synchronous=FULL`` (the default) fsyncs the WAL on every commit, so an
answered command survives power loss; ``normal`` survives a crash of the process but not of the
machine. Both are checked after being set, at open.

Positions: the write lock (``BEGIN IMMEDIATE``) serialises writers, from any process, and the
next position is read under it, so positions are contiguous and commit order is position order.
A reader in WAL mode sees whole transactions only, so no reader sees p+1 before p.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from broker import events
from broker.errors import StoreUnavailableError
from broker.events import AnyEvent, MessagePublished
from broker.ports import StoredEvent
from broker.state import (
    Change,
    DedupEntry,
    MessageState,
    PurgeMessages,
    PutDedup,
    PutMessage,
    PutQueue,
    QueueState,
    StateTx,
    evolve,
)

T = TypeVar("T")
Durability = Literal["full", "normal"]

_SYNCHRONOUS: Final = {"full": 2, "normal": 1}
_MAX_PARAMS: Final = 500
_LOCK_RETRY_S: Final = 0.0002
_MIN_FREE_BYTES: Final = 1024 * 1024
"""Less than this free at start-up and the migration could not even record itself."""
_EVENT_COLUMNS: Final = "position, type, at, queue, message_id, data"
_QUEUE_COLUMNS: Final = (
    "queue_id, name, visibility_timeout_s, delay_s, retention_s, max_receive_count,"
    " dead_letter_queue, created_at, updated_at, deleted"
)
_MESSAGE_COLUMNS: Final = (
    "message_id, queue_id, position, status, visible_at, lease, receive_count, published_at"
)


def check_usable(path: str, *, must_exist: bool = False) -> None:
    """Raise ``StoreUnavailableError`` saying why the store at ``path`` cannot be opened for
    writing: a directory, a missing file (``must_exist``), a read-only file system, a file
    that is not a database. Checked before anything else opens it: an open that fails inside
    the ORM's migration leaves its connection lock held, and start-up would hang for ever."""
    location = Path(path)
    if location.is_dir():
        raise StoreUnavailableError(f"{path} is a directory, not a database file")
    if must_exist and not location.exists():
        raise StoreUnavailableError(f"there is no store at {path}")
    folder = location.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise StoreUnavailableError(f"{folder} is not a directory")
    if not os.access(location if location.exists() else folder, os.W_OK):
        raise StoreUnavailableError(f"{location if location.exists() else folder} is not writable")
    space = os.statvfs(folder)
    if space.f_bavail * space.f_frsize < _MIN_FREE_BYTES:
        raise StoreUnavailableError(f"no space left on the device that holds {folder}")
    if not location.exists():
        return  # created, in a folder we may write, by the migration
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=1)) as conn:
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
            conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.Error as error:
        raise StoreUnavailableError(f"{path}: {error}") from None


class StoreLock:
    """Who has the store open: every process that opens it holds a shared ``flock`` on
    ``<store>.lock`` for as long as it does, and ``cairn restore`` needs it exclusively. The
    kernel drops a dead process's lock, even after a kill -9, so a crash never leaves the store
    looking busy, and a restore can never replace the files under a running broker (which would
    hand out positions that feeds have already delivered)."""

    def __init__(self, path: str) -> None:
        self.path = path + ".lock"
        self._fd: int | None = None

    def share(self, wait_s: float = 10.0) -> None:
        """Hold the lock shared; waits (bounded) while a restore holds it."""
        self._take(fcntl.LOCK_SH, wait_s, "a restore of this store is in progress")

    def exclusive(self) -> None:
        """Hold the lock alone, or raise naming the processes that have the store open."""
        self._take(fcntl.LOCK_EX, 0.0, None)

    def _take(self, mode: int, wait_s: float, busy: str | None) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                self._fd = fd
                return
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                holders = _lock_holders(fd)
                os.close(fd)
                raise StoreUnavailableError(
                    busy or f"the store is open in process {', '.join(holders) or '(unknown)'}"
                ) from None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None


def _lock_holders(fd: int) -> list[str]:
    """The pids holding a flock on the file behind ``fd``, from ``/proc/locks`` (Linux)."""
    info = os.fstat(fd)
    inode = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        with open("/proc/locks") as locks:
            lines = locks.read().splitlines()
    except OSError:
        return []
    pids = []
    for line in lines:
        fields = line.split()
        if "FLOCK" in fields and inode in fields:
            pids.append(fields[fields.index(inode) - 1])
    return sorted(set(pids), key=int)


class SqliteEventStore:
    def __init__(
        self, path: str, *, durability: Durability = "full", busy_timeout_ms: int = 10_000
    ) -> None:
        self.path = path
        self.durability = durability
        self._busy_timeout_ms = busy_timeout_ms
        self._writer: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._lock = StoreLock(path)

    async def open(self) -> None:
        await asyncio.to_thread(self._lock.share)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="cairn-sqlite-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="cairn-sqlite-reader")
        try:
            self._write_conn = await self._in(self._writer, self._connect, False)
            self._read_conn = await self._in(self._reader, self._connect, True)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        for executor, conn in ((self._writer, self._write_conn), (self._reader, self._read_conn)):
            if executor is not None:
                if conn is not None:
                    await asyncio.get_running_loop().run_in_executor(executor, conn.close)
                executor.shutdown(wait=True)
        self._writer = self._reader = None
        self._write_conn = self._read_conn = None
        self._lock.release()

    def _connect(self, readonly: bool) -> sqlite3.Connection:
        # The writer waits for the lock in write_transaction, in finer steps than SQLite's.
        timeout_ms = self._busy_timeout_ms if readonly else 0
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=timeout_ms / 1000)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StoreUnavailableError(f"{self.path}: journal_mode is {mode}, not wal")
            conn.execute(f"PRAGMA synchronous={_SYNCHRONOUS[self.durability]}")
            actual = conn.execute("PRAGMA synchronous").fetchone()[0]
            if actual != _SYNCHRONOUS[self.durability]:
                raise StoreUnavailableError(
                    f"{self.path}: synchronous is {actual}, wanted {self.durability}"
                )
            conn.execute(f"PRAGMA busy_timeout={timeout_ms}")
            if readonly:
                conn.execute("PRAGMA query_only=1")
            conn.execute("SELECT 1 FROM events LIMIT 0")
        except sqlite3.Error as error:
            conn.close()
            raise StoreUnavailableError(
                f"{self.path}: {error} (is the schema migrated?)"
            ) from error
        except BaseException:
            conn.close()
            raise
        return conn

    async def _in(self, executor: ThreadPoolExecutor | None, fn: Callable[..., T], *args: Any) -> T:
        if executor is None:
            raise StoreUnavailableError("the event store is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
        except sqlite3.Error as error:
            raise StoreUnavailableError(f"sqlite: {error}") from error

    async def pragmas(self) -> dict[str, object]:
        """What the writer's connection actually runs with (journal mode, synchronous)."""
        return await self._in(self._writer, self._pragmas)

    def _pragmas(self) -> dict[str, object]:
        assert self._write_conn is not None
        return {
            name: self._write_conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "synchronous", "busy_timeout")
        }

    async def transact(self, fn: Callable[[StateTx], T]) -> T:
        return await self._in(self._writer, self._transact, fn)

    def _transact(self, fn: Callable[[StateTx], T]) -> T:
        assert self._write_conn is not None

        def apply(conn: sqlite3.Connection) -> T:
            tx = _SqliteTx(conn)
            result = fn(tx)
            tx.flush()
            return result

        return write_transaction(self._write_conn, apply, self._busy_timeout_ms / 1000)

    async def read(
        self,
        after: int,
        limit: int,
        *,
        queue: str | None = None,
        types: Sequence[str] | None = None,
        until: int | None = None,
    ) -> list[StoredEvent]:
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE position > ?"
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
        return await self._in(self._reader, self._select_events, sql, params)

    async def read_positions(self, positions: Sequence[int]) -> list[StoredEvent]:
        wanted = sorted(set(positions))
        found: list[StoredEvent] = []
        for start in range(0, len(wanted), _MAX_PARAMS):
            chunk = wanted[start : start + _MAX_PARAMS]
            sql = (
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE position IN"
                f" ({','.join('?' * len(chunk))}) ORDER BY position"
            )
            found += await self._in(self._reader, self._select_events, sql, chunk)
        return found

    async def read_message(self, message_id: str) -> list[StoredEvent]:
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE message_id = ? ORDER BY position"
        return await self._in(self._reader, self._select_events, sql, [message_id])

    async def head(self) -> int:
        return await self._in(self._reader, self._head)

    def _head(self) -> int:
        assert self._read_conn is not None
        row = self._read_conn.execute("SELECT MAX(position) FROM events").fetchone()
        return int(row[0] or 0)

    def _select_events(self, sql: str, params: Sequence[Any]) -> list[StoredEvent]:
        assert self._read_conn is not None
        return [StoredEvent(*row) for row in self._read_conn.execute(sql, params)]


def write_transaction(
    conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], wait_s: float
) -> T:
    """Run ``fn`` inside ``BEGIN IMMEDIATE`` … ``COMMIT``; any exception rolls it all back.

    Another process's writer is waited for in short steps, up to ``wait_s``: SQLite's own busy
    handler sleeps 1, 2, 5, 10 ms and more between attempts, while a writer holds the lock for
    a millisecond or two, so with ``--workers N`` most of that sleep was lost (measured: two
    workers went from 5.7k to 7.6k publishes/s, p99 from 247 to 35 ms). Connections used here
    are opened with no busy timeout of their own."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            break
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(_LOCK_RETRY_S)
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _queue(row: tuple[Any, ...] | None) -> QueueState | None:
    if row is None:
        return None
    return QueueState(
        queue_id=row[0],
        name=row[1],
        visibility_timeout_s=row[2],
        delay_s=row[3],
        retention_s=row[4],
        max_receive_count=row[5],
        dead_letter_queue=row[6],
        created_at=row[7],
        updated_at=row[8],
        deleted=bool(row[9]),
    )


def _message(row: tuple[Any, ...]) -> MessageState:
    return MessageState(
        message_id=row[0],
        queue_id=row[1],
        position=row[2],
        status=row[3],
        visible_at=row[4],
        lease=row[5],
        receive_count=row[6],
        published_at=row[7],
    )


class _SqliteTx:
    """The write-side state inside one ``BEGIN IMMEDIATE`` transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        row = conn.execute("SELECT MAX(position) FROM events").fetchone()
        self._next = int(row[0] or 0) + 1
        self._rows: list[tuple[int, str, str, str, str | None, bytes]] = []
        self._published: dict[int, MessagePublished] = {}
        self._queues_by_name: dict[str, QueueState | None] = {}
        # Message rows written by this transaction, newest state per id. Point lookups read
        # them here; they reach the table in one executemany before any query that scans it.
        self._messages_written: dict[str, MessageState] = {}

    @property
    def next_position(self) -> int:
        return self._next

    def queue(self, name: str) -> QueueState | None:
        if name not in self._queues_by_name:
            row = self._conn.execute(
                f"SELECT {_QUEUE_COLUMNS} FROM broker_queues WHERE name = ? AND deleted = 0",
                (name,),
            ).fetchone()
            self._queues_by_name[name] = _queue(row)
        return self._queues_by_name[name]

    def queue_by_id(self, queue_id: int) -> QueueState | None:
        row = self._conn.execute(
            f"SELECT {_QUEUE_COLUMNS} FROM broker_queues WHERE queue_id = ?", (queue_id,)
        ).fetchone()
        return _queue(row)

    def live_queues(self) -> list[QueueState]:
        rows = self._conn.execute(
            f"SELECT {_QUEUE_COLUMNS} FROM broker_queues WHERE deleted = 0 ORDER BY name"
        ).fetchall()
        return [q for q in map(_queue, rows) if q is not None]

    def message(self, message_id: str) -> MessageState | None:
        written = self._messages_written.get(message_id)
        if written is not None:
            return written
        row = self._conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM broker_messages WHERE message_id = ?", (message_id,)
        ).fetchone()
        return None if row is None else _message(row)

    def dedup(self, queue_id: int, dedup_id: str) -> DedupEntry | None:
        row = self._conn.execute(
            "SELECT message_id, position, expires_at FROM broker_dedup"
            " WHERE queue_id = ? AND dedup_id = ?",
            (queue_id, dedup_id),
        ).fetchone()
        if row is None:
            return None
        return DedupEntry(
            queue_id=queue_id,
            dedup_id=dedup_id,
            message_id=row[0],
            position=row[1],
            expires_at=row[2],
        )

    def _messages(self, sql: str, params: Sequence[Any]) -> list[MessageState]:
        self._write_messages()
        return [_message(row) for row in self._conn.execute(sql, params)]

    def receivable(self, queue_id: int, now: int, limit: int) -> list[MessageState]:
        # "+visible_at" keeps that term off the index: SQLite would otherwise pick the
        # (queue_id, status, visible_at) index and sort every ready message by position
        # (10 ms at 100k ready); walking (queue_id, status, position) stops after `limit`.
        return self._messages(
            f"SELECT {_MESSAGE_COLUMNS} FROM broker_messages"
            " WHERE queue_id = ? AND status = 'ready' AND +visible_at <= ?"
            " ORDER BY position LIMIT ?",
            (queue_id, now, limit),
        )

    def due_leases(self, queue_id: int, now: int, limit: int) -> list[MessageState]:
        return self._messages(
            f"SELECT {_MESSAGE_COLUMNS} FROM broker_messages"
            " WHERE queue_id = ? AND status = 'leased' AND visible_at <= ?"
            " ORDER BY visible_at, position LIMIT ?",
            (queue_id, now, limit),
        )

    def expired_ready(self, queue_id: int, published_before: int, limit: int) -> list[MessageState]:
        return self._messages(
            f"SELECT {_MESSAGE_COLUMNS} FROM broker_messages"
            " WHERE queue_id = ? AND status = 'ready' AND published_at <= ?"
            " ORDER BY published_at, position LIMIT ?",
            (queue_id, published_before, limit),
        )

    def count_live(self, queue_id: int) -> int:
        self._write_messages()
        row = self._conn.execute(
            "SELECT COUNT(*) FROM broker_messages"
            " WHERE queue_id = ? AND status IN ('ready', 'leased')",
            (queue_id,),
        ).fetchone()
        return int(row[0])

    def next_visible_at(self, queue_id: int, now: int) -> int | None:
        self._write_messages()
        row = self._conn.execute(
            "SELECT MIN(visible_at) FROM broker_messages"
            " WHERE queue_id = ? AND status = 'ready' AND visible_at > ?",
            (queue_id, now),
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def published(self, position: int) -> MessagePublished:
        event = self._published.get(position)
        if event is None:
            row = self._conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE position = ?", (position,)
            ).fetchone()
            if row is None:
                raise LookupError(f"no event at position {position}")
            decoded = StoredEvent(*row).event()
            if not isinstance(decoded, MessagePublished):
                raise LookupError(f"event {position} is {decoded.__class__.__name__}")
            event = self._published[position] = decoded
        return event

    def append(self, new_events: Sequence[AnyEvent]) -> int:
        for event in new_events:
            position = self._next
            self._rows.append(
                (
                    position,
                    events.type_of(event),
                    events.encode_at(event.at),
                    event.queue,
                    events.message_id_of(event),
                    events.encode_data(event),
                )
            )
            if isinstance(event, MessagePublished):
                self._published[position] = event
            for change in evolve(self, event, position):
                self._apply(change)
            self._next += 1
        return self._next - 1

    def prune_dedup(self, now: int) -> int:
        return self._conn.execute("DELETE FROM broker_dedup WHERE expires_at <= ?", (now,)).rowcount

    def flush(self) -> None:
        """Write what is still buffered; called once, just before COMMIT."""
        self._write_messages()
        if self._rows:
            self._conn.executemany(
                f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", self._rows
            )
            self._rows = []

    def _write_messages(self) -> None:
        if not self._messages_written:
            return
        self._conn.executemany(
            f"INSERT INTO broker_messages ({_MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (message_id) DO UPDATE SET status = excluded.status,"
            " visible_at = excluded.visible_at, lease = excluded.lease,"
            " receive_count = excluded.receive_count",
            [
                (
                    m.message_id,
                    m.queue_id,
                    m.position,
                    m.status,
                    m.visible_at,
                    m.lease,
                    m.receive_count,
                    m.published_at,
                )
                for m in self._messages_written.values()
            ],
        )
        self._messages_written.clear()

    def _apply(self, change: Change) -> None:
        match change:
            case PutQueue(queue):
                self._queues_by_name.clear()
                self._conn.execute(
                    f"INSERT INTO broker_queues ({_QUEUE_COLUMNS})"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (queue_id) DO UPDATE SET"
                    " visibility_timeout_s = excluded.visibility_timeout_s,"
                    " delay_s = excluded.delay_s, retention_s = excluded.retention_s,"
                    " max_receive_count = excluded.max_receive_count,"
                    " dead_letter_queue = excluded.dead_letter_queue,"
                    " updated_at = excluded.updated_at, deleted = excluded.deleted",
                    (
                        queue.queue_id,
                        queue.name,
                        queue.visibility_timeout_s,
                        queue.delay_s,
                        queue.retention_s,
                        queue.max_receive_count,
                        queue.dead_letter_queue,
                        queue.created_at,
                        queue.updated_at,
                        queue.deleted,
                    ),
                )
            case PutMessage(message):
                self._messages_written[message.message_id] = message
            case PutDedup(entry):
                self._conn.execute(
                    "INSERT INTO broker_dedup"
                    " (queue_id, dedup_id, message_id, position, expires_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (queue_id, dedup_id) DO UPDATE SET"
                    " message_id = excluded.message_id, position = excluded.position,"
                    " expires_at = excluded.expires_at",
                    (
                        entry.queue_id,
                        entry.dedup_id,
                        entry.message_id,
                        entry.position,
                        entry.expires_at,
                    ),
                )
            case PurgeMessages(queue_id, position):
                self._write_messages()
                self._conn.execute(
                    "UPDATE broker_messages SET status = 'purged'"
                    " WHERE queue_id = ? AND status IN ('ready', 'leased') AND position < ?",
                    (queue_id, position),
                )
