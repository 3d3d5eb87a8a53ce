from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from broker.commands import AnyCommand, CreateQueue, QueueSettings
from broker.decide import Reply
from broker.events import AnyEvent
from broker.state import MessageState
from broker.store.memory import MemoryEventStore
from broker.writer import Writer
from tests.helpers import Counter, FakeClock


class Broker:
    """The write side in process: a writer over the in-memory store, on a clock we move."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.store = MemoryEventStore()
        self.writer = Writer(
            self.store, clock=self.clock, new_id=Counter("id"), new_receipt=Counter("receipt")
        )

    async def run(self, command: AnyCommand) -> Reply:
        return await self.writer.execute(command)

    async def create(self, name: str, **settings: Any) -> None:
        await self.run(CreateQueue(queue=name, settings=QueueSettings(**settings)))

    async def events(self) -> list[AnyEvent]:
        return [stored.event() for stored in await self.store.read(0, 1_000_000)]

    async def types(self) -> list[str]:
        return [stored.type for stored in await self.store.read(0, 1_000_000)]

    async def message(self, message_id: str) -> MessageState | None:
        return await self.store.transact(lambda tx: tx.message(message_id))


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    running = Broker()
    await running.writer.start()
    yield running
    await running.writer.stop()
