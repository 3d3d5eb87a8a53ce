"""The PostgreSQL adapter: one database shared by any number of broker nodes, which together
are one broker. The log, its write-side state and the read models (with their checkpoints)
are tables of that database, so every node decides against the same state and reads the same
projections; ``min_position`` read-your-writes and dedup windows hold across nodes.

Like the SQLite adapter, a group-commit batch is one synchronous function run in one hop, on a
thread of its own, through the synchronous psycopg driver: decisions read the state while they
decide, and an event loop round trip per statement would cost more than the statement. An
unreachable database is a ``StoreUnavailableError`` (503) within seconds, never a hang, and
the next command after it is back reconnects (``PostgresDatabase``).

Positions across nodes: see ``POSITION_LOCK``. Wake-ups across nodes: each committed batch
sends one ``NOTIFY``; ``Listener`` turns them back into calls. Background jobs that must run
once across the cluster (the projectors, the sweeper) run where ``Leadership`` is held.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import psycopg
import structlog

from broker.errors import StoreUnavailableError, StoreUnreachableError
from broker.events import StoredEvent
from broker.state import StateTx
from broker.store import sql
from broker.store.sql import SqlStateTx

log = structlog.get_logger(component="cairn.postgres")
T = TypeVar("T")

POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")
HEAD_CHANNEL: Final = "cairn_head"
CHECKPOINT_CHANNEL: Final = "cairn_checkpoints"
WAIT_S: Final = 10.0
"""The longest a command or a read waits for the database before it is a 503."""
_NOTIFY_LIMIT: Final = 7000  # bytes of payload; PostgreSQL refuses more than 8000


def _key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a name."""
    return int.from_bytes(hashlib.sha256(f"cairn:{name}".encode()).digest()[:8], "big", signed=True)


POSITION_LOCK: Final = _key("positions")
"""Why one transaction-scoped advisory lock, taken by every appending transaction before it
reads the head:

Positions must be contiguous and in commit order, so that a reader that has seen p never sees
an event at or below p appear later (the contract's position guarantee, and what makes
``Last-Event-ID`` resumption gap-free). A sequence or an identity column gives neither:
numbers are taken in one order and committed in another, and a rolled-back transaction leaves
a hole, so a reader can see p+1 before p (or never see p). Readers that skip gaps after a
timeout turn that into silently lost events (Marten's old bug).

So appends are serialised, one batch at a time: ``pg_advisory_xact_lock(POSITION_LOCK)`` waits
for the previous appender, whichever node it is on, to end. PostgreSQL releases a
transaction's locks only after its commit is visible to new snapshots, and the next holder's
``SELECT MAX(position)`` (READ COMMITTED: a snapshot per statement, taken after the lock is
granted) sees that commit. A batch therefore always appends right after the last committed
position, commits before the next batch can start, and no snapshot can contain a later batch
without the earlier one. The same lock serialises every change to the write-side state, so a
decision (no double lease, dedup) is made against the state every earlier batch left.

An advisory lock rather than ``LOCK TABLE events IN EXCLUSIVE MODE`` (pyeventsourcing's
choice): the same order, but it touches no table lock, so plain readers, autovacuum and
``pg_dump`` never queue with the writers. Group commit pays for the serialisation: the lock
is held for one batch of many commands, not for one event. Should it become the limit, the
alternative is pg_eventstore's xid8 horizon (readers stop below the oldest running writer's
transaction), which lets writers overlap.
"""


def is_postgres(url: str) -> bool:
    return url.startswith(POSTGRES_SCHEMES)


def conninfo(url: str) -> str:
    """The libpq connection string for a ``postgresql://`` URL (``postgres://`` too)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    return url


def reason(error: BaseException, url: str) -> str:
    """A driver error as one line that keeps the driver's reason ("Connection refused", "password
    authentication failed ...") and never the password: libpq's messages span lines, indented
    with tabs, and the cause is often not on the last one."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = "; ".join(lines) or type(error).__name__
    password = urlsplit(url).password
    return text.replace(password, "***") if password else text


def describe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


@lru_cache(maxsize=512)
def _statement(text: str) -> str:
    # The shared SQL is written with ?; psycopg takes %s (and no literal % appears in it).
    return text.replace("?", "%s")


class PostgresConnection:
    """``Sql`` over one psycopg connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(_statement(statement), params).fetchall()

    def execute(self, statement: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(_statement(statement), params).rowcount

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(_statement(statement), rows)

    def one_of(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(?)", [list(values)]

    def bytewise(self, column: str) -> str:
        return f'{column} COLLATE "C"'

    def notify(self, channel: str, payload: str) -> None:
        """Sent when the transaction commits, and only if it does."""
        self._conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))

    def pipeline(self) -> contextlib.AbstractContextManager[Any]:
        """Statements inside are sent without waiting for each other's results: one round
        trip for all of them (their results are read at the end)."""
        return self._conn.pipeline()


class CommitUnknownError(StoreUnreachableError):
    """The connection was lost while COMMIT was under way: the command may or may not have
    been applied. A retry with the same idempotency key is safe either way."""


class PostgresDatabase:
    """Connections to one database, one per thread of this object's own.

    Not a pool with background reconnection: each thread keeps its connection and, when it is
    found broken, opens a new one right then. While the database is down every attempt fails
    at once (or after ``connect_s`` when the host does not answer), so a command is a 503 in
    well under 10 s, never a hang; and the first command after it is back reconnects at once,
    where a pool's exponential backoff had commands failing for seconds longer.
    ``options``: server settings for its sessions (``synchronous_commit``)."""

    def __init__(
        self,
        url: str,
        *,
        name: str,
        size: int = 4,
        connect_s: float = 3.0,
        options: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self._name = name
        self._size = size
        self._connect_s = connect_s
        settings = {"lock_timeout": f"{int(WAIT_S * 1000)}", **(options or {})}
        # Waiting for a lock (the position lock of a stuck appender) is bounded too.
        self._options = " ".join(f"-c {k}={v}" for k, v in settings.items())
        self._executor: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._connections: list[psycopg.Connection[Any]] = []
        self._guard = threading.Lock()

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(self._size, thread_name_prefix=f"cairn-pg-{self._name}")
        try:
            await self._in(self._connection)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        with self._guard:
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def _connection(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if conn is not None:
            with self._guard:
                self._connections.remove(conn)
            with contextlib.suppress(psycopg.Error):
                conn.close()
            self._local.conn = None
        conn = psycopg.connect(
            conninfo(self.url),
            autocommit=True,
            connect_timeout=max(1, int(self._connect_s)),
            options=self._options,
        )
        self._local.conn = conn
        with self._guard:
            self._connections.append(conn)
        return conn

    async def _in(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreUnavailableError(f"the database {describe(self.url)} is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except psycopg.Error as error:  # the adapter's boundary: no driver error gets past it
            raise StoreUnavailableError(f"postgresql: {reason(error, self.url)}") from error

    def _run(self, begin: str, fn: Callable[[PostgresConnection], T]) -> T:
        try:
            conn = self._connection()
        except psycopg.OperationalError as error:
            raise StoreUnreachableError(f"postgresql: {reason(error, self.url)}") from error
        try:
            conn.execute(begin)
            result = fn(PostgresConnection(conn))
        except BaseException as error:
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")
            if isinstance(error, psycopg.OperationalError) and conn.broken:  # it went away
                raise StoreUnreachableError(f"postgresql: {reason(error, self.url)}") from error
            raise
        try:
            conn.execute("COMMIT")
        except psycopg.OperationalError as error:
            raise CommitUnknownError(
                f"the connection to the database was lost while committing ({error}); the"
                " outcome is unknown: retrying with the same Idempotency-Key is safe"
            ) from error
        return result

    async def transaction(self, fn: Callable[[PostgresConnection], T]) -> T:
        return await self._in(self._run, "BEGIN", fn)

    async def snapshot(self, fn: Callable[[PostgresConnection], T]) -> T:
        # One snapshot for every statement of ``fn``, as SQLite's read transaction gives.
        return await self._in(self._run, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", fn)


class PostgresEventStore:
    """The ``EventStore`` port on a PostgreSQL database shared by every node.

    Durability: ``full`` commits with ``synchronous_commit=on`` (the WAL is flushed before the
    answer: it survives a crash of the database server, and of its machine when the server's
    own ``fsync`` is on); ``normal`` with ``off``: a crash of the broker loses nothing, one of
    the database server may lose the last fraction of a second of commits."""

    def __init__(self, url: str, *, durability: str = "full", readers: int = 4) -> None:
        self.url = url
        commit = "on" if durability == "full" else "off"
        self._writer = PostgresDatabase(
            url, name="writer", size=1, options={"synchronous_commit": commit}
        )
        self.database = PostgresDatabase(url, name="reader", size=readers)

    async def open(self) -> None:
        await self._writer.open()
        try:
            await self.database.open()
            await self.database.snapshot(lambda c: c.query("SELECT 1 FROM events LIMIT 0"))
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self.database.close()
        await self._writer.close()

    async def transact(self, fn: Callable[[StateTx], T]) -> T:
        def run(conn: PostgresConnection) -> T:
            conn.query("SELECT pg_advisory_xact_lock(?)", [POSITION_LOCK])  # see POSITION_LOCK
            tx = SqlStateTx(conn)
            first = tx.next_position
            result = fn(tx)
            with conn.pipeline():  # the rows kept for the end, and the NOTIFY: one round trip
                tx.flush()
                if tx.next_position > first:  # one NOTIFY per committed batch, not per event
                    payload = head_payload(tx.next_position - 1, tx.queues_touched)
                    conn.notify(HEAD_CHANNEL, payload)
            return result

        return await self._writer.transaction(run)

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


def head_payload(head: int, queues: Iterable[str]) -> str:
    """``"<head> <queue> <queue> ..."``; just the head when the queues would not fit (every
    listener then wakes every long poll, which is correct, only less precise)."""
    payload = " ".join([str(head), *sorted(queues)])
    return payload if len(payload) <= _NOTIFY_LIMIT else str(head)


def parse_head(payload: str) -> tuple[int, frozenset[str] | None]:
    head, *queues = payload.split(" ")
    return int(head), frozenset(queues) if queues else None


class Listener:
    """LISTENs on a connection of its own and hands each notification to ``handle(channel,
    payload)``. When the connection breaks it reconnects with backoff and calls
    ``handle(channel, None)`` for each channel: what was sent meanwhile is lost, so the
    listener's owner must look again (read the head, the checkpoints)."""

    def __init__(
        self,
        url: str,
        channels: Sequence[str],
        handle: Callable[[str, str | None], Awaitable[None] | None],
    ) -> None:
        self._url = url
        self._channels = channels
        self._handle = handle

    async def run(self) -> None:
        delay = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    conninfo(self._url), autocommit=True, connect_timeout=int(WAIT_S)
                )
            except psycopg.Error as error:
                log.warning("listener_unavailable", error=str(error))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            try:
                async with conn:
                    for channel in self._channels:
                        await conn.execute(f"LISTEN {channel}")
                    for channel in self._channels:  # anything from before LISTEN: look again
                        await self._call(channel, None)
                    async for notify in conn.notifies():
                        await self._call(notify.channel, notify.payload)
            except psycopg.Error as error:
                log.warning("listener_disconnected", error=str(error))

    async def _call(self, channel: str, payload: str | None) -> None:
        result = self._handle(channel, payload)
        if result is not None:
            await result


class Leadership:
    """Held by at most one process of the cluster at a time: a session-level advisory lock
    on a connection of its own. When the holder dies (even kill -9) its connection closes and
    the lock is free at once; another process's next ``acquire`` takes it."""

    def __init__(self, url: str, name: str) -> None:
        self._url = url
        self.name = name
        self._key = _key(f"leader:{name}")
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def acquire(self) -> bool:
        """Take the lead if nobody has it; True if this process has it now."""
        if self._conn is not None:
            return await self.held()
        try:
            conn = await psycopg.AsyncConnection.connect(
                conninfo(self._url), autocommit=True, connect_timeout=int(WAIT_S)
            )
        except psycopg.Error:
            return False
        try:
            cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,))
            row = await cursor.fetchone()
        except psycopg.Error:
            await conn.close()
            return False
        if row is None or not row[0]:
            await conn.close()
            return False
        self._conn = conn
        return True

    async def held(self) -> bool:
        """Still the leader: the connection that holds the lock still answers."""
        if self._conn is None:
            return False
        try:
            await asyncio.wait_for(self._conn.execute("SELECT 1"), WAIT_S)
            return True
        except (psycopg.Error, TimeoutError):
            await self.release()
            return False

    async def release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(psycopg.Error):
                await conn.close()


async def check_reachable(url: str) -> None:
    """``StoreUnavailableError`` saying why, unless the database answers."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            conninfo(url), autocommit=True, connect_timeout=int(WAIT_S)
        )
        async with conn:
            await conn.execute("SELECT 1")
    except psycopg.Error as error:
        raise StoreUnavailableError(f"cannot connect: {reason(error, url)}") from None


@contextlib.asynccontextmanager
async def migration_lock(url: str) -> AsyncIterator[None]:
    """Hold the cluster's migration lock for the duration (nothing to hold on SQLite, where
    ``cairn serve`` migrates once before its workers start)."""
    if not is_postgres(url):
        yield
        return
    try:
        conn = await psycopg.AsyncConnection.connect(
            conninfo(url), autocommit=True, connect_timeout=int(WAIT_S)
        )
    except psycopg.Error as error:
        raise StoreUnavailableError(
            f"cannot connect to {describe(url)}: {reason(error, url)}"
        ) from None
    async with conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_key("migrations"),))
        yield
