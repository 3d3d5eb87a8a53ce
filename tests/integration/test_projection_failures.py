"""The runner with a projector that fails for real (its read model damaged through SQL): it
applies everything before the failing event, records that event in the checkpoint row, logs it
once, lets the other projectors go on, and forgets it all once the event applies."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from broker.commands import CreateQueue, PublishMessages, QueueSettings
from broker.notify import Watermark
from broker.store.memory import MemoryEventStore
from broker.store.sql import Sql
from broker.store.sqlite import SqliteDatabase
from broker.writer import Writer
from projections.analytics.projector import AnalyticsProjector
from projections.models import views_file
from projections.runner import ProjectionRunner, checkpoint
from projections.views.projector import ViewsProjector
from tests.helpers import Counter, FakeClock, fresh_database, message


def _checkpoints(conn: Sql) -> dict[str, tuple[Any, ...]]:
    rows = conn.query(
        "SELECT name, position, failing_position, failing_since FROM projection_checkpoints"
    )
    return {row[0]: tuple(row[1:]) for row in rows}


async def _until(condition: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, "not within the deadline"
        await asyncio.sleep(0.02)  # polling the database, with a deadline


async def _scenario(directory: Path) -> None:
    store = MemoryEventStore()
    writer = Writer(store, clock=FakeClock(), new_id=Counter("m"), new_receipt=Counter("r"))
    await writer.start()
    views = SqliteDatabase(
        views_file(str(fresh_database(directory))), table="projection_checkpoints"
    )
    await views.open()
    runner = ProjectionRunner(store, views, [ViewsProjector(), AnalyticsProjector()])
    await runner.start()
    try:
        for name in ("a", "b"):
            await writer.execute(CreateQueue(queue=name, settings=QueueSettings()))
        await runner.catch_up()
        # A read-model row lost by hand: every event of queue "a" from now on fails.
        await views.transaction(
            lambda conn: conn.execute("DELETE FROM queue_views WHERE name = 'a'")
        )
        for name in ("b", "b", "b", "a", "b"):
            await writer.execute(PublishMessages(queue=name, messages=(message(),)))
        head = await store.head()
        failing = head - 1  # the publish to "a", in the middle of the next batch

        with capture_logs() as logs:
            following = asyncio.create_task(runner.run(Watermark(head), idle_timeout=0.05))

            async def recorded() -> bool:
                return (await views.snapshot(_checkpoints))["views"][1] is not None

            await _until(recorded)
            await asyncio.sleep(0.3)  # several retries, a few of them logged at most once
            checkpoints = await views.snapshot(_checkpoints)
            assert checkpoints["views"][:2] == (failing - 1, failing)
            assert checkpoints["analytics"] == (head, None, None)
            failures = [e for e in logs if e["event"] == "projection_failing"]
            assert len(failures) == 1
            assert failures[0]["position"] == failing and "LookupError" in failures[0]["error"]
            assert not [e for e in logs if e["event"] == "projection_batch_split"]
            assert await runner.stuck() == []  # failing, but not for 10 s yet

            await runner.reset("views")  # what `cairn projections rebuild views` does

            async def caught_up() -> bool:
                return await views.snapshot(lambda conn: checkpoint(conn, "views")) == head

            await _until(caught_up)
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
        assert (await views.snapshot(_checkpoints))["views"] == (head, None, None)
        assert [e["projection"] for e in logs if e["event"] == "projection_recovered"] == ["views"]
    finally:
        await writer.stop()
        await views.close()


def test_a_failing_projector_stops_at_its_event_alone_and_recovers() -> None:
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(_scenario(Path(directory)))
