"""The analytics read model: one row per queue, bucket size and bucket start, and the pending
publish times that dwell times are measured from.

Sizes and how long each is kept (API.md "Analytics"): 10 s buckets at least 24 h, 60 s ones at
least 14 days, 300 s and 3600 s ones as long as the log. Pruning goes by the time of the events
applied, not the wall clock, so that a rebuild prunes exactly what the incremental model did.
"""

from __future__ import annotations

import json
from typing import Annotated, Final

import msgspec
from msgspec import Meta

from broker.state import Int32, Name
from broker.store.tables import Table
from projections.analytics import sketch
from projections.analytics.sketch import Sketch

SIZES: Final = (10, 60, 300, 3600)
"""Bucket sizes in seconds; the finest is what events are counted into, the others are merged
from it."""
FINEST: Final = SIZES[0]
KEPT_S: Final[dict[int, int | None]] = {10: 24 * 3600, 60: 14 * 86400, 300: None, 3600: None}
"""What the contract promises is kept, per size (None: for the history retention,
``--history-retention``)."""
PRUNED_AFTER_S: Final[dict[int, int]] = {10: 25 * 3600, 60: 15 * 86400}
"""When a bucket is dropped: an hour (a day) past the promise, so a read at the edge of the
promise never finds a bucket half pruned."""
PENDING_KEPT_S: Final = 15 * 86400
"""A publish time is kept until its message leaves the queue, or for longer than any message
can stay (retention is at most 14 days), so purged and deleted queues' messages go too."""
MAX_REASONS: Final = 100
"""Nack reasons kept per bucket; the rarest beyond are counted under ``OTHER``."""
REASON_CHARS: Final = 200
OTHER: Final = "(other reasons)"

COUNTS: Final = (
    "published",
    "received",
    "acked",
    "nacked",
    "dead_lettered",
    "expired",
    "purged",
)


class BucketRow(msgspec.Struct):
    queue: Name
    bucket_s: Int32
    start_s: int
    """The bucket's start, in seconds since the epoch, a multiple of ``bucket_s``."""
    published: int = 0
    received: int = 0
    acked: int = 0
    nacked: int = 0
    dead_lettered: int = 0
    expired: int = 0
    purged: int = 0
    dwell: str = ""
    """The dwell-time sketch (seconds) of the messages acked in the bucket, as JSON."""
    nack_reasons: str = "{}"
    """JSON: reason → count."""


class PendingRow(msgspec.Struct):
    message_id: Annotated[str, Meta(max_length=64)]
    published_at: int
    """Microseconds since the epoch."""


ANALYTICS_BUCKETS: Final = Table(
    "analytics_buckets",
    BucketRow,
    key=("queue", "bucket_s", "start_s"),
    indexes=(("bucket_s", "start_s"),),
)
ANALYTICS_PENDING: Final = Table(
    "analytics_pending", PendingRow, key=("message_id",), indexes=(("published_at",),)
)


class Tally:
    """What happened in one bucket, being summed: the counts, the dwell sketch and the nack
    reasons. Tallies merge (``add``) in any order to the same result."""

    __slots__ = ("counts", "dwell", "reasons")

    def __init__(self) -> None:
        self.counts = dict.fromkeys(COUNTS, 0)
        self.dwell = Sketch()
        self.reasons: dict[str, int] = {}

    def add(self, other: Tally) -> None:
        for name, count in other.counts.items():
            self.counts[name] += count
        self.dwell.merge(other.dwell)
        for reason, count in other.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + count

    def nacked(self, reason: str | None) -> None:
        self.counts["nacked"] += 1
        if reason:
            text = reason[:REASON_CHARS]
            self.reasons[text] = self.reasons.get(text, 0) + 1

    @classmethod
    def of(cls, row: BucketRow) -> Tally:
        tally = cls()
        for name in COUNTS:
            tally.counts[name] = getattr(row, name)
        if row.dwell:
            tally.dwell = sketch.decode(row.dwell)
        tally.reasons = json.loads(row.nack_reasons)
        return tally

    def row(self, queue: str, bucket_s: int, start_s: int) -> BucketRow:
        return BucketRow(
            queue,
            bucket_s,
            start_s,
            **self.counts,
            dwell=sketch.encode(self.dwell) if self.dwell.count else "",
            nack_reasons=json.dumps(capped(self.reasons), sort_keys=True),
        )


def capped(reasons: dict[str, int]) -> dict[str, int]:
    """At most ``MAX_REASONS`` reasons, the most frequent (ties by text); the rest summed
    under ``OTHER``. Exact until a bucket sees more distinct reasons than that."""
    if len(reasons) <= MAX_REASONS:
        return reasons
    ranked = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    kept = dict(ranked[: MAX_REASONS - 1])
    kept[OTHER] = kept.get(OTHER, 0) + sum(count for _, count in ranked[MAX_REASONS - 1 :])
    return kept
