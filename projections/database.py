"""Where projectors write: the read-model tables, in their own SQLite file beside the log's
(see ``projections/models.py`` for why a file of their own).

A projector's batch is one synchronous function (check the checkpoint, apply, move the
checkpoint) run in one hop on a dedicated thread with its own connection, inside
``BEGIN IMMEDIATE … COMMIT``. Measured under publish load: the same batch through the ORM's
async connection took ~9 ms (seven awaited statements, each a round trip through a busy event
loop) and, holding SQLite's single write lock all that time, capped publishing near 3k/s; in one
hop it is about a millisecond. Tortoise still owns these tables' schema and migrations, and the
API's queries read them through it.

Read models are rebuilt from the log after a crash, so their commits do not wait for an fsync
(``synchronous=NORMAL``); the log's writer keeps ``FULL``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from broker.store.sqlite import write_transaction

T = TypeVar("T")


class ReadModelDatabase:
    def __init__(self, path: str, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="cairn-read-models")
        self._conn = await self._run(self._connect)

    async def close(self) -> None:
        if self._executor is None:
            return
        if self._conn is not None:
            await self._run(self._conn.close)
        self._executor.shutdown(wait=True)
        self._executor, self._conn = None, None

    def _connect(self) -> sqlite3.Connection:
        # No busy timeout of its own: write_transaction waits for the lock in finer steps
        # (reads never wait in WAL mode).
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.row_factory = sqlite3.Row
        return conn

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._executor is None:
            raise RuntimeError("the read-model database is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one write transaction; an exception rolls everything back."""
        return await self._run(self._transaction, fn)

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._conn is not None
        return write_transaction(self._conn, fn, self._busy_timeout_ms / 1000)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only ``fn`` on this connection."""
        assert self._conn is not None
        return await self._run(fn, self._conn)
