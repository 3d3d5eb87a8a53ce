"""The projector runner: feeds each projector the log in position order from its checkpoint.

Each batch is applied and the checkpoint moved in one transaction, so a crash at any point
neither skips nor repeats an event. Several processes may run a runner on the same database
(``--workers N``): a batch is read outside the transaction, then applied only if the
checkpoint is still where it was read (optimistic concurrency); otherwise it is dropped and
read again. Everything a projector wrote is derived, so a rebuild is: reset its tables and its
checkpoint in one transaction, then catch up. A projector that fails at an event is retried
without holding the others back, and said to be stuck (``failures.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import structlog

from broker.errors import StoreUnavailableError
from broker.events import StoredEvent
from broker.notify import Watermark
from broker.ports import EventStore
from broker.store.sql import Database, Sql
from projections import failures

log = structlog.get_logger(component="cairn.projections")


class Projector(Protocol):
    @property
    def name(self) -> str:
        """The projector's stable name: its checkpoint's key, and what ``rebuild`` takes."""

    def apply(self, conn: Sql, batch: list[StoredEvent]) -> None:
        """Apply ``batch`` (contiguous, in position order) inside the caller's transaction."""

    def reset(self, conn: Sql) -> None:
        """Empty the projector's tables, inside the caller's transaction."""


def checkpoint(conn: Sql, name: str) -> int:
    """The last position projector ``name`` applied, as the transaction ``conn`` sees it."""
    [(position,)] = conn.query("SELECT position FROM projection_checkpoints WHERE name = ?", [name])
    return int(position)


class ProjectionRunner:
    def __init__(
        self,
        store: EventStore,
        database: Database,
        projectors: Sequence[Projector],
        *,
        batch_size: int = 2000,
        coalesce_s: float = 0.0,
    ) -> None:
        self._store = store
        self._db = database
        self._projectors = {p.name: p for p in projectors}
        self._batch_size = batch_size
        self._coalesce_s = coalesce_s
        self.watermarks = {p.name: Watermark() for p in projectors}
        self._failures = failures.Failures()
        self.on_step: Callable[[], Awaitable[None]] | None = None
        """Called after each batch is committed: other processes waiting on the checkpoints
        are told (``api/runtime.py``)."""

    @property
    def names(self) -> list[str]:
        return list(self._projectors)

    async def start(self) -> None:
        """Make sure every checkpoint row exists and load where each projector stands."""

        def ensure(conn: Sql) -> None:
            conn.executemany(
                "INSERT INTO projection_checkpoints (name, position) VALUES (?, 0)"
                " ON CONFLICT (name) DO NOTHING",
                [(name,) for name in self._projectors],
            )

        await self._db.transaction(ensure)
        await self.refresh()

    async def refresh(self) -> None:
        """Set each watermark to its stored checkpoint: forward when another process moved
        it, and back when a rebuild rewound it (reads must not claim a position the read
        model no longer reflects, and an idle runner must notice it has work again)."""
        for name, position in (await self.checkpoints()).items():
            watermark = self.watermarks.get(name)
            if watermark is not None:
                watermark.rewind(position)
                watermark.advance(position)

    async def checkpoints(self) -> dict[str, int]:
        def read(conn: Sql) -> dict[str, int]:
            rows = conn.query("SELECT name, position FROM projection_checkpoints")
            return {row[0]: int(row[1]) for row in rows}

        return await self._db.snapshot(read)

    async def step(self, name: str) -> int:
        """Apply one batch to projector ``name``; returns how many events it applied. When an
        event of the batch fails, the events before it are applied and its error raised."""
        after = self.watermarks[name].value
        # A projector known to fail at the next event tries that one alone: the retry of a
        # stuck projection costs one transaction, not a batch halved down to it again.
        limit = 1 if self._failures.position(name) == after + 1 else self._batch_size
        batch = await self._store.read(after, limit)
        if not batch:
            return 0
        try:
            return await self._apply_up_to_failure(name, batch)
        finally:
            # What was applied is told, also when a later event of the batch failed.
            if self.watermarks[name].value > after and self.on_step is not None:
                await self.on_step()

    async def _apply_up_to_failure(self, name: str, batch: list[StoredEvent]) -> int:
        try:
            return await self._apply(name, batch)
        except Exception as error:
            if len(batch) == 1 or not await self._answers(name, error):
                raise
            failed = error
        # Halve it until the event that fails is alone: the read model gets as far as it can,
        # and the failure names the very event.
        half = len(batch) // 2
        applied = await self._apply_up_to_failure(name, batch[:half])
        if applied < half:  # another runner moved the checkpoint
            return applied
        applied += await self._apply_up_to_failure(name, batch[half:])
        # Every event applied in smaller batches: the error was transient, or a projector
        # folds a batch differently from its parts (a bug; tests/integration/
        # test_projectors_batching.py hunts for them). Either way, say so.
        log.warning(
            "projection_batch_split",
            projection=name,
            first=batch[0].position,
            last=batch[-1].position,
            error=f"{type(failed).__name__}: {failed}",
        )
        return applied

    async def _answers(self, name: str, error: Exception) -> bool:
        """Whether the database answers after ``error``: a database that is down fails every
        half of a batch too, each after a connection timeout, so halving would only wait. (A
        driver error may also be about the batch's rows, hence the look.)"""
        if not isinstance(error, StoreUnavailableError):
            return True
        try:
            await self._db.snapshot(lambda conn: checkpoint(conn, name))
        except StoreUnavailableError:
            return False
        return True

    async def _apply(self, name: str, batch: list[StoredEvent]) -> int:
        """Apply ``batch`` and move the checkpoint in one transaction, if the checkpoint is
        still where this process last saw it; how many events it applied."""
        projector = self._projectors[name]
        watermark = self.watermarks[name]
        after = watermark.value
        last = batch[-1].position

        def apply(conn: Sql) -> int:
            # Lock the checkpoint's row before reading it: two runners (a server's projector and
            # a `cairn projections rebuild`) that both read the old checkpoint under
            # PostgreSQL's READ COMMITTED would both apply the batch (a duplicate key). The
            # second now waits for the first's COMMIT, then reads where it got to. (SQLite's
            # one writer already serialises the two.)
            conn.execute("UPDATE projection_checkpoints SET name = name WHERE name = ?", [name])
            stored = checkpoint(conn, name)
            if stored != after:
                return stored  # moved by another runner: nothing applied
            projector.apply(conn, batch)
            conn.execute(
                f"UPDATE projection_checkpoints SET position = ?, {failures.CLEARED}"
                " WHERE name = ?",
                [last, name],
            )
            return last

        reached = await self._db.transaction(apply)
        if reached == last:
            watermark.advance(last)
            return len(batch)
        if reached < after:  # reset by a rebuild elsewhere: follow it from the start
            watermark.rewind(reached)
            log.info("projection_reset_seen", projection=name, position=reached)
        else:
            watermark.advance(reached)
        return 0

    async def catch_up(self, name: str | None = None) -> int:
        """Apply every event already in the log; returns how many were applied."""
        total = 0
        for each in [name] if name else list(self._projectors):
            while applied := await self.step(each):
                total += applied
        return total

    async def reset(self, name: str) -> None:
        """Empty one projector's read model and rewind its checkpoint, atomically."""
        projector = self._projectors[name]

        def reset(conn: Sql) -> None:
            conn.execute(
                f"UPDATE projection_checkpoints SET position = 0, {failures.CLEARED}"
                " WHERE name = ?",
                [name],
            )
            projector.reset(conn)

        await self._db.transaction(reset)
        self.watermarks[name].rewind(0)

    async def stuck(self) -> list[failures.Stuck]:
        """The projections stuck at an event (``projections/failures.py``), whichever process
        or node runs them."""
        return [s for s in await self._db.snapshot(failures.stuck) if s.projection in self.names]

    async def run(self, head: Watermark, *, idle_timeout: float = 1.0) -> None:
        """Follow the log for ever: catch up, then sleep until the head moves past us. A
        projector that fails is retried every ``idle_timeout`` and holds none of the others
        back."""
        while True:
            for name in self._projectors:
                if self._failures.due(name):
                    await self._follow(name, idle_timeout)
            with contextlib.suppress(StoreUnavailableError):  # the next step says so
                await self.refresh()
            healthy = [w.value for n, w in self.watermarks.items() if not self._failures.failing(n)]
            if not healthy:
                await asyncio.sleep(idle_timeout)
            elif await head.wait_for(min(healthy) + 1, idle_timeout) and self._coalesce_s:
                # Under load, let a few commits pile up: one transaction for many of them
                # costs far less than one per commit.
                await asyncio.sleep(self._coalesce_s)

    async def _follow(self, name: str, retry_in: float) -> None:
        """Catch ``name`` up; note a failure (and record it, for ``/readyz``) or a recovery."""
        try:
            while await self.step(name):
                pass
        except Exception as error:  # whatever it is, the other projections go on
            position = self.watermarks[name].value + 1
            if self._failures.failed(name, position, error, retry_in):
                with contextlib.suppress(Exception):  # the database itself failing: next time
                    await self._db.transaction(lambda conn: self._failures.record(conn, name))
            return
        self._failures.recovered(name, self.watermarks[name].value)
