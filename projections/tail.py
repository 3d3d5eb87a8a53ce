"""The live tail of the log, for feeds: one reader per process, fanned out to subscribers.

The tail follows the log from the head it found at start and hands every new event, in
position order with no gap, to every subscriber. Each event is encoded as an SSE frame once,
for all subscribers. It takes the events this process commits as the writer hands them over
(``offer``); it learns of other processes' from the head watcher (``Watermark``) and reads
them from the store; and, with Redis configured, it follows ``cairn:events``
(``RedisFollower``): an entry that continues the tail is used as it is; one that skips ahead
makes the tail read the missing positions from the store first. Redis only ever speeds the
tail up; the store is the truth.

A subscriber's buffer is bounded. One that falls too far behind is cut off from the live
stream (``Overflow``) rather than slowing the tail or anyone else; its feed then catches up from
the store and subscribes again, so nothing is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Final, Protocol

import msgspec
import structlog

from broker.events import StoredEvent
from broker.notify import Watermark
from broker.ports import EventStore, matches_types

log = structlog.get_logger(component="cairn.tail")

_LINE_BREAK: Final = re.compile(rb"\r\n|\r|\n")
_READ_BATCH: Final = 2000


@dataclass(frozen=True, slots=True)
class Frame:
    position: int
    type: str
    queue: str
    sse: bytes
    """``id``, ``event`` and ``data`` lines and the blank line that ends the event."""


def frame(position: int, type_: str, queue: str, event_json: bytes) -> Frame:
    # A body is stored exactly as sent, whitespace included; a line break inside it would end
    # the SSE data field early. Each line gets its own "data:" and the client joins them
    # with "\n" again, which changes nothing JSON-wise (raw breaks only occur as whitespace).
    data = _LINE_BREAK.sub(b"\ndata: ", event_json)
    sse = b"id: %d\nevent: %s\ndata: %s\n\n" % (position, type_.encode(), data)
    return Frame(position, type_, queue, sse)


def frame_of(stored: StoredEvent) -> Frame:
    return frame(stored.position, stored.type, stored.queue, stored.json())


class Overflow(Exception):
    """The subscriber fell too far behind and was cut off from the live tail."""


class Subscription:
    def __init__(self, tail: LogTail, capacity: int) -> None:
        self._tail = tail
        self._capacity = capacity
        self._frames: deque[Frame] = deque()
        self._ready = asyncio.Event()
        self.overflowed = False
        self.start = tail.position
        """Every event after this position reaches this subscription (until it overflows)."""

    def push(self, frames: list[Frame]) -> None:
        if len(self._frames) + len(frames) > self._capacity:
            self.overflowed = True
            self._frames.clear()
            self._tail.unsubscribe(self)
        else:
            self._frames.extend(frames)
        self._ready.set()

    async def take(self, wait_s: float) -> list[Frame]:
        """Every frame pending (waiting up to ``wait_s`` for one); ``Overflow`` if cut off."""
        if not self._frames and not self.overflowed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), wait_s)
        self._ready.clear()
        if self.overflowed:
            raise Overflow
        frames = list(self._frames)
        self._frames.clear()
        return frames

    def close(self) -> None:
        self._tail.unsubscribe(self)


class Follower(Protocol):
    """A push source of new log entries (Redis Streams): ``(position, event JSON)``."""

    def entries(self, after: int) -> AsyncIterator[list[tuple[int, bytes]]]:
        """Batches of entries after ``after``, for ever; reconnects on its own."""


class LogTail:
    def __init__(
        self, store: EventStore, head: Watermark, follower: Follower | None = None
    ) -> None:
        self._store = store
        self._head = head
        self._follower = follower
        self._subscribers: set[Subscription] = set()
        self._lock = asyncio.Lock()
        self.position = head.value

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self, capacity: int) -> Subscription:
        subscription = Subscription(self, capacity)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def offer(self, events: list[StoredEvent]) -> None:
        """Events this process just committed (on the event loop, right after the commit):
        delivered at once when they continue the tail, which saves reading them back. Anything
        else (the tail is reading the store, or another process committed in between) is left
        to the head watcher, which reads the store."""
        if not events or not self._subscribers or self._lock.locked():
            return
        if events[0].position != self.position + 1:
            return
        self._deliver([frame_of(stored) for stored in events])

    async def run(self) -> None:
        """Follow for ever. The starting position is the head watermark's at construction:
        a feed may subscribe at once, and must not be skipped past by a later re-read."""
        tasks = [asyncio.create_task(self._follow_head(), name="cairn-tail-head")]
        if self._follower is not None:
            tasks.append(asyncio.create_task(self._follow_redis(), name="cairn-tail-redis"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _follow_head(self) -> None:
        while True:
            await self._head.wait_for(self.position + 1, 1.0)
            async with self._lock:
                # Checked under the lock: a feed subscribing while a catch-up held it must
                # get every event after its start, so only skip ahead if nobody listens now.
                if not self._subscribers:
                    # Nobody listens: no need to read and encode anything. A feed that
                    # subscribes later reads what it missed from the store, up to here.
                    self.position = max(self.position, self._head.value)
                    continue
            if self._head.value > self.position:
                try:
                    await self._catch_up(self._head.value)
                except Exception:
                    log.exception("tail_read_failed", position=self.position)
                    await asyncio.sleep(0.5)

    async def _follow_redis(self) -> None:
        """Redis only speeds the tail up: any entry it cannot use is left to the store."""
        assert self._follower is not None
        async for entries in self._follower.entries(self.position):
            try:
                await self._take(entries)
            except Exception:
                log.exception("tail_redis_entry_skipped", position=self.position)

    async def _take(self, entries: list[tuple[int, bytes]]) -> None:
        async with self._lock:
            fresh = [(p, data) for p, data in entries if p > self.position]
        if not fresh:
            return
        if fresh[0][0] > self.position + 1:  # Redis skipped ahead of us: the store first
            await self._catch_up(fresh[0][0] - 1)
        async with self._lock:
            run: list[Frame] = []
            for position, event_json in fresh:
                if position != self.position + len(run) + 1:
                    continue  # already delivered (from the store) while we waited
                type_, queue = _envelope(event_json)
                run.append(frame(position, type_, queue, event_json))
            self._deliver(run)

    async def _catch_up(self, until: int) -> None:
        """Deliver everything up to ``until`` from the store, in order."""
        async with self._lock:
            while self.position < until:
                batch = await self._store.read(self.position, _READ_BATCH, until=until)
                if not batch:
                    return
                self._deliver([frame_of(stored) for stored in batch])

    def _deliver(self, frames: list[Frame]) -> None:
        if not frames:
            return
        self.position = frames[-1].position
        for subscription in list(self._subscribers):
            subscription.push(frames)


class _Head(msgspec.Struct):
    type: str
    queue: str


_head_decoder: Final = msgspec.json.Decoder(_Head)


def _envelope(event_json: bytes) -> tuple[str, str]:
    head = _head_decoder.decode(event_json)
    return head.type, head.queue


def matches(queue: str | None, types: Iterable[str] | None) -> Callable[[str, str], bool]:
    """A filter on (queue, type), as ``GET /v1/events`` takes them."""
    patterns = list(types or [])

    def accept(event_queue: str, event_type: str) -> bool:
        if queue is not None and event_queue != queue:
            return False
        return not patterns or matches_types(event_type, patterns)

    return accept
