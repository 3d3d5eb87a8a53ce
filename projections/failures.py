"""A projection that cannot apply an event: how the runner notes it, logs it and says so.

A projector that fails on an event (a bug, a read-model row damaged by hand) fails on it again
at every retry: the read side stops there while commands go on being answered. The runner
retries it once a second without holding the other projections back, and:

- logs it once a minute (``projection_failing``, with the error; the first time at a position
  with its traceback), not a traceback per retry, and ``projection_recovered`` when it passes;
- records the event it fails at, and since when, in the projection's checkpoint row. Every
  process reads that row, whichever process runs the projector: the workers beside the
  projector process (``--projector process``), and on PostgreSQL every node. ``/readyz`` is
  ``503`` while a projection has failed at the same event for more than ``STUCK_AFTER_S``. The
  batch that finally applies the event clears the row in the statement that moves the
  checkpoint past it, so a failure is never reported of an event already applied.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

import structlog

from broker.store.sql import Sql

log = structlog.get_logger(component="cairn.projections")

STUCK_AFTER_S: Final = 10.0
"""How long a projection may fail at one event before it counts as stuck (API.md v1.2)."""
LOG_EVERY_S: Final = 60.0

CLEARED: Final = "failing_position = NULL, failing_since = NULL"
"""What a checkpoint move sets beside the new position (see the module's docstring)."""


@dataclass(frozen=True)
class Stuck:
    projection: str
    position: int
    """The event it fails to apply."""
    for_s: float


@dataclass
class _Failing:
    position: int
    since: float
    """When it first failed at ``position`` (``time.time()``)."""
    logged_at: float
    """When it was last logged (``time.monotonic()``)."""
    retry_at: float
    recorded: bool = False


class Failures:
    """The projections that one runner fails to move, as its process sees them."""

    def __init__(self) -> None:
        self._failing: dict[str, _Failing] = {}

    def failing(self, name: str) -> bool:
        return name in self._failing

    def position(self, name: str) -> int | None:
        """The event ``name`` last failed to apply, if it is failing."""
        failing = self._failing.get(name)
        return None if failing is None else failing.position

    def due(self, name: str) -> bool:
        """Whether to try ``name`` now: it is not failing, or its retry time has come."""
        failing = self._failing.get(name)
        return failing is None or time.monotonic() >= failing.retry_at

    def failed(self, name: str, position: int, error: Exception, retry_in: float) -> bool:
        """Note that ``name`` failed to apply the event at ``position``, and log it if it is
        time to; True if the failure is not recorded in the database yet."""
        now = time.monotonic()
        failing = self._failing.get(name)
        first = failing is None or failing.position != position
        if failing is None or first:
            failing = _Failing(position, time.time(), logged_at=now, retry_at=0.0)
            self._failing[name] = failing
        if first or now - failing.logged_at >= LOG_EVERY_S:
            failing.logged_at = now
            log.error(
                "projection_failing",
                projection=name,
                position=position,
                error=f"{type(error).__name__}: {error}",
                failing_for_s=round(time.time() - failing.since, 1),
                exc_info=error if first else None,
            )
        failing.retry_at = now + retry_in
        return not failing.recorded

    def record(self, conn: Sql, name: str) -> None:
        """Write where ``name`` is stuck into its checkpoint row, keeping the time an earlier
        runner (another process, another node) recorded for the same event."""
        failing = self._failing[name]
        conn.execute(
            "UPDATE projection_checkpoints SET failing_position = ?, failing_since = ?"
            " WHERE name = ? AND position = ?"
            " AND (failing_position IS NULL OR failing_position <> ?)",
            [
                failing.position,
                int(failing.since * 1e6),
                name,
                failing.position - 1,
                failing.position,
            ],
        )
        failing.recorded = True

    def recovered(self, name: str, position: int) -> None:
        failing = self._failing.pop(name, None)
        if failing is not None:
            log.info(
                "projection_recovered",
                projection=name,
                position=position,
                failed_for_s=round(time.time() - failing.since, 1),
            )


def stuck(conn: Sql) -> list[Stuck]:
    """The projections that have failed at one event for more than ``STUCK_AFTER_S``, as
    their checkpoint rows say."""
    now = time.time()
    rows = conn.query(
        "SELECT name, failing_position, failing_since FROM projection_checkpoints"
        " WHERE failing_position IS NOT NULL ORDER BY name"
    )
    found = [Stuck(name, int(position), now - int(since) / 1e6) for name, position, since in rows]
    return [s for s in found if s.for_s > STUCK_AFTER_S]
