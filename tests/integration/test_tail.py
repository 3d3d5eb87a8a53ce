"""The live tail of the log: a feed never misses an event that follows its start, whatever Redis
sends and however the tail's catch-ups interleave with new feeds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest
import redis
import structlog

from broker.commands import CreateQueue, PublishMessages, QueueSettings
from broker.events import StoredEvent
from broker.notify import Watermark
from broker.store.memory import MemoryEventStore
from broker.writer import Writer
from projections.redis_streams import EVENTS_STREAM, RedisFollower, connect
from projections.tail import LogTail, Subscription
from tests.helpers import message

REDIS = "redis://127.0.0.1:6379/13"


async def _published(writer: Writer, store: MemoryEventStore, count: int) -> int:
    await writer.execute(CreateQueue(queue="q", settings=QueueSettings()))
    for i in range(count):
        await writer.execute(PublishMessages(queue="q", messages=(message(i),)))
    return await store.head()


async def _collect(subscription: Subscription, until: int) -> list[int]:
    seen: list[int] = []
    while not seen or seen[-1] < until:
        seen += [f.position for f in await subscription.take(5.0)]
    return seen


async def test_a_malformed_redis_entry_does_not_stop_the_tail() -> None:
    sync = redis.Redis.from_url(REDIS)
    try:
        sync.ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis at {REDIS} is unreachable: {error}")
    sync.flushdb()
    client = connect(REDIS)
    store = MemoryEventStore()
    head = Watermark(0)
    tail = LogTail(store, head, RedisFollower(client, block_ms=50))
    running = asyncio.create_task(tail.run())
    try:
        subscription = tail.subscribe(100)
        # The very next position, so the tail tries to use it: before anything is published.
        with structlog.testing.capture_logs() as logs:
            sync.xadd(EVENTS_STREAM, {"event": b"not json"}, id="1-0")
            for _ in range(500):  # until the tail has dealt with it, one way or the other
                if running.done() or any(e["event"] == "tail_redis_entry_skipped" for e in logs):
                    break
                await asyncio.sleep(0.01)
        assert not running.done(), running.exception()
        writer = Writer(store)
        await writer.start()
        last = await _published(writer, store, 3)
        head.advance(last)
        assert await asyncio.wait_for(_collect(subscription, last), 10) == [1, 2, 3, 4]
        assert not running.done()
        await writer.stop()
    finally:
        running.cancel()
        await client.aclose()
        sync.flushdb()
        sync.close()


async def _yield_until(condition: Callable[[], bool]) -> None:
    """Let other tasks run until ``condition`` holds (a state change, not a time: no sleep)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


class GatedStore(MemoryEventStore):
    """The in-memory store, whose reads wait at a gate the test opens: it makes the one
    interleaving that matters happen every time."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.reading = asyncio.Event()

    async def read(
        self,
        after: int,
        limit: int,
        *,
        queue: str | None = None,
        types: Sequence[str] | None = None,
        until: int | None = None,
    ) -> list[StoredEvent]:
        self.reading.set()
        await self.gate.wait()
        return await super().read(after, limit, queue=queue, types=types, until=until)


class OneJump:
    """Hands the tail one entry far ahead of it, so the tail fills the gap from the store."""

    def __init__(self, entry: tuple[int, bytes]) -> None:
        self.entry = entry

    async def entries(self, after: int):  # type: ignore[no-untyped-def]
        yield [self.entry]
        await asyncio.Event().wait()


async def test_a_feed_that_subscribes_during_a_catch_up_misses_nothing() -> None:
    store = GatedStore()
    store.gate.set()
    writer = Writer(store)
    await writer.start()
    last = await _published(writer, store, 9)  # positions 1..10
    await writer.stop()
    [fifth] = await store.read_positions([5])  # (read_positions does not wait at the gate)
    store.gate.clear()
    head = Watermark(0)
    tail = LogTail(store, head, OneJump((5, fifth.json())))
    running = asyncio.create_task(tail.run())
    try:
        # The tail is filling 1..4 from the store, under its lock.
        await asyncio.wait_for(store.reading.wait(), 5)
        head.advance(last)  # meanwhile the rest of the log lands
        await _yield_until(lambda: bool(tail._lock._waiters))  # the head follower waits there
        subscription = tail.subscribe(100)  # a feed subscribes in the middle of it all
        store.gate.set()
        got = await asyncio.wait_for(_collect(subscription, last), 10)
        assert got == list(range(subscription.start + 1, last + 1))
    finally:
        running.cancel()


async def test_this_process_commits_reach_feeds_without_a_read_and_others_from_the_store() -> None:
    store = GatedStore()  # reads wait at the gate, closed: a read would hang the feed
    head = Watermark(0)
    tail = LogTail(store, head)
    here = Writer(store)
    here.on_commit(lambda commit: (tail.offer(commit.events), head.advance(commit.head)))
    await here.start()
    elsewhere = Writer(store)  # another process's writer: the tail hears only of its head
    await elsewhere.start()
    running = asyncio.create_task(tail.run())
    try:
        subscription = tail.subscribe(100)
        mine = await _published(here, store, 3)
        assert await asyncio.wait_for(_collect(subscription, mine), 5) == [1, 2, 3, 4]
        assert not store.reading.is_set()
        await elsewhere.execute(PublishMessages(queue="q", messages=(message(9),)))
        await here.execute(PublishMessages(queue="q", messages=(message(10),)))
        last = await store.head()
        head.advance(last)
        # Position 5 is not this process's: the offer of 6 cannot continue the tail, and the
        # tail reads 5 and 6 from the store once the gate opens.
        await asyncio.wait_for(store.reading.wait(), 5)
        store.gate.set()
        assert await asyncio.wait_for(_collect(subscription, last), 5) == [5, 6]
    finally:
        running.cancel()
        await here.stop()
        await elsewhere.stop()
