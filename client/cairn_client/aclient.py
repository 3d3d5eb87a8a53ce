"""``AsyncClient``: the asyncio client. Its operations are ``Api``'s, awaited; what is its own
is how they run (``AsyncDriver``), consuming with tasks, and closing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
import msgspec

from cairn_client.api import Api
from cairn_client.client import limits
from cairn_client.deliveries import AsyncDelivery, Deliveries
from cairn_client.drivers import AsyncDriver
from cairn_client.runners import AsyncRunner
from cairn_client.steps import Program, Stream
from cairn_client.tasks import IN_HANDLER, TaskConsumer

T = TypeVar("T")


class AsyncClient(Api, AsyncRunner):
    """An asyncio client for a Cairn broker at ``url``: the same operations as ``Client``,
    awaited (``follow`` and ``list_messages`` are async iterators). ``token``, ``retries``
    and ``timeout`` as for ``Client``."""

    _receive_answer = msgspec.json.Decoder(Deliveries[AsyncDelivery])

    def _open(self) -> None:
        self._driver = AsyncDriver(httpx.AsyncClient(limits=limits()))
        self._consumers: set[TaskConsumer] = set()

    async def _run(self, program: Program[T]) -> T:
        return await self._driver.run(program)

    def _iterate(self, program: Stream[T]) -> AsyncGenerator[T, None]:
        return self._driver.iterate(program)

    async def consume(
        self,
        queue: str,
        handler: Callable[[AsyncDelivery], Awaitable[Any]],
        concurrency: int = 4,
        *,
        visibility_timeout_s: int = 30,
        wait_s: float = 5.0,
    ) -> None:
        """As ``Client.consume``, with an async ``handler``, up to ``concurrency`` at once, as
        tasks; returns once stopped."""
        consumer = TaskConsumer(self, queue, handler, concurrency, visibility_timeout_s, wait_s)
        self._consumers.add(consumer)
        try:
            await consumer.run()
        finally:
            self._consumers.discard(consumer)

    async def stop(self) -> None:
        """Stop every ``consume`` of this client, and wait until they have: no new receive,
        running handlers finished. (Called from a handler, it does not wait for itself.)"""
        consumers = list(self._consumers)
        for consumer in consumers:
            consumer.stop()
        if not IN_HANDLER.get():
            await asyncio.gather(*(consumer.done.wait() for consumer in consumers))

    async def aclose(self) -> None:
        await self._driver.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
