"""The analytics projector on its own read model: what it counts into which bucket, that every
coarse bucket is the merge of its fine ones, and that what it keeps stays bounded (fine buckets
and publish times are pruned by the time of the events, so a rebuild prunes the same)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from broker.events import (
    AnyEvent,
    MessageAcked,
    MessageDeadLettered,
    MessageLeased,
    MessageNacked,
    MessagePublished,
    QueuePurged,
    StoredEvent,
)
from broker.store.sql import Sql
from broker.store.sqlite import SqliteDatabase
from projections.analytics import sketch
from projections.analytics.buckets import ANALYTICS_BUCKETS, ANALYTICS_PENDING, BucketRow
from projections.analytics.projector import AnalyticsProjector
from projections.models import views_file
from tests.helpers import START, fresh_database

BODY = msgspec.Raw(b'{"order": 1}')


class Log:
    """Events with chosen times, fed to the projector in batches."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        self.position = 0
        self.projector = AnalyticsProjector()

    async def apply(self, events: Iterable[AnyEvent], batch: int = 1000) -> None:
        pending = list(events)
        for first in range(0, len(pending), batch):
            stored = []
            for event in pending[first : first + batch]:
                self.position += 1
                stored.append(StoredEvent.of(self.position, event))
            await self.db.transaction(lambda conn, s=stored: self.projector.apply(conn, s))

    async def rows(self, size: int, queue: str = "q") -> list[BucketRow]:
        def read(conn: Sql) -> list[BucketRow]:
            sql = f"{ANALYTICS_BUCKETS.select} WHERE queue = ? AND bucket_s = ? ORDER BY start_s"
            return ANALYTICS_BUCKETS.load_all(conn.query(sql, [queue, size]))

        return await self.db.snapshot(read)

    async def count(self, table: str) -> int:
        def read(conn: Sql) -> int:
            return int(conn.query(f"SELECT COUNT(*) FROM {table}")[0][0])

        return await self.db.snapshot(read)


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[Log]:
    db = SqliteDatabase(views_file(str(fresh_database(tmp_path))), table="projection_checkpoints")
    await db.open()
    yield Log(db)
    await db.close()


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def published(mid: str, t: float, queue: str = "q") -> MessagePublished:
    return MessagePublished(at=at(t), queue=queue, message_id=mid, body=BODY)


def leased(mid: str, t: float) -> MessageLeased:
    return MessageLeased(
        at=at(t), queue="q", message_id=mid, receive_count=1, visible_at=at(t + 30)
    )


def acked(mid: str, t: float) -> MessageAcked:
    return MessageAcked(at=at(t), queue="q", message_id=mid)


def nacked(mid: str, t: float, reason: str | None) -> MessageNacked:
    return MessageNacked(at=at(t), queue="q", message_id=mid, visible_at=at(t), reason=reason)


def totals(rows: list[BucketRow]) -> dict[str, Any]:
    counts = [msgspec.structs.astuple(r)[3:10] for r in rows]
    summed = [sum(column) for column in zip(*counts, strict=True)] if counts else []
    dwell = sketch.Sketch()
    reasons: dict[str, int] = {}
    for row in rows:
        if row.dwell:
            dwell.merge(sketch.decode(row.dwell))
        for reason, count in msgspec.json.decode(row.nack_reasons, type=dict[str, int]).items():
            reasons[reason] = reasons.get(reason, 0) + count
    return {"counts": summed, "dwell": dwell, "reasons": reasons}


async def test_events_are_counted_in_their_bucket_and_merged_into_every_size(log: Log) -> None:
    events: list[AnyEvent] = []
    for i in range(30):  # one message every 7 s, acked 2.5 s later, every third nacked first
        mid, t = f"m{i}", i * 7.0
        events += [published(mid, t), leased(mid, t + 1)]
        if i % 3 == 0:
            events.append(nacked(mid, t + 1.5, "timeout calling payments"))
        events.append(acked(mid, t + 2.5))
    events.append(nacked("m-x", 100, None))  # a nack without a reason is counted, not listed
    events.append(
        MessageDeadLettered(
            at=at(150),
            queue="q",
            message_id="m-y",
            dead_letter_queue="dlq",
            dead_letter_message_id="m-z",
        )
    )
    events.append(QueuePurged(at=at(200), queue="q", purged=4))
    await log.apply(events, batch=7)

    fine = await log.rows(10)
    assert [r.start_s % 10 for r in fine] == [0] * len(fine)
    first = await log.rows(10)
    assert first[0].start_s == int(START.timestamp())
    assert (first[0].published, first[0].received, first[0].acked) == (2, 2, 2)  # at 0 and 7 s
    want = totals(fine)
    assert want["counts"] == [30, 30, 30, 11, 1, 0, 4]
    assert want["reasons"] == {"timeout calling payments": 10}
    assert want["dwell"].count == 30
    assert abs((want["dwell"].quantile(0.5) or 0) - 2.5) <= 0.025
    for size in (60, 300, 3600):
        coarse = await log.rows(size)
        assert [r.start_s % size for r in coarse] == [0] * len(coarse)
        assert totals(coarse) == want  # the merge of the fine buckets, sketch included
    assert len(await log.rows(3600)) == 1
    # Every message left its queue (acked), so no publish time is kept.
    assert await log.count(ANALYTICS_PENDING.name) == 0


async def test_an_ack_in_a_later_batch_finds_its_publish_time(log: Log) -> None:
    await log.apply([published("a", 0)])
    await log.apply([leased("a", 1), acked("a", 61)])
    [bucket] = await log.rows(3600)
    dwell = sketch.decode(bucket.dwell)
    assert dwell.max == 61.0


async def test_fine_buckets_go_after_what_is_kept_and_coarse_ones_stay(log: Log) -> None:
    await log.apply([published("old", 0), leased("old", 1)])
    day = 86400
    await log.apply([published("day-later", day + 2 * 3600)])  # 26 h later
    assert [r.start_s for r in await log.rows(10)] == [int(at(day + 7200).timestamp())]
    assert len(await log.rows(60)) == 2  # kept 14 days
    await log.apply([published("weeks-later", 16 * day)])
    kept = [int(at(t).timestamp()) for t in (day + 7200, 16 * day)]
    assert [r.start_s for r in await log.rows(60)] == kept  # the first one was 16 days old
    assert len(await log.rows(300)) == 3 and len(await log.rows(3600)) == 3  # as long as the log
    # A publish time no ack can follow any more (longer than any retention) is dropped too.
    assert await log.count(ANALYTICS_PENDING.name) == 2


async def test_coarse_buckets_stay_for_the_history_retention(log: Log) -> None:
    log.projector = AnalyticsProjector(history_retention_s=2 * 86400)
    day = 86400
    await log.apply([published("first", 0)])
    await log.apply([published("next-day", day)])
    assert len(await log.rows(300)) == 2 and len(await log.rows(3600)) == 2
    await log.apply([published("three-days-later", 3 * day)])
    # The first day's buckets are wholly older than two days; the next day's are not yet.
    start = [int(at(t).timestamp()) for t in (day, 3 * day)]
    assert [r.start_s for r in await log.rows(300)] == start
    assert [r.start_s for r in await log.rows(3600)] == start


async def test_a_busy_queue_costs_a_bounded_number_of_rows_per_day(log: Log) -> None:
    """One queue with something in every 10 s bucket, for two days: the rows kept stop
    growing for 10 s and 60 s buckets, and grow by 288 + 24 a day for the coarser ones."""
    day = 86400

    def one_day(offset: int) -> list[AnyEvent]:
        events: list[AnyEvent] = []
        for step in range(0, day, 10):
            mid, t = f"d{offset}-{step}", offset + step
            events += [published(mid, t), leased(mid, t + 1), acked(mid, t + 2)]
        return events

    await log.apply(one_day(0), batch=2000)
    first = {size: len(await log.rows(size)) for size in (10, 60, 300, 3600)}
    assert first == {10: 8640, 60: 1440, 300: 288, 3600: 24}
    await log.apply(one_day(day), batch=2000)
    second = {size: len(await log.rows(size)) for size in (10, 60, 300, 3600)}
    assert second[10] <= 25 * 360 + 1  # 10 s buckets: a little over a day, never more
    assert second == {10: second[10], 60: 2880, 300: 576, 3600: 48}

    def size_of(conn: Sql) -> int:
        rows = conn.query(
            "SELECT SUM(LENGTH(queue) + LENGTH(dwell) + LENGTH(nack_reasons) + 8 * 10)"
            f" FROM {ANALYTICS_BUCKETS.name} WHERE bucket_s = 10"
        )
        return int(rows[0][0])

    per_row = await log.db.snapshot(size_of) / second[10]
    print(
        f"\n10 s bucket row: {per_row:.0f} bytes of data; a day of them per queue:"
        f" {per_row * 8640 / 1024:.0f} KiB"
    )
    assert per_row < 200
