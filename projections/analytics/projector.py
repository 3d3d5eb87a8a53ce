"""The ``analytics`` projector: counts each event into its queue's 10 s bucket, then merges the
batch's 10 s tallies into the 60 s, 300 s and 3600 s buckets they belong to (coarse buckets are
merges of fine ones, never recomputed from raw rows), in the runner's one transaction.

It reads only the envelope of most events (type, time, queue, message id): the body of a
publish is never decoded, so the projection costs little per event.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Final

import msgspec

from broker.events import StoredEvent
from broker.state import to_us
from broker.store.sql import Sql, each_one_of
from projections.analytics.buckets import (
    ANALYTICS_BUCKETS,
    ANALYTICS_PENDING,
    FINEST,
    PENDING_KEPT_S,
    PRUNED_AFTER_S,
    SIZES,
    Tally,
)

_US: Final = 1_000_000


class _Nacked(msgspec.Struct):
    reason: str | None = None


class _Purged(msgspec.Struct):
    purged: int = 0


_nacked: Final = msgspec.json.Decoder(_Nacked)
_purged: Final = msgspec.json.Decoder(_Purged)

_LEAVING: Final = frozenset(
    {"message.acked", "message.dead_lettered", "message.expired", "message.redriven"}
)
"""Events after which a message is no longer in its queue: its publish time is dropped."""
_COUNTED: Final = frozenset(
    {
        "message.published",
        "message.leased",
        "message.acked",
        "message.nacked",
        "message.dead_lettered",
        "message.expired",
        "queue.purged",
    }
)


class AnalyticsProjector:
    name: Final = "analytics"
    tables: Final = (ANALYTICS_BUCKETS, ANALYTICS_PENDING)

    def __init__(self, history_retention_s: float | None = None) -> None:
        self.coarse_kept_s = history_retention_s
        """How long the buckets the contract keeps "for the history retention" (5 minutes,
        an hour) stay; None: for good."""

    def apply(self, conn: Sql, batch: list[StoredEvent]) -> None:
        tallies: dict[tuple[str, int], Tally] = defaultdict(Tally)
        published: dict[str, int] = {}
        leaving: list[str] = []
        acks: list[tuple[Tally, str, int, int]] = []
        clock = _Clock()
        for stored in batch:
            kind = stored.type
            message_id = stored.message_id
            if kind in _LEAVING:
                assert message_id is not None
                leaving.append(message_id)
            if kind not in _COUNTED:
                continue  # leases extended or expired, queue settings, ...: nothing counted
            # Had the batch been cut just before this event, the publish times older than
            # this would have been pruned already (``_prune``): an ack must not find them here
            # either, so that where batches are cut changes nothing.
            kept_from = clock.latest - PENDING_KEPT_S * _US
            at = clock.us(stored.at)
            tally = tallies[(stored.queue, at // _US // FINEST * FINEST)]
            match kind:
                case "message.published":
                    assert message_id is not None
                    tally.counts["published"] += 1
                    published[message_id] = at
                case "message.leased":
                    tally.counts["received"] += 1
                case "message.acked":
                    assert message_id is not None
                    tally.counts["acked"] += 1
                    acks.append((tally, message_id, at, kept_from))
                case "message.nacked":
                    tally.nacked(_nacked.decode(stored.data).reason)
                case "message.dead_lettered":
                    tally.counts["dead_lettered"] += 1
                case "message.expired":
                    tally.counts["expired"] += 1
                case "queue.purged":
                    tally.counts["purged"] += _purged.decode(stored.data).purged

        since = _published_at(conn, {m for _, m, _, _ in acks if m not in published})
        for tally, message_id, at, kept_from in acks:
            start = published.get(message_id, since.get(message_id))
            if start is not None and start >= kept_from:
                tally.dwell.add((at - start) / _US)
            # else published before what is kept (a lease extended for weeks): no sample

        gone = set(leaving)
        conn.executemany(
            ANALYTICS_PENDING.insert,
            [(m, at) for m, at in published.items() if m not in gone],
        )
        _delete_pending(conn, sorted(gone - published.keys()))
        for size in SIZES:
            _merge_into(conn, size, tallies)
        if clock.latest:
            _prune(conn, clock.latest, self.coarse_kept_s)

    def reset(self, conn: Sql) -> None:
        for table in self.tables:
            conn.execute(f"DELETE FROM {table.name}")


class _Clock:
    """Event times in microseconds; a group commit's events share one time, parsed once."""

    def __init__(self) -> None:
        self._text = ""
        self._us = 0
        self.latest = 0

    def us(self, text: str) -> int:
        if text != self._text:
            self._text, self._us = text, to_us(datetime.fromisoformat(text))
            self.latest = max(self.latest, self._us)
        return self._us


def _published_at(conn: Sql, ids: set[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for where, params in each_one_of(conn, "message_id", sorted(ids)):
        sql = f"SELECT message_id, published_at FROM {ANALYTICS_PENDING.name} WHERE {where}"
        found.update((row[0], int(row[1])) for row in conn.query(sql, params))
    return found


def _delete_pending(conn: Sql, ids: list[str]) -> None:
    for where, params in each_one_of(conn, "message_id", ids):
        conn.execute(f"DELETE FROM {ANALYTICS_PENDING.name} WHERE {where}", params)


def _merge_into(conn: Sql, size: int, fine: dict[tuple[str, int], Tally]) -> None:
    """Add the batch's fine tallies into the stored buckets of ``size``."""
    merged: dict[tuple[str, int], Tally] = defaultdict(Tally)
    for (queue, start), tally in fine.items():
        merged[(queue, start // size * size)].add(tally)
    by_queue: dict[str, list[int]] = defaultdict(list)
    for queue, start in merged:
        by_queue[queue].append(start)
    for queue, starts in by_queue.items():
        rows = conn.query(
            f"{ANALYTICS_BUCKETS.select} WHERE queue = ? AND bucket_s = ?"
            " AND start_s BETWEEN ? AND ?",
            [queue, size, min(starts), max(starts)],
        )
        for row in ANALYTICS_BUCKETS.load_all(rows):
            if (queue, row.start_s) in merged:
                stored = Tally.of(row)
                stored.add(merged[(queue, row.start_s)])
                merged[(queue, row.start_s)] = stored
    conn.executemany(
        ANALYTICS_BUCKETS.upsert,
        [
            ANALYTICS_BUCKETS.values(tally.row(queue, size, start))
            for (queue, start), tally in merged.items()
        ],
    )


def _prune(conn: Sql, latest_us: int, coarse_kept_s: float | None) -> None:
    """Drop fine buckets past what is kept of them, and publish times older than any message
    stays unless its lease is extended for weeks. By the time of the events, not the clock:
    a bucket or publish time pruned is one that every cut of the log into batches prunes."""
    latest = latest_us // _US
    pruned = dict(PRUNED_AFTER_S)
    if coarse_kept_s is not None:
        # A bucket goes once all of it is older than the retention.
        pruned.update({size: int(coarse_kept_s) + size for size in SIZES if size not in pruned})
    for size, after in pruned.items():
        conn.execute(
            f"DELETE FROM {ANALYTICS_BUCKETS.name} WHERE bucket_s = ? AND start_s < ?",
            [size, latest - after],
        )
    conn.execute(
        f"DELETE FROM {ANALYTICS_PENDING.name} WHERE published_at < ?",
        [latest_us - PENDING_KEPT_S * _US],
    )
