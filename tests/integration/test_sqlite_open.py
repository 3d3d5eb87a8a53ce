"""Opening the SQLite store while another process briefly holds the file's lock (as its last
connection does while it checkpoints the WAL on close) waits for the lock, like any reader,
instead of failing at once."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from broker.store.sqlite import SqliteEventStore
from tests.helpers import fresh_database


async def test_the_store_opens_once_a_brief_exclusive_lock_is_gone(tmp_path: Path) -> None:
    path = fresh_database(tmp_path)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("SELECT COUNT(*) FROM events").fetchone()
    released = threading.Event()

    def release() -> None:
        holder.execute("COMMIT")
        holder.close()
        released.set()

    loop = asyncio.get_running_loop()
    loop.call_later(0.3, release)
    store = SqliteEventStore(str(path))
    await store.open()  # waits for the lock rather than raising "database is locked"
    try:
        assert released.is_set()
        assert await store.head() == 0
    finally:
        await store.close()
