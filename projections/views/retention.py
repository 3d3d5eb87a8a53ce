"""History retention (``--history-retention``, API.md v1.2): finished messages leave the read
models, history and all, once they have been finished for the retention, and so do the versions
of rows that stopped holding before then. As-of reads are served from ``as_of_from``, the
position from which every version a read needs is still here.

By the time of the events, not the clock (as the analytics buckets are pruned): a rebuild
prunes what the incremental model did, and an idle broker changes nothing. The time of a
position is found in a small clock of its own (the first position of each time bucket), so the
projector never reads the log for it; a bucket spans at most a hundredth of the retention (and
at most a minute), which is how much longer than the retention anything may stay.

What leaves is counted first: the totals an as-of read shows (acked, dead-lettered, expired,
published) are the versions still here plus a per-queue baseline of those pruned, so a total
read at or after ``as_of_from`` is the same as before the pruning.

Work is bounded per batch (``chunk`` rows of each kind): a backlog, as after an upgrade or a
lowered retention, is worked off over the next batches. ``as_of_from`` moves with the retention
all the same: what is left of the backlog held only before it.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta

from broker.events import StoredEvent
from broker.state import to_us
from broker.store.sql import Sql, each_one_of
from broker.store.tables import Table

FINISHED: Final = ("acked", "dead_lettered", "expired", "redriven")
"""Statuses no event changes again. ``purged`` is one too, but an undo may bring the message
back while its queue's retention lasts: see ``PURGED_KEPT_S``."""
PURGED_KEPT_S: Final = 14 * 86400
"""A purged message may be restored by an undo until its retention (at most 14 days from its
publish) ends; its row stays at least that long, so the undo finds it."""
_US: Final = 1_000_000
_TOTALS: Final = ("acked", "dead_lettered", "expired")


class ClockRow(msgspec.Struct):
    bucket: int
    """``at`` (microseconds) // the bucket's width."""
    position: int
    """The first position of the bucket."""


class BaselineRow(msgspec.Struct):
    queue_id: int
    published: int = 0
    acked: int = 0
    dead_lettered: int = 0
    expired: int = 0
    last_position: int = 0
    """The latest ``from_position`` of a pruned version of the queue's messages."""


class HorizonRow(msgspec.Struct):
    name: Annotated[str, Meta(max_length=16)]
    position: int = 0
    """``as_of_from``: every version holding at or after it is kept."""


HISTORY_CLOCK: Final = Table("history_clock", ClockRow, key=("bucket",))
HISTORY_BASELINE: Final = Table("history_baselines", BaselineRow, key=("queue_id",))
HISTORY_HORIZON: Final = Table("history_horizon", HorizonRow, key=("name",))
_VIEWS: Final = "views"


def bucket_us(retention_s: float) -> int:
    """The width of a clock bucket: a hundredth of the retention, within 1 s .. 60 s."""
    return int(min(60.0, max(1.0, retention_s / 100)) * _US)


class HistoryRetention:
    def __init__(self, retention_s: float, *, chunk: int = 2000) -> None:
        self.retention_us = int(retention_s * _US)
        self.width = bucket_us(retention_s)
        self.chunk = chunk

    def after_batch(self, conn: Sql, batch: list[StoredEvent]) -> None:
        """Record the batch's times, then prune what the retention lets go, up to ``chunk``
        rows of each kind."""
        if not batch:
            return
        latest = 0
        firsts: dict[int, int] = {}
        for stored in batch:
            at = to_us(datetime.fromisoformat(stored.at))
            latest = max(latest, at)
            firsts.setdefault(at // self.width, stored.position)
        conn.executemany(
            f"INSERT INTO {HISTORY_CLOCK.name} (bucket, position) VALUES (?, ?)"
            " ON CONFLICT (bucket) DO NOTHING",
            list(firsts.items()),
        )
        horizon_bucket = (latest - self.retention_us) // self.width
        found = conn.query(
            f"SELECT position FROM {HISTORY_CLOCK.name} WHERE bucket >= ? ORDER BY bucket LIMIT 1",
            [horizon_bucket],
        )
        target = int(found[0][0])  # the batch's own bucket is there at least
        # The horizon moves only when the clock knows events older than the retention (it
        # drops their buckets now): before that, nothing is known to be old enough, be it a
        # young log or one the projector met only now (an upgraded store, whose earlier events
        # the clock never saw), and every as-of read is still served.
        trimmed = conn.execute(
            f"DELETE FROM {HISTORY_CLOCK.name} WHERE bucket < ?", [horizon_bucket]
        )
        kept_from = as_of_from(conn)
        if trimmed and target > kept_from:
            kept_from = target
            conn.execute(HISTORY_HORIZON.upsert, HISTORY_HORIZON.values(HorizonRow(_VIEWS, target)))
        if not kept_from:
            return
        # Every batch prunes (a few indexed look-ups when there is nothing to do), so a
        # backlog is worked off even while the horizon stands still.
        baseline = _Baseline()
        self._prune_finished(conn, kept_from, latest, baseline)
        self._prune_versions(conn, kept_from, baseline)
        baseline.write(conn)

    def _prune_finished(self, conn: Sql, target: int, latest: int, baseline: _Baseline) -> None:
        """Message rows finished before ``target`` (purged ones also past any retention),
        with every version of theirs."""
        statuses = ", ".join(f"'{s}'" for s in FINISHED)
        ids = [
            str(r[0])
            for r in conn.query(
                f"SELECT message_id FROM message_views WHERE status IN ({statuses})"
                " AND updated_position < ? ORDER BY updated_position LIMIT ?",
                [target, self.chunk],
            )
        ]
        ids += [
            str(r[0])
            for r in conn.query(
                "SELECT message_id FROM message_views WHERE status = 'purged'"
                " AND updated_position < ? AND published_at < ? ORDER BY updated_position LIMIT ?",
                [target, latest - PURGED_KEPT_S * _US, self.chunk],
            )
        ]
        for where, params in each_one_of(conn, "message_id", ids):
            baseline.count(
                conn.query(
                    "SELECT queue_id, status, from_position, position FROM message_versions"
                    f" WHERE {where}",
                    params,
                )
            )
            conn.execute(f"DELETE FROM message_versions WHERE {where}", params)
            conn.execute(f"DELETE FROM message_views WHERE {where}", params)

    def _prune_versions(self, conn: Sql, target: int, baseline: _Baseline) -> None:
        """Versions that stopped holding at or before ``target``, oldest first. (A read at or
        after ``target`` needs none of them, pruned yet or not: ``as_of_from`` may say
        ``target`` at once, whatever backlog is left.)"""
        rows = conn.query(
            "SELECT queue_id, status, from_position, position, message_id"
            " FROM message_versions WHERE to_position <= ? ORDER BY to_position LIMIT ?",
            [target, self.chunk],
        )
        baseline.count([r[:4] for r in rows])
        conn.executemany(
            "DELETE FROM message_versions WHERE message_id = ? AND from_position = ?",
            [(r[4], r[2]) for r in rows],
        )
        conn.execute("DELETE FROM queue_versions WHERE to_position <= ?", [target])


class _Baseline:
    """What one batch's pruning takes from each queue's totals, to add to its baseline."""

    def __init__(self) -> None:
        self.gone: dict[int, BaselineRow] = defaultdict(lambda: BaselineRow(queue_id=0))

    def count(self, versions: list[tuple[Any, ...]]) -> None:
        """``versions``: (queue_id, status, from_position, position) of each pruned one."""
        for queue_id, status, from_position, position in versions:
            row = self.gone[int(queue_id)]
            start = int(from_position)
            if status in _TOTALS:
                setattr(row, status, getattr(row, status) + 1)
            elif status == "ready" and start == int(position):
                row.published += 1  # its first version: where it was published
            row.last_position = max(row.last_position, start)

    def write(self, conn: Sql) -> None:
        if not self.gone:
            return
        stored = {
            row.queue_id: row
            for where, params in each_one_of(conn, "queue_id", sorted(self.gone))
            for row in HISTORY_BASELINE.load_all(
                conn.query(f"{HISTORY_BASELINE.select} WHERE {where}", params)
            )
        }
        merged: list[BaselineRow] = []
        for queue_id, gone in self.gone.items():
            row = stored.get(queue_id, BaselineRow(queue_id=queue_id))
            row.published += gone.published
            row.acked += gone.acked
            row.dead_lettered += gone.dead_lettered
            row.expired += gone.expired
            row.last_position = max(row.last_position, gone.last_position)
            merged.append(row)
        conn.executemany(HISTORY_BASELINE.upsert, [HISTORY_BASELINE.values(r) for r in merged])


def as_of_from(conn: Sql) -> int:
    """The first position an as-of read is served at (0: nothing was pruned yet)."""
    rows = conn.query(f"SELECT position FROM {HISTORY_HORIZON.name} WHERE name = ?", [_VIEWS])
    return int(rows[0][0]) if rows else 0


def baseline(conn: Sql, queue_id: int) -> BaselineRow:
    rows = conn.query(f"{HISTORY_BASELINE.select} WHERE queue_id = ?", [queue_id])
    return HISTORY_BASELINE.load(rows[0]) if rows else BaselineRow(queue_id=queue_id)
