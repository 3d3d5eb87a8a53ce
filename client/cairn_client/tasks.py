"""``AsyncClient.consume``: a task per running handler, one task that keeps their leases, and
the calling task receiving (see ``consuming.py`` for the rules both consumers follow)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Final

from cairn_client import consuming
from cairn_client.errors import CairnError, ConnectionFailed

if TYPE_CHECKING:
    from cairn_client.aclient import AsyncClient
    from cairn_client.deliveries import AsyncDelivery

IN_HANDLER: Final[contextvars.ContextVar[bool]] = contextvars.ContextVar(
    "cairn_client_in_handler", default=False
)
"""Set inside handlers, so that a handler that stops its own consumer does not wait for
itself to finish."""


class TaskConsumer(
    consuming.Consumer[
        "AsyncClient", "AsyncDelivery", Callable[["AsyncDelivery"], Awaitable[object]]
    ]
):
    _client: AsyncClient

    def _prepare(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._leases_changed = asyncio.Event()
        self._finished = False
        self.done = asyncio.Event()
        """Set once it has stopped, every handler finished."""

    def stop(self) -> None:
        self._stopping.set()
        self._slot_freed.set()

    async def run(self) -> None:
        consuming.log_started(self._queue, self._concurrency)
        keeper = asyncio.create_task(self._keep_leases())
        try:
            with self._stop_on_signals():
                try:
                    await self._poll()
                finally:
                    consuming.log_stopping(self._queue, len(self._tasks))
                    if self._tasks:
                        await asyncio.wait(self._tasks)
        finally:
            self._finished = True
            self._leases_changed.set()
            await keeper
            self.done.set()

    async def _poll(self) -> None:
        while True:
            while not self._stopping.is_set() and len(self._tasks) >= self._concurrency:
                self._slot_freed.clear()
                await self._slot_freed.wait()
            if self._stopping.is_set():
                return
            free = self._concurrency - len(self._tasks)
            try:
                deliveries = await self._client.receive(self._queue, **self._batch(free))
            except Exception as error:
                self._receive_failed(error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), consuming.RECEIVE_PAUSE_S)
                continue
            if self._stopping.is_set():
                for delivery in deliveries:
                    await self._settle(delivery, consuming.RELEASE_REASON)
                return
            now = time.monotonic()
            for delivery in deliveries:
                self._leases.add(delivery, now)
                task = asyncio.create_task(self._handle(delivery))
                self._tasks.add(task)
                task.add_done_callback(self._handled)
            self._leases_changed.set()

    def _handled(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slot_freed.set()

    async def _handle(self, delivery: AsyncDelivery) -> None:
        IN_HANDLER.set(True)
        reason = None
        try:
            await self._handler(delivery)
        except Exception as error:
            consuming.log_handler_failed(delivery, error)
            reason = consuming.reason_of(error)
        finally:  # settled or not, its lease is no longer extended
            self._leases.remove(delivery)
        await self._settle(delivery, reason)

    @staticmethod
    async def _settle(delivery: AsyncDelivery, nack_reason: str | None) -> None:
        """Ack, or nack with a reason; unless the handler settled the message itself."""
        if delivery.settled:
            return
        try:
            if nack_reason is None:
                await delivery.ack()
            else:
                await delivery.nack(reason=nack_reason)
        except (CairnError, ConnectionFailed) as error:
            consuming.settle_failed(delivery, "ack" if nack_reason is None else "nack", error)

    async def _keep_leases(self) -> None:
        while not self._finished:
            for delivery in self._leases.due(time.monotonic()):
                try:
                    await delivery.extend(self._lease_s)
                except (CairnError, ConnectionFailed) as error:
                    consuming.extend_failed(delivery, error, delivery in self._leases)
            # No await between looking at what is due and clearing: no wake-up is missed.
            self._leases_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._leases_changed.wait(), self._leases.wait(time.monotonic())
                )

    @contextlib.contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """SIGINT and SIGTERM stop the consumer, when its loop runs in the main thread."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        previous = {number: signal.getsignal(number) for number in consuming.STOP_SIGNALS}

        def unhook() -> None:
            for number in consuming.STOP_SIGNALS:
                loop.remove_signal_handler(number)
            consuming.restore_signals(previous)

        def on_signal(number: int) -> None:
            unhook()  # a second signal does what it did before
            consuming.log.info("cairn_client received %s", signal.Signals(number).name)
            self.stop()

        try:
            for number in consuming.STOP_SIGNALS:
                loop.add_signal_handler(number, on_signal, number)
        except NotImplementedError:  # an event loop without signal support (Windows)
            yield
            return
        try:
            yield
        finally:
            unhook()
