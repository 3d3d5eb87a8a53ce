"""One contract for the ``EventStore`` port, run against every adapter."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from broker.commands import CreateQueue, PublishMessages, QueueSettings
from broker.decide import Context, decide
from broker.errors import StoreUnavailableError
from broker.ports import EventStore
from broker.state import StateTx
from broker.store.memory import MemoryEventStore
from broker.store.postgres import PostgresEventStore
from broker.store.sqlite import SqliteEventStore
from broker.writer import record
from tests.helpers import START, Counter, fresh_database, message
from tests.postgres import drop
from tests.postgres import fresh_database as fresh_postgres

CTX = Context(now=START, new_id=Counter("id"), new_receipt=Counter("r"))


def _create(name: str):
    def run(tx: StateTx) -> int:
        return record(tx, decide(tx, CreateQueue(queue=name, settings=QueueSettings()), CTX).events)

    return run


def _publish(queue: str, count: int):
    def run(tx: StateTx) -> int:
        command = PublishMessages(queue=queue, messages=tuple(message(i) for i in range(count)))
        return record(tx, decide(tx, command, CTX).events)

    return run


class Boom(Exception):
    pass


class EventStoreContract:
    @pytest.fixture
    async def store(self) -> AsyncIterator[EventStore]:
        raise NotImplementedError

    async def test_an_empty_store_has_head_zero(self, store: EventStore) -> None:
        assert await store.head() == 0
        assert await store.read(0, 10) == []

    async def test_positions_are_contiguous_from_one(self, store: EventStore) -> None:
        assert await store.transact(_create("a")) == 1
        assert await store.transact(_publish("a", 3)) == 4
        assert [e.position for e in await store.read(0, 100)] == [1, 2, 3, 4]
        assert await store.head() == 4

    async def test_concurrent_transactions_keep_positions_contiguous(
        self, store: EventStore
    ) -> None:
        await store.transact(_create("a"))
        await asyncio.gather(*(store.transact(_publish("a", 2)) for _ in range(40)))
        positions = [e.position for e in await store.read(0, 1000)]
        assert positions == list(range(1, 82))

    async def test_a_failed_transaction_leaves_no_trace(self, store: EventStore) -> None:
        await store.transact(_create("a"))

        def fail_after_appending(tx: StateTx) -> None:
            _publish("a", 2)(tx)
            raise Boom

        with pytest.raises(Boom):
            await store.transact(fail_after_appending)
        assert await store.head() == 1
        assert await store.transact(lambda tx: tx.count_live(1)) == 0
        assert await store.transact(_publish("a", 1)) == 2

    async def test_read_pages_and_filters(self, store: EventStore) -> None:
        await store.transact(_create("a"))
        await store.transact(_create("b"))
        await store.transact(_publish("a", 2))
        await store.transact(_publish("b", 1))
        page = await store.read(1, 2)
        assert [e.position for e in page] == [2, 3]
        assert [e.position for e in await store.read(1, 10, until=3)] == [2, 3]
        assert await store.read(3, 10, until=3) == []
        assert [e.position for e in await store.read(0, 10, queue="b")] == [2, 5]
        published = await store.read(0, 10, types=["message.*"])
        assert [e.type for e in published] == ["message.published"] * 3
        created = await store.read(0, 10, types=["queue.created", "queue.deleted"])
        assert [e.position for e in created] == [1, 2]
        assert await store.read(0, 10, queue="b", types=["queue.*"]) == [
            (await store.read(0, 10))[1]
        ]

    async def test_read_by_position_and_by_message(self, store: EventStore) -> None:
        await store.transact(_create("a"))
        await store.transact(_publish("a", 3))
        events = await store.read(0, 10)
        assert await store.read_positions([4, 2, 2]) == [events[1], events[3]]
        message_id = events[2].message_id
        assert message_id is not None
        assert await store.read_message(message_id) == [events[2]]

    async def test_state_follows_the_events_in_the_same_transaction(
        self, store: EventStore
    ) -> None:
        await store.transact(_create("a"))
        await store.transact(_publish("a", 2))
        queue = await store.transact(lambda tx: tx.queue("a"))
        assert queue is not None and queue.queue_id == 1
        ready = await store.transact(lambda tx: tx.receivable(1, 2**62, 10))
        assert [m.position for m in ready] == [2, 3]


class TestMemoryStore(EventStoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[EventStore]:
        store = MemoryEventStore()
        await store.open()
        yield store
        await store.close()


class TestSqliteStore(EventStoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[EventStore]:
        store = SqliteEventStore(str(fresh_database(tmp_path)))
        await store.open()
        yield store
        await store.close()

    async def test_the_schema_refuses_to_change_an_event(self, store: EventStore) -> None:
        await store.transact(_create("a"))
        assert isinstance(store, SqliteEventStore)
        with contextlib.closing(sqlite3.connect(store.path)) as conn:
            with pytest.raises(sqlite3.IntegrityError, match="immutable"):
                conn.execute("UPDATE events SET queue = 'b'")
            with pytest.raises(sqlite3.IntegrityError, match="immutable"):
                conn.execute("DELETE FROM events")

    async def test_commits_are_durable_by_default_and_checked(self, tmp_path: Path) -> None:
        path = fresh_database(tmp_path)
        for durability, expected in (("full", 2), ("normal", 1)):
            store = SqliteEventStore(str(path), durability=durability)
            await store.open()
            try:
                pragmas = await store.pragmas()
                assert pragmas["synchronous"] == expected
                assert pragmas["journal_mode"] == "wal"
            finally:
                await store.close()

    async def test_opening_an_unmigrated_file_fails_clearly(self, tmp_path: Path) -> None:
        store = SqliteEventStore(str(tmp_path / "empty.db"))
        with pytest.raises(StoreUnavailableError, match="migrated"):
            await store.open()
        await store.close()

    async def test_two_stores_on_one_file_share_one_log(
        self, store: EventStore, tmp_path: Path
    ) -> None:
        assert isinstance(store, SqliteEventStore)
        other = SqliteEventStore(store.path)
        await other.open()
        try:
            await store.transact(_create("a"))
            await asyncio.gather(
                *(s.transact(_publish("a", 3)) for s in (store, other) for _ in range(10))
            )
            assert [e.position for e in await other.read(0, 100)] == list(range(1, 62))
        finally:
            await other.close()


class TestPostgresStore(EventStoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[EventStore]:
        url = fresh_postgres()
        store = PostgresEventStore(url)
        await store.open()
        yield store
        await store.close()
        drop(url)

    async def test_the_schema_refuses_to_change_an_event(self, store: EventStore) -> None:
        await store.transact(_create("a"))
        assert isinstance(store, PostgresEventStore)
        with psycopg.connect(store.url, autocommit=True) as conn:
            for statement in ("UPDATE events SET queue = 'b'", "DELETE FROM events"):
                with pytest.raises(psycopg.errors.RaiseException, match="immutable"):
                    conn.execute(statement)
            with pytest.raises(psycopg.errors.RaiseException, match="immutable"):
                conn.execute("TRUNCATE events")

    async def test_an_unreachable_database_is_unavailable_within_ten_seconds(self) -> None:
        store = PostgresEventStore("postgresql://postgres@127.0.0.1:1/none")
        with pytest.raises(StoreUnavailableError):
            await asyncio.wait_for(store.open(), 12)
        await store.close()

    async def test_nodes_appending_at_once_never_show_a_reader_p_plus_1_before_p(
        self, store: EventStore
    ) -> None:
        """Four stores (as four nodes would) append concurrently while a reader polls the
        log: every read must be a contiguous prefix of positions, and no position may ever
        appear below what a reader has already seen."""
        assert isinstance(store, PostgresEventStore)
        nodes = [PostgresEventStore(store.url) for _ in range(4)]
        for node in nodes:
            await node.open()
        await store.transact(_create("a"))
        done = asyncio.Event()
        reads = 0

        async def read_all_the_time() -> None:
            nonlocal reads
            seen = 0
            while not done.is_set():
                positions = [e.position for e in await store.read(0, 100_000)]
                assert positions == list(range(1, len(positions) + 1)), "a gap was visible"
                assert len(positions) >= seen, "a position seen before disappeared"
                seen = len(positions)
                reads += 1

        async def append(node: PostgresEventStore) -> None:
            for _ in range(25):
                await node.transact(_publish("a", 3))

        reader = asyncio.create_task(read_all_the_time())
        try:
            await asyncio.gather(*(append(node) for node in nodes))
        finally:
            done.set()
            await reader
            for node in nodes:
                await node.close()
        positions = [e.position for e in await store.read(0, 100_000)]
        assert positions == list(range(1, 1 + 1 + 4 * 25 * 3))
        assert reads > 10  # the reader really ran while they committed
