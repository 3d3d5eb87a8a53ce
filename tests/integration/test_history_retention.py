"""History retention (``projections/views/retention.py``, API.md v1.2): for any sequence of
commands, a read model that prunes what finished before the retention (a few rows per batch,
in batches of any size) answers every as-of read from ``as_of_from`` on exactly as one that
keeps everything does, never fails to apply an event (an undo or a restore after pruning
included), and drops only finished messages."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.state import to_us
from broker.store.sql import Sql
from broker.store.sqlite import SqliteDatabase, SqliteEventStore
from broker.writer import Writer
from projections import as_of
from projections.models import views_file
from projections.runner import ProjectionRunner
from projections.views.messages import MESSAGE_VIEWS
from projections.views.projector import ViewsProjector
from projections.views.retention import FINISHED, HistoryRetention
from tests.helpers import Counter, FakeClock, fresh_database
from tests.integration.scripts import START_QUEUES, play

RETENTION_S = 60
NAMES = st.sampled_from(["a", "b", "dlq"])
PUBLISH = st.tuples(st.just("publish"), NAMES, st.integers(1, 4), st.sampled_from([0, 0, 5]))
RECEIVE = st.tuples(st.just("receive"), NAMES, st.integers(1, 3))
START = START_QUEUES
ACK = st.tuples(st.just("ack"), st.integers(0, 20))
ADVANCE = st.tuples(st.just("advance"), st.sampled_from([1, 10, 31, 61, 200]))
steps = st.lists(
    st.one_of(
        PUBLISH,
        RECEIVE,
        RECEIVE,
        ACK,
        ACK,
        st.tuples(st.just("cycle"), NAMES),  # publish, receive and ack: finished messages
        st.tuples(st.just("cycle"), NAMES),
        ADVANCE,
        ADVANCE,
        st.tuples(st.just("project")),
        st.tuples(st.just("nack"), st.integers(0, 20)),
        st.tuples(st.just("purge"), NAMES),
        st.tuples(st.just("undo"), st.integers(0, 5)),
        st.tuples(st.just("delete"), NAMES),
        st.tuples(st.just("restore"), NAMES),
        st.tuples(st.just("create"), NAMES, st.booleans()),
        st.tuples(st.just("redrive"), NAMES),
    ),
    min_size=10,
    max_size=60,
).map(lambda script: START + script)


async def _rows(views: SqliteDatabase) -> dict[str, tuple[Any, ...]]:
    def read(conn: Sql) -> dict[str, tuple[Any, ...]]:
        return {row[0]: row for row in conn.query(MESSAGE_VIEWS.select)}

    return await views.snapshot(read)


class Scenario:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.clock = FakeClock()

    async def run(self, script: list[tuple[Any, ...]], batch: int) -> None:
        path = fresh_database(self.directory)
        store = SqliteEventStore(str(path))
        await store.open()
        writer = Writer(store, clock=self.clock, new_id=Counter("m"), new_receipt=Counter("r"))
        await writer.start()
        pruned = SqliteDatabase(views_file(str(path)), table="projection_checkpoints")
        await pruned.open()
        (self.directory / "whole").mkdir()
        whole_path = fresh_database(self.directory / "whole")
        whole = SqliteDatabase(views_file(str(whole_path)), table="projection_checkpoints")
        await whole.open()
        retention = HistoryRetention(RETENTION_S, chunk=2)  # small: backlogs carry over
        incremental = ProjectionRunner(store, pruned, [ViewsProjector(retention)], batch_size=batch)
        await incremental.start()
        try:
            await play(writer, incremental, self.clock, script)
            await incremental.catch_up()
            keeper = ProjectionRunner(store, whole, [ViewsProjector()], batch_size=100_000)
            await keeper.start()
            await keeper.catch_up()
            await self._compare(store, pruned, whole)
        finally:
            await writer.stop()
            await pruned.close()
            await whole.close()
            await store.close()

    async def _compare(
        self, store: SqliteEventStore, pruned: SqliteDatabase, whole: SqliteDatabase
    ) -> None:
        kept_from = await as_of.as_of_from(pruned)
        head = await store.head()
        events = {e.position: e for e in await store.read(0, head)}
        for position in range(max(kept_from, 1), head + 1):
            now = to_us(datetime.fromisoformat(events[position].at))
            for name in ("a", "b", "dlq"):
                mine = await as_of.get_queue(pruned, name, position, now)
                assert mine == await as_of.get_queue(whole, name, position, now), (name, position)
                if mine is None:
                    continue
                for status in ("available", "delayed", "in_flight"):
                    listed = [
                        await as_of.list_messages(
                            views,
                            store,
                            name,
                            position=position,
                            status=status,
                            after=None,
                            limit=500,
                            now=now,
                        )
                        for views in (pruned, whole)
                    ]
                    assert listed[0] == listed[1], (name, position, status)
        # Only finished messages leave; what stays is as the whole model has it.
        mine, theirs = await _rows(pruned), await _rows(whole)
        for message_id, row in theirs.items():
            if message_id in mine:
                assert mine[message_id] == row
            else:
                assert MESSAGE_VIEWS.load(row).status in (*FINISHED, "purged")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=steps, batch=st.integers(1, 7))
def test_pruning_keeps_every_read_from_as_of_from_and_never_fails(
    script: list[tuple[Any, ...]], batch: int
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(Scenario(Path(directory)).run(script, batch))


def test_a_message_finished_before_the_retention_leaves_and_the_totals_stay() -> None:
    """Not left to chance: an acked message, then more than the retention of later events."""
    script: list[tuple[Any, ...]] = [
        *START,
        ("publish", "a", 3, 0),
        ("receive", "a", 3),
        ("ack", 0),
        ("ack", 1),
        ("advance", 61),
        ("publish", "b", 1, 0),
        ("advance", 61),
        ("publish", "b", 1, 0),
    ]

    async def run(directory: Path) -> None:
        scenario = Scenario(directory)
        await scenario.run(script, 2)
        path = directory / "cairn.db"
        views = SqliteDatabase(views_file(str(path)), table="projection_checkpoints")
        await views.open()
        try:
            statuses = [MESSAGE_VIEWS.load(r).status for r in (await _rows(views)).values()]
            assert "acked" not in statuses  # both acks pruned
            assert statuses.count("ready") == 3  # the live one of a, and b's two
            kept_from = await as_of.as_of_from(views)
            assert kept_from > 0
            queue = await as_of.get_queue(views, "a", kept_from, to_us(scenario.clock.now))
            assert queue is not None
            assert queue.stats.acked_total == 2 and queue.stats.published_total == 3
        finally:
            await views.close()

    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(run(Path(directory)))


def test_a_log_younger_than_the_retention_keeps_everything_and_serves_every_as_of() -> None:
    """Until some event is older than the retention, nothing is known to be old enough:
    ``as_of_from`` stays 0 (an as-of read at position 0 is served) and nothing leaves."""
    script: list[tuple[Any, ...]] = [
        *START,
        ("cycle", "a"),
        ("advance", 31),
        ("cycle", "b"),
        ("advance", 20),
        ("cycle", "a"),
    ]

    async def run(directory: Path) -> None:
        await Scenario(directory).run(script, 1)
        views = SqliteDatabase(
            views_file(str(directory / "cairn.db")), table="projection_checkpoints"
        )
        await views.open()
        try:
            assert await as_of.as_of_from(views) == 0
            statuses = [MESSAGE_VIEWS.load(r).status for r in (await _rows(views)).values()]
            assert statuses == ["acked"] * 3
        finally:
            await views.close()

    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(run(Path(directory)))
