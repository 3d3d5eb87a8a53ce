"""A store from before due times (migration 0007) gets them on its first start: the migration
fills ``broker_due`` from the rows as they are, with the times the sweeper itself would set,
and the first sweep after it records what was due. On SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from tortoise import Tortoise
from tortoise.migrations.api import migrate as tortoise_migrate

from broker.commands import (
    AckEntry,
    AckMessages,
    AnyCommand,
    CreateQueue,
    DeleteQueue,
    PublishMessages,
    PurgeQueue,
    QueueSettings,
    ReceiveMessages,
    StartMoveTask,
    Sweep,
    UndoPurge,
)
from broker.decide import Context, PurgeReply, ReceiveReply, SweepReply
from broker.ports import EventStore
from broker.state import to_us
from broker.store.postgres import PostgresEventStore
from broker.store.sqlite import SqliteEventStore
from broker.store.tortoise import migrate, tortoise_config
from broker.writer import apply_batch
from projections.models import APPS
from tests.helpers import START, Counter, fresh_database, message
from tests.postgres import drop
from tests.postgres import fresh_database as fresh_postgres

BEFORE = "broker.0007_kafka_door"
T0 = to_us(START)


async def _run(store: EventStore, command: AnyCommand, seconds: float = 0) -> Any:
    ctx = Context(START + timedelta(seconds=seconds), Counter("id"), Counter("r"))
    batch = await store.transact(lambda tx: apply_batch(tx, [command], ctx))
    return batch.outcomes[0]


async def _write(store: EventStore) -> None:
    for name in ("idle", "busy", "done", "gone", "purged", "dlq"):
        await _run(store, CreateQueue(queue=name, settings=QueueSettings()))
    await _run(
        store,
        CreateQueue(
            queue="src", settings=QueueSettings(max_receive_count=1, dead_letter_queue="dlq")
        ),
    )
    for name in ("busy", "done", "gone", "purged"):
        await _run(store, PublishMessages(queue=name, messages=(message(1), message(2))))
    await _run(store, ReceiveMessages(queue="busy", max_messages=1, visibility_timeout_s=30))
    got = await _run(store, ReceiveMessages(queue="done", max_messages=2, visibility_timeout_s=20))
    assert isinstance(got, ReceiveReply)
    entries = tuple(AckEntry(message_id=m.id, receipt=m.receipt) for m in got.messages)
    await _run(store, AckMessages(queue="done", entries=entries))
    await _run(store, DeleteQueue(queue="gone"))
    purge = await _run(store, PurgeQueue(queue="purged"))
    assert isinstance(purge, PurgeReply)
    await _run(store, UndoPurge(queue="purged", purge=purge.position))
    await _run(store, StartMoveTask(queue="dlq", task="t1", max_per_second=10))


EXPECTED = {
    "idle": (None, None),
    "busy": (T0 + 30_000_000, None),  # the lease's end, before retention (14 days)
    "done": (None, T0 + 20_000_000),  # acked: kept from their leases' end
    "gone": (None, None),  # the sweeper visits no deleted queue
    "purged": (T0 + 1_209_600_000_000, 0),  # restored; the undone purge leaves rows to prune
    "dlq": (0, None),  # a move task runs
    "src": (None, None),
}


async def _upgrade_and_check(store: EventStore, url: str, due: Any) -> None:
    await store.open()
    await _write(store)
    await store.close()
    await tortoise_migrate(config=tortoise_config(url, APPS), target=BEFORE)
    await Tortoise.close_connections()
    assert due() is None  # as a v1.1 store had it: no table
    await migrate(url, APPS)
    assert due() == EXPECTED
    await store.open()
    try:
        swept = await _run(store, Sweep(), seconds=31)
        assert isinstance(swept, SweepReply)
        names = await store.transact(
            lambda tx: sorted(q.name for q in map(tx.queue_by_id, swept.visited) if q)
        )
        assert names == ["busy", "dlq"]
        log = await store.read(0, 1000, types=["message.lease_expired"])
        assert [e.queue for e in log] == ["busy"]
    finally:
        await store.close()


_ROWS = (
    "SELECT q.name, d.sweep_at, d.prune_at FROM broker_due d"
    " JOIN broker_queues q ON q.queue_id = d.queue_id"
)


async def test_a_sqlite_store_from_before_gets_its_due_times(tmp_path: Path) -> None:
    path = fresh_database(tmp_path)

    def due() -> dict[str, tuple[int | None, int | None]] | None:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            try:
                rows = conn.execute(_ROWS).fetchall()
            except sqlite3.OperationalError:
                return None
        return {name: (sweep, prune) for name, sweep, prune in rows}

    await _upgrade_and_check(SqliteEventStore(str(path)), f"sqlite:///{path}", due)


async def test_a_postgres_store_from_before_gets_its_due_times() -> None:
    url = fresh_postgres()

    def due() -> dict[str, tuple[int | None, int | None]] | None:
        with psycopg.connect(url) as conn:
            try:
                rows = conn.execute(_ROWS).fetchall()
            except psycopg.errors.UndefinedTable:
                return None
        return {name: (sweep, prune) for name, sweep, prune in rows}

    try:
        await _upgrade_and_check(PostgresEventStore(url), url, due)
    finally:
        drop(url)
