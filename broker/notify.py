"""In-process signals: how a commit wakes long polls, projectors and feeds without polling."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class Watermark:
    """A value that only grows (a log head, a projection checkpoint), and waiters for it."""

    def __init__(self, value: int = 0) -> None:
        self._value = value
        self._changed = asyncio.Event()

    @property
    def value(self) -> int:
        return self._value

    def advance(self, value: int) -> None:
        if value > self._value:
            self._value = value
            # Wake every current waiter, then start a fresh event for the next ones.
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()

    def rewind(self, value: int) -> None:
        """Move back (a projection being rebuilt); waiters keep waiting for their value."""
        self._value = min(self._value, value)

    async def wait_for(self, value: int, wait_s: float) -> bool:
        """Wait until the watermark reaches ``value``; False if ``wait_s`` passed first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while self._value < value:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return self._value >= value
        return True


class QueueSignals:
    """Per-queue wake-ups for long polls. Listen *before* looking, then wait: a change that
    lands between the look and the wait has already set the event, so it is never missed."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def listen(self, queue: str) -> asyncio.Event:
        event = self._events.get(queue)
        if event is None:
            event = self._events[queue] = asyncio.Event()
        return event

    def notify(self, queues: Iterable[str]) -> None:
        for queue in queues:
            event = self._events.pop(queue, None)
            if event is not None:
                event.set()

    def notify_all(self) -> None:
        """Wake every listener (a change whose queues are unknown, e.g. another process's)."""
        events, self._events = self._events, {}
        for event in events.values():
            event.set()
