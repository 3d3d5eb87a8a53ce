#!/usr/bin/env python
"""Projector benchmark: events per second the projector process applies, with and without the
``analytics`` projection.

Builds a log of about ``--events`` events in a temporary SQLite store through the real writer
(batches of 100 publishes, receives of 100, batch acks, and one nack with a reason in ten, with
the clock moving a second per round so the events spread over many 10 s buckets), then replays
it from position 0 into fresh read models, timing each set of projectors:

  views              the queue and message read models alone (what ran before analytics)
  analytics          the analytics projection alone
  views + analytics  both, as ``cairn serve`` runs them
  views 14d          views with history retention's bookkeeping (the default 14 days prunes
                     nothing of this log)
  views 60s          views pruning as it goes (a 60 s history retention)

Each is the median of ``--rounds`` replays, in this one run. Usage:
scripts/bench_projector.py [--events 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from broker.commands import (
    AckEntry,
    AckMessages,
    CreateQueue,
    NackMessage,
    NewMessage,
    PublishMessages,
    QueueSettings,
    ReceiveMessages,
)
from broker.decide import ReceiveReply
from broker.store.sqlite import SqliteDatabase, SqliteEventStore
from broker.store.tortoise import migrate
from broker.writer import Writer
from projections.analytics.projector import AnalyticsProjector
from projections.models import APPS, views_file
from projections.runner import ProjectionRunner
from projections.views.projector import ViewsProjector
from projections.views.retention import HistoryRetention

BODY = msgspec.Raw(msgspec.json.encode({"order": 12345, "items": ["x" * 40] * 5}))


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def build(path: Path, events: int) -> int:
    await migrate(f"sqlite:///{path}", APPS)
    store = SqliteEventStore(str(path), durability="normal")
    await store.open()
    clock = Clock()
    writer = Writer(store, clock=clock)
    await writer.start()
    try:
        await writer.execute(CreateQueue(queue="orders", settings=QueueSettings()))
        n = 0
        while await store.head() < events:
            messages = tuple(
                NewMessage(message_id=f"m{n + i}", body=BODY, attributes={}) for i in range(100)
            )
            n += 100
            await writer.execute(PublishMessages(queue="orders", messages=messages))
            reply = await writer.execute(ReceiveMessages(queue="orders", max_messages=100))
            assert isinstance(reply, ReceiveReply)
            got = list(reply.messages)
            for m in got[:10]:
                await writer.execute(
                    NackMessage(
                        queue="orders", message_id=m.id, receipt=m.receipt, reason="timeout"
                    )
                )
            entries = tuple(AckEntry(message_id=m.id, receipt=m.receipt) for m in got[10:])
            await writer.execute(AckMessages(queue="orders", entries=entries))
            clock.now += timedelta(seconds=1)
        return await store.head()
    finally:
        await writer.stop()
        await store.close()


async def replay(path: Path, template: Path, names: list[str]) -> float:
    """Seconds to apply the whole log with the projectors ``names``, from empty read models."""
    shutil.copyfile(views_file(str(template)), views_file(str(path)))
    store = SqliteEventStore(str(path), durability="normal")
    await store.open()
    views = SqliteDatabase(views_file(str(path)), table="projection_checkpoints")
    await views.open()
    everything = {
        "views": ViewsProjector(),
        "analytics": AnalyticsProjector(),
        "views 14d": ViewsProjector(HistoryRetention(14 * 86400)),
        "views 60s": ViewsProjector(HistoryRetention(60)),
    }
    runner = ProjectionRunner(store, views, [everything[n] for n in names])
    await runner.start()
    try:
        started = time.perf_counter()
        await runner.catch_up()
        return time.perf_counter() - started
    finally:
        await views.close()
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        empty = Path(directory) / "empty.db"
        await migrate(f"sqlite:///{empty}", APPS)
        path = Path(directory) / "cairn.db"
        head = await build(path, args.events)
        print(f"log: {head:,} events")
        baseline = None
        print(f"{'projectors':<20}{'events/s':>12}{'vs views':>10}")
        for names in (
            ["views"],
            ["analytics"],
            ["views", "analytics"],
            ["views 14d"],
            ["views 60s"],
        ):
            took = statistics.median([await replay(path, empty, names) for _ in range(args.rounds)])
            rate = head / took
            baseline = baseline or rate
            print(f"{' + '.join(names):<20}{rate:>12,.0f}{rate / baseline:>9.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
