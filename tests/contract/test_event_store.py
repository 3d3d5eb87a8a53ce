"""One contract for the ``EventStore`` port, run against every adapter."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.commands import (
    AckEntry,
    AckMessages,
    AnyCommand,
    CreateQueue,
    NackMessage,
    PublishMessages,
    QueueSettings,
    ReceiveMessages,
)
from broker.decide import AckReply, Context, ReceiveReply, decide
from broker.errors import StoreUnavailableError
from broker.ports import EventStore
from broker.state import StateTx
from broker.store.memory import MemoryEventStore
from broker.store.postgres import PostgresEventStore
from broker.store.sqlite import SqliteEventStore
from broker.writer import apply_batch, record
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

    async def test_last_position_finds_a_queues_last_event_of_a_type(
        self, store: EventStore
    ) -> None:
        await store.transact(_create("a"))
        await store.transact(_create("b"))
        await store.transact(_publish("a", 2))
        await store.transact(_publish("b", 1))
        assert await store.last_position("a", "message.published") == 4
        assert await store.last_position("a", "message.published", before=4) == 3
        assert await store.last_position("a", "message.published", before=3) == 0
        assert await store.last_position("b", "queue.created") == 2
        assert await store.last_position("c", "message.published") == 0

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


_STEP = st.one_of(
    st.tuples(st.just("publish"), st.integers(1, 5), st.sampled_from([0, 0, 5])),
    st.tuples(st.just("receive"), st.integers(1, 12)),
    st.tuples(st.just("ack"), st.integers(0, 30)),
    st.tuples(st.just("nack"), st.integers(0, 30), st.sampled_from([0, 5])),
)


def _commands(script: list[tuple[Any, ...]], leases: list[tuple[str, str]]) -> list[AnyCommand]:
    commands: list[AnyCommand] = []
    for step in script:
        match step:
            case ("publish", count, delay):
                messages = tuple(message(i, delay_s=delay) for i in range(count))
                commands.append(PublishMessages(queue="a", messages=messages))
            case ("receive", count):
                commands.append(ReceiveMessages(queue="a", max_messages=count))
            case ("ack", index) if leases:
                mid, receipt = leases[index % len(leases)]
                entry = AckEntry(message_id=mid, receipt=receipt)
                commands.append(AckMessages(queue="a", entries=(entry,)))
            case ("nack", index, delay) if leases:
                mid, receipt = leases[index % len(leases)]
                commands.append(
                    NackMessage(queue="a", message_id=mid, receipt=receipt, delay_s=delay)
                )
    return commands


class BatchContract:
    """What a store keeps for itself inside a transaction (rows it read, candidates for the
    next receive) must never change a decision: a batch of commands decides exactly as the
    same commands would, one after the other, on the plain in-memory store."""

    async def make_store(self) -> tuple[EventStore, Callable[[], None]]:
        raise NotImplementedError

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(rounds=st.lists(st.lists(_STEP, min_size=1, max_size=12), min_size=1, max_size=5))
    def test_a_batch_decides_like_one_command_after_another(
        self, rounds: list[list[tuple[Any, ...]]]
    ) -> None:
        asyncio.run(self._compare(rounds))

    async def _compare(self, rounds: list[list[tuple[Any, ...]]]) -> None:
        store, done = await self.make_store()
        reference = MemoryEventStore()
        ids = Counter("m")
        try:
            for target in (store, reference):
                await target.transact(_create("a"))
            leases: list[tuple[str, str]] = []
            for script in rounds:
                commands = _commands(script, leases)
                batch = await _run(store, commands, Context(START, ids, Counter("r")))
                alone = Context(START, ids, Counter("r"))
                one_by_one = [(await _run(reference, [c], alone)).outcomes[0] for c in commands]
                assert [_said(o) for o in batch.outcomes] == [_said(o) for o in one_by_one]
                for outcome in batch.outcomes:
                    if isinstance(outcome, ReceiveReply):
                        leases += [(m.id, m.receipt) for m in outcome.messages]
            assert [e.type for e in await store.read(0, 10_000)] == [
                e.type for e in await reference.read(0, 10_000)
            ]
        finally:
            await store.close()
            done()

    async def test_a_long_batch_never_serves_a_new_message_before_older_unread_ones(
        self,
    ) -> None:
        """More receives in one batch than the first read of candidates covers, with a publish
        among them: the new message must wait for every older one."""
        store, done = await self.make_store()
        try:
            await store.transact(_create("a"))
            await store.transact(_publish("a", 100))
            commands: list[AnyCommand] = [
                ReceiveMessages(queue="a", max_messages=60),
                PublishMessages(queue="a", messages=(message("new"),)),
                ReceiveMessages(queue="a", max_messages=5),
                ReceiveMessages(queue="a", max_messages=10),
            ]
            ctx = Context(now=START, new_id=Counter("m"), new_receipt=Counter("r"))
            batch = await store.transact(lambda tx: apply_batch(tx, commands, ctx))
            first, _, second, third = batch.outcomes
            assert isinstance(first, ReceiveReply) and isinstance(second, ReceiveReply)
            assert isinstance(third, ReceiveReply)
            assert [m.position for m in first.messages] == list(range(2, 62))
            assert [m.position for m in second.messages] == list(range(62, 67))
            assert [m.position for m in third.messages] == list(range(67, 77))
        finally:
            await store.close()
            done()


async def _run(store: EventStore, commands: list[AnyCommand], ctx: Context) -> Any:
    return await store.transact(lambda tx: apply_batch(tx, commands, ctx))


def _said(outcome: object) -> object:
    if isinstance(outcome, ReceiveReply):
        return ("received", [m.id for m in outcome.messages])
    if isinstance(outcome, AckReply):
        return ("acked", outcome.results)
    return type(outcome).__name__


class TestSqliteBatches(BatchContract):
    async def make_store(self) -> tuple[EventStore, Callable[[], None]]:
        directory = Path(tempfile.mkdtemp(prefix="cairn-batch-"))
        store = SqliteEventStore(str(fresh_database(directory)))
        await store.open()
        return store, lambda: shutil.rmtree(directory, ignore_errors=True)


class TestPostgresBatches(BatchContract):
    async def make_store(self) -> tuple[EventStore, Callable[[], None]]:
        url = fresh_postgres()
        store = PostgresEventStore(url)
        await store.open()
        return store, lambda: drop(url)
