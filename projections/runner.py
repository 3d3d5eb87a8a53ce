"""The projector runner: feeds each projector the log in position order from its checkpoint.

Each batch is applied and the checkpoint moved in one transaction, so a crash at any point
neither skips nor repeats an event. Several processes may run a runner on the same database
(``--workers N``): a batch is read outside the transaction, then applied only if the
checkpoint is still where it was read (optimistic concurrency); otherwise it is dropped and
read again. Everything a projector wrote is derived, so a rebuild is: reset its tables and its
checkpoint in one transaction, then catch up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import structlog

from broker.events import StoredEvent
from broker.notify import Watermark
from broker.ports import EventStore
from broker.store.sql import Database, Sql

log = structlog.get_logger(component="cairn.projections")


class Projector(Protocol):
    @property
    def name(self) -> str:
        """The projector's stable name: its checkpoint's key, and what ``rebuild`` takes."""

    def apply(self, conn: Sql, batch: list[StoredEvent]) -> None:
        """Apply ``batch`` (contiguous, in position order) inside the caller's transaction."""

    def reset(self, conn: Sql) -> None:
        """Empty the projector's tables, inside the caller's transaction."""


class _Moved(Exception):
    """Another runner moved the checkpoint since the batch was read."""


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
        """Apply one batch to projector ``name``; returns how many events it applied."""
        projector = self._projectors[name]
        watermark = self.watermarks[name]
        after = watermark.value
        batch = await self._store.read(after, self._batch_size)
        if not batch:
            return 0
        last = batch[-1].position

        def apply(conn: Sql) -> int:
            [(stored,)] = conn.query(
                "SELECT position FROM projection_checkpoints WHERE name = ?", [name]
            )
            if stored != after:
                return int(stored)  # moved by another runner: nothing applied
            projector.apply(conn, batch)
            conn.execute(
                "UPDATE projection_checkpoints SET position = ? WHERE name = ?", [last, name]
            )
            return last

        reached = await self._db.transaction(apply)
        if reached == last:
            watermark.advance(last)
            if self.on_step is not None:
                await self.on_step()
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
            conn.execute("UPDATE projection_checkpoints SET position = 0 WHERE name = ?", [name])
            projector.reset(conn)

        await self._db.transaction(reset)
        self.watermarks[name].rewind(0)

    async def run(self, head: Watermark, *, idle_timeout: float = 1.0) -> None:
        """Follow the log for ever: catch up, then sleep until the head moves past us."""
        while True:
            try:
                await self.catch_up()
                await self.refresh()
            except Exception:
                log.exception("projection_failed")
                await asyncio.sleep(idle_timeout)
                continue
            behind = min(w.value for w in self.watermarks.values())
            if await head.wait_for(behind + 1, idle_timeout) and self._coalesce_s:
                # Under load, let a few commits pile up: one transaction for many of them
                # costs far less than one per commit.
                await asyncio.sleep(self._coalesce_s)
