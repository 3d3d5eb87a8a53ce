"""Reads of the analytics read model, in the shape the API serves (API.md "Analytics")."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from broker.store.sql import Database, Sql
from projections.analytics.buckets import ANALYTICS_BUCKETS, BucketRow, Tally


class Dwell(msgspec.Struct, kw_only=True):
    p50: float
    p95: float
    p99: float
    max: float


class NackReason(msgspec.Struct, kw_only=True):
    reason: str
    count: int


class Bucket(msgspec.Struct, kw_only=True):
    start: datetime
    published: int
    received: int
    acked: int
    nacked: int
    dead_lettered: int
    expired: int
    purged: int
    dwell_s: Dwell | None
    """Publish → ack of the messages acked in the bucket; null when none were."""
    nack_reasons: list[NackReason]
    """Most frequent first."""


class Analytics(msgspec.Struct, kw_only=True):
    queue: str
    bucket_s: int
    buckets: list[Bucket]


async def analytics(
    views: Database, queue: str, bucket_s: int, first_s: int, end_s: int
) -> Analytics | None:
    """The buckets of ``bucket_s`` seconds starting at ``first_s`` (a multiple of it) up to
    ``end_s`` (excluded), every one present (zeros where nothing happened); None when no live
    queue has the name."""

    def read(conn: Sql) -> list[BucketRow] | None:
        if not conn.query("SELECT 1 FROM queue_views WHERE name = ? AND NOT deleted", [queue]):
            return None
        rows = conn.query(
            f"{ANALYTICS_BUCKETS.select} WHERE queue = ? AND bucket_s = ?"
            " AND start_s >= ? AND start_s < ?",
            [queue, bucket_s, first_s, end_s],
        )
        return ANALYTICS_BUCKETS.load_all(rows)

    rows = await views.snapshot(read)
    if rows is None:
        return None
    found = {row.start_s: row for row in rows}
    buckets = [
        _bucket(start, found.get(start) or BucketRow(queue, bucket_s, start))
        for start in range(first_s, end_s, bucket_s)
    ]
    return Analytics(queue=queue, bucket_s=bucket_s, buckets=buckets)


def _bucket(start_s: int, row: BucketRow) -> Bucket:
    tally = Tally.of(row)
    dwell = tally.dwell
    ranked = sorted(tally.reasons.items(), key=lambda item: (-item[1], item[0]))
    return Bucket(
        start=datetime.fromtimestamp(start_s, UTC),
        **tally.counts,
        dwell_s=None
        if dwell.count == 0
        else Dwell(
            p50=_q(dwell.quantile(0.5)),
            p95=_q(dwell.quantile(0.95)),
            p99=_q(dwell.quantile(0.99)),
            max=round(dwell.max, 6),
        ),
        nack_reasons=[NackReason(reason=r, count=c) for r, c in ranked],
    )


def _q(value: float | None) -> float:
    assert value is not None  # the sketch is not empty
    return round(value, 6)
