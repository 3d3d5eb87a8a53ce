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
from collections.abc import Sequence
from typing import Protocol

import structlog
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from broker.notify import Watermark
from broker.ports import EventStore, StoredEvent

log = structlog.get_logger("cairn.projections")


class Projector(Protocol):
    @property
    def name(self) -> str:
        """The projector's stable name: its checkpoint's key, and what ``rebuild`` takes."""

    async def apply(self, conn: BaseDBAsyncClient, batch: list[StoredEvent]) -> None:
        """Apply ``batch`` (contiguous, in position order) inside the caller's transaction."""

    async def reset(self, conn: BaseDBAsyncClient) -> None:
        """Empty the projector's tables, inside the caller's transaction."""


class _Moved(Exception):
    """Another runner moved the checkpoint since the batch was read."""


class ProjectionRunner:
    def __init__(
        self, store: EventStore, projectors: Sequence[Projector], *, batch_size: int = 2000
    ) -> None:
        self._store = store
        self._projectors = {p.name: p for p in projectors}
        self._batch_size = batch_size
        self.watermarks = {p.name: Watermark() for p in projectors}

    @property
    def names(self) -> list[str]:
        return list(self._projectors)

    async def start(self) -> None:
        """Make sure every checkpoint row exists and load where each projector stands."""
        for name in self._projectors:
            async with in_transaction("default") as conn:
                await conn.execute_query(
                    "INSERT INTO projection_checkpoints (name, position) VALUES (?, 0)"
                    " ON CONFLICT (name) DO NOTHING",
                    [name],
                )
        await self.refresh()

    async def refresh(self) -> None:
        """Re-read checkpoints from the database (other processes may have moved them)."""
        for name, position in (await self.checkpoints()).items():
            if name in self.watermarks:
                self.watermarks[name].advance(position)

    async def checkpoints(self) -> dict[str, int]:
        async with in_transaction("default") as conn:
            rows = await conn.execute_query_dict(
                "SELECT name, position FROM projection_checkpoints"
            )
        return {row["name"]: int(row["position"]) for row in rows}

    async def step(self, name: str) -> int:
        """Apply one batch to projector ``name``; returns how many events it applied."""
        projector = self._projectors[name]
        watermark = self.watermarks[name]
        after = watermark.value
        batch = await self._store.read(after, self._batch_size)
        if not batch:
            return 0
        last = batch[-1].position
        try:
            async with in_transaction("default") as conn:
                # A write first: SQLite's deferred BEGIN takes the write lock here, waiting
                # for it, instead of failing to upgrade a read snapshot later.
                await conn.execute_query(
                    "UPDATE projection_checkpoints SET position = position WHERE name = ?",
                    [name],
                )
                rows = await conn.execute_query_dict(
                    "SELECT position FROM projection_checkpoints WHERE name = ?", [name]
                )
                stored = int(rows[0]["position"])
                if stored != after:
                    raise _Moved(stored)
                await projector.apply(conn, batch)
                await conn.execute_query(
                    "UPDATE projection_checkpoints SET position = ? WHERE name = ?", [last, name]
                )
        except _Moved as moved:
            stored = int(moved.args[0])
            if stored < after:  # reset by a rebuild elsewhere: follow it from the start
                watermark.rewind(stored)
                log.info("projection_reset_seen", projection=name, position=stored)
            else:
                watermark.advance(stored)
            return 0
        watermark.advance(last)
        return len(batch)

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
        async with in_transaction("default") as conn:
            await conn.execute_query(
                "UPDATE projection_checkpoints SET position = 0 WHERE name = ?", [name]
            )
            await projector.reset(conn)
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
            await head.wait_for(behind + 1, idle_timeout)
