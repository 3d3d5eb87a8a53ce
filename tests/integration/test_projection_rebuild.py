"""For any sequence of commands, the read models built incrementally (in batches of any size,
interleaved with the commands) equal the ones rebuilt from the log in one go."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.store.sql import Sql
from broker.store.sqlite import SqliteDatabase, SqliteEventStore
from broker.writer import Writer
from projections.analytics.buckets import ANALYTICS_BUCKETS, ANALYTICS_PENDING
from projections.analytics.projector import AnalyticsProjector
from projections.models import views_file
from projections.runner import ProjectionRunner
from projections.views.messages import MESSAGE_VIEWS
from projections.views.projector import ViewsProjector
from projections.views.queues import QUEUE_VIEWS
from tests.helpers import Counter, FakeClock, fresh_database
from tests.integration.scripts import START_QUEUES, play

NAMES = st.sampled_from(["a", "b", "dlq"])

PUBLISH = st.tuples(st.just("publish"), NAMES, st.integers(1, 4), st.sampled_from([0, 0, 5]))
RECEIVE = st.tuples(st.just("receive"), NAMES, st.integers(1, 3))
PROJECT = st.tuples(st.just("project"))
# Queues exist from the start, and the common steps are listed twice: most runs then do
# something worth projecting, rather than failing on missing queues.
steps = st.lists(
    st.one_of(
        PUBLISH,
        PUBLISH,
        RECEIVE,
        RECEIVE,
        PROJECT,
        PROJECT,
        st.tuples(st.just("create"), NAMES, st.booleans()),
        st.tuples(st.just("ack"), st.integers(0, 20)),
        st.tuples(st.just("nack"), st.integers(0, 20)),
        st.tuples(st.just("advance"), st.sampled_from([1, 10, 31, 61])),
        st.tuples(st.just("purge"), NAMES),
        st.tuples(st.just("delete"), NAMES),
        st.tuples(st.just("redrive"), NAMES),
    ),
    min_size=4,
    max_size=40,
).map(lambda script: START_QUEUES + script)


async def _dump(views: SqliteDatabase) -> dict[str, list[tuple[Any, ...]]]:
    def dump(conn: Sql) -> dict[str, list[tuple[Any, ...]]]:
        return {
            "queues": conn.query(f"{QUEUE_VIEWS.select} ORDER BY queue_id"),
            "messages": conn.query(f"{MESSAGE_VIEWS.select} ORDER BY message_id"),
            "buckets": conn.query(f"{ANALYTICS_BUCKETS.select} ORDER BY queue, bucket_s, start_s"),
            "pending": conn.query(f"{ANALYTICS_PENDING.select} ORDER BY message_id"),
        }

    return await views.snapshot(dump)


async def _scenario(directory: Path, script: list[tuple[Any, ...]], batch: int) -> None:
    path = fresh_database(directory)
    store = SqliteEventStore(str(path))
    await store.open()
    clock = FakeClock()
    writer = Writer(store, clock=clock, new_id=Counter("m"), new_receipt=Counter("r"))
    await writer.start()
    read_models = SqliteDatabase(views_file(str(path)), table="projection_checkpoints")
    await read_models.open()
    incremental = ProjectionRunner(
        store, read_models, [ViewsProjector(), AnalyticsProjector()], batch_size=batch
    )
    await incremental.start()
    try:
        await play(writer, incremental, clock, script)
        await incremental.catch_up()
        built = await _dump(read_models)

        await incremental.reset("views")
        await incremental.reset("analytics")
        assert not any((await _dump(read_models)).values())
        rebuilt = ProjectionRunner(
            store, read_models, [ViewsProjector(), AnalyticsProjector()], batch_size=100_000
        )
        await rebuilt.start()
        await rebuilt.catch_up()
        assert await _dump(read_models) == built
        assert rebuilt.watermarks["views"].value == await store.head()
        assert rebuilt.watermarks["analytics"].value == await store.head()
    finally:
        await writer.stop()
        await read_models.close()
        await store.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=steps, batch=st.integers(1, 7))
def test_a_rebuilt_read_model_equals_the_incremental_one(
    script: list[tuple[Any, ...]], batch: int
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(_scenario(Path(directory), script, batch))
