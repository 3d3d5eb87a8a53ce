#!/usr/bin/env python
"""The projectors' cost per batch beside many idle queues: a live projector follows small
commits, so what a batch costs must not grow with the queues nobody uses.

Creates ``--queues`` queues through the real writer (a SQLite log), folds them into fresh
SQLite read models, then times ``--batches`` small batches of work on one queue (a publish of
10 messages, a receive, an ack of them: ~21 events each), each applied as the projector
process applies what one commit made. Prints the median and p90 time per batch for each
projector. Usage: scripts/bench_projector_queues.py [--queues 100000] [--batches 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from broker.commands import (
    AckEntry,
    AckMessages,
    CreateQueue,
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

BODY = msgspec.Raw(b'{"order": 12345}')


async def work(writer: Writer, queue: str, round_: int) -> None:
    messages = tuple(
        NewMessage(message_id=f"m{round_}-{i}", body=BODY, attributes={}) for i in range(10)
    )
    await writer.execute(PublishMessages(queue=queue, messages=messages))
    reply = await writer.execute(ReceiveMessages(queue=queue, max_messages=10))
    assert isinstance(reply, ReceiveReply)
    entries = tuple(AckEntry(message_id=m.id, receipt=m.receipt) for m in reply.messages)
    await writer.execute(AckMessages(queue=queue, entries=entries))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "cairn.db"
        await migrate(f"sqlite:///{path}", APPS)
        store = SqliteEventStore(str(path), durability="normal")
        await store.open()
        writer = Writer(store)
        await writer.start()
        for first in range(0, args.queues, 1000):  # many at once: group-committed
            names = [f"q-{n:06}" for n in range(first, min(first + 1000, args.queues))]
            await asyncio.gather(
                *(writer.execute(CreateQueue(queue=n, settings=QueueSettings())) for n in names)
            )
        views = SqliteDatabase(
            views_file(str(path)), table="projection_checkpoints", durability="normal"
        )
        await views.open()
        projectors = {"views": ViewsProjector(), "analytics": AnalyticsProjector()}
        runner = ProjectionRunner(store, views, list(projectors.values()), batch_size=10_000)
        await runner.start()
        await runner.catch_up()
        took: dict[str, list[float]] = {name: [] for name in projectors}
        for round_ in range(args.batches):
            await work(writer, "q-000000", round_)
            for name in projectors:
                started = time.perf_counter()
                await runner.step(name)
                took[name].append(time.perf_counter() - started)
        await views.close()
        await writer.stop()
        await store.close()
    print(f"{args.queues:,} queues, {args.batches} batches of ~21 events")
    print(f"{'projector':<12}{'median ms':>11}{'p90 ms':>9}")
    for name, seconds in took.items():
        p90 = statistics.quantiles(seconds, n=10)[-1]
        print(f"{name:<12}{statistics.median(seconds) * 1e3:>11.2f}{p90 * 1e3:>9.2f}")


if __name__ == "__main__":
    asyncio.run(main())
