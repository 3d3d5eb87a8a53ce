"""The SQLite adapter: the log and its write-side state in one file, the read models in another
beside it (``<name>.views.db``); both through ``SqliteDatabase``.

Why not the ORM here: a group-commit batch is one synchronous function (``BEGIN IMMEDIATE``,
decide and apply each command, insert the events, ``COMMIT``) run in one hop on a dedicated
thread with its own connection. Through the ORM every statement would be its own hop to
aiosqlite's thread (~50 µs) and every row its own model object (~230 µs); here a statement is a
few µs of C. Tortoise still owns the schema (``broker/store/tortoise.py``) and its migrations.

Durability: WAL with ``synchronous=FULL`` (the default) fsyncs the WAL on every commit, so an
answered command survives power loss; ``normal`` survives a crash of the process but not of the
machine. Both are checked after being set, at open. The read models are rebuilt from the log
after a crash, so their commits do not wait for an fsync.

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
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from broker.errors import StoreUnavailableError
from broker.events import StoredEvent
from broker.state import StateTx
from broker.store import sql
from broker.store.sql import Sql, SqlStateTx

T = TypeVar("T")
Durability = Literal["full", "normal"]

_SYNCHRONOUS: Final = {"full": 2, "normal": 1}
_LOCK_RETRY_S: Final = 0.0002
_MIN_FREE_BYTES: Final = 1024 * 1024
"""Less than this free at start-up and the migration could not even record itself."""


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
    if location.exists() and not os.access(location, os.W_OK):
        raise StoreUnavailableError(f"{location} is not writable")
    _check_room_for(location)  # SQLite creates its -wal and -shm files beside the database
    if not location.exists():
        return  # created, in a folder we may write, by the migration
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=1)) as conn:
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
            conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.Error as error:
        raise StoreUnavailableError(f"{path}: {error}") from None


_NO_FILES: Final = frozenset(
    {"proc", "sysfs", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "pstore", "bpf"}
    | {"configfs", "devpts", "mqueue", "binfmt_misc", "efivarfs", "fusectl", "nsfs"}
)
"""Kernel file systems that show the system's state as files and hold no files of their own."""


def _check_room_for(location: Path) -> None:
    """A new database file can be made at ``location`` (or beside it): in the nearest folder on
    its way that exists, a file can be made (tried, not inferred: root passes every permission
    check, and a pseudo file system reports no free space when it is simply not a place for
    files), and there is room for it."""
    folder = location.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise StoreUnavailableError(f"{folder} is not a directory")
    kind = file_system_of(folder)
    why = f": it is a {kind} file system, which holds no files" if kind in _NO_FILES else ""
    if not os.access(folder, os.W_OK):
        raise StoreUnavailableError(f"{folder} is not writable{why}")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".cairn-probe-"):
            pass
    except OSError as error:
        raise StoreUnavailableError(f"{folder} is not writable ({error.strerror}){why}") from None
    space = os.statvfs(folder)
    if space.f_bavail * space.f_frsize < _MIN_FREE_BYTES:
        raise StoreUnavailableError(f"no space left on the device that holds {folder}")


def file_system_of(path: Path) -> str | None:
    """The type of the file system ``path`` is on (Linux: from ``/proc/self/mounts``), if known."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    real = os.path.realpath(path)
    best: tuple[int, str] | None = None
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) > best[0]):
            best = (len(point), fields[2])
    return best[1] if best else None


def check_new_file(path: str) -> None:
    """``StoreUnavailableError`` saying why a new SQLite file (a backup) cannot be made at
    ``path``, which must not exist yet."""
    location = Path(path)
    if location.exists():
        raise StoreUnavailableError(f"{path} exists already: pick a new name")
    _check_room_for(location)


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


class SqliteConnection:
    """``Sql`` over one ``sqlite3`` connection (its ``?`` placeholders are SQLite's own)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(statement, params).fetchall()

    def execute(self, statement: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(statement, params).rowcount

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(statement, rows)

    def one_of(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} IN ({','.join('?' * len(values))})", list(values)

    def bytewise(self, column: str) -> str:
        return column


class SqliteDatabase:
    """One SQLite file: a writer connection and a reader connection, each on a thread of its
    own, so a read never queues behind a commit's fsync. ``table`` must exist (the schema is
    migrated before any process opens the file)."""

    def __init__(
        self,
        path: str,
        *,
        table: str,
        durability: Durability = "full",
        busy_timeout_ms: int = 10_000,
    ) -> None:
        self.path = path
        self.durability = durability
        self._table = table
        self._busy_timeout_ms = busy_timeout_ms
        self._writer: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None

    async def open(self) -> None:
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

    def _connect(self, readonly: bool) -> sqlite3.Connection:
        # The writer waits for the lock in write_transaction, in finer steps than SQLite's; but
        # setting the connection up waits like a reader: another process's last connection
        # closing checkpoints the WAL under an exclusive lock, and must not fail this open.
        timeout_ms = self._busy_timeout_ms if readonly else 0
        conn = sqlite3.connect(
            self.path, isolation_level=None, timeout=self._busy_timeout_ms / 1000
        )
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
            conn.execute(f"SELECT 1 FROM {self._table} LIMIT 0")
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
            raise StoreUnavailableError(f"{self.path} is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
        except sqlite3.Error as error:  # the adapter's boundary: no driver error gets past it
            raise StoreUnavailableError(f"sqlite: {error}") from error

    async def transaction(self, fn: Callable[[Sql], T]) -> T:
        return await self._in(self._writer, self._transaction, fn)

    def _transaction(self, fn: Callable[[Sql], T]) -> T:
        assert self._write_conn is not None
        wait_s = self._busy_timeout_ms / 1000
        return write_transaction(self._write_conn, lambda c: fn(SqliteConnection(c)), wait_s)

    async def snapshot(self, fn: Callable[[Sql], T]) -> T:
        return await self._in(self._reader, self._snapshot, fn)

    def _snapshot(self, fn: Callable[[Sql], T]) -> T:
        assert self._read_conn is not None
        # One read transaction: every statement of ``fn`` sees the same snapshot.
        self._read_conn.execute("BEGIN")
        try:
            return fn(SqliteConnection(self._read_conn))
        finally:
            self._read_conn.execute("COMMIT")

    async def pragmas(self) -> dict[str, object]:
        """What the writer's connection actually runs with (journal mode, synchronous)."""
        return await self._in(self._writer, self._pragmas)

    def _pragmas(self) -> dict[str, object]:
        assert self._write_conn is not None
        return {
            name: self._write_conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "synchronous", "busy_timeout")
        }


class SqliteEventStore:
    """The ``EventStore`` port on one SQLite file."""

    def __init__(
        self, path: str, *, durability: Durability = "full", busy_timeout_ms: int = 10_000
    ) -> None:
        self.path = path
        self.durability = durability
        self.database = SqliteDatabase(
            path, table="events", durability=durability, busy_timeout_ms=busy_timeout_ms
        )
        self._lock = StoreLock(path)

    async def open(self) -> None:
        await asyncio.to_thread(self._lock.share)
        try:
            await self.database.open()
        except BaseException:
            self._lock.release()
            raise

    async def close(self) -> None:
        await self.database.close()
        self._lock.release()

    async def pragmas(self) -> dict[str, object]:
        return await self.database.pragmas()

    async def transact(self, fn: Callable[[StateTx], T]) -> T:
        def run(conn: Sql) -> T:
            tx = SqlStateTx(conn)
            result = fn(tx)
            tx.flush()
            return result

        return await self.database.transaction(run)

    async def read(
        self,
        after: int,
        limit: int,
        *,
        queue: str | None = None,
        types: Sequence[str] | None = None,
        until: int | None = None,
    ) -> list[StoredEvent]:
        return await self.database.snapshot(
            lambda c: sql.read_events(c, after, limit, queue=queue, types=types, until=until)
        )

    async def read_positions(self, positions: Sequence[int]) -> list[StoredEvent]:
        return await self.database.snapshot(lambda c: sql.read_positions(c, positions))

    async def read_message(self, message_id: str) -> list[StoredEvent]:
        return await self.database.snapshot(lambda c: sql.read_message(c, message_id))

    async def head(self) -> int:
        return await self.database.snapshot(sql.head)

    async def last_position(self, queue: str, type_: str, *, before: int | None = None) -> int:
        return await self.database.snapshot(lambda c: sql.last_position(c, queue, type_, before))

    async def position_at(self, at: str) -> int:
        return await self.database.snapshot(lambda c: sql.position_at(c, at))


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
