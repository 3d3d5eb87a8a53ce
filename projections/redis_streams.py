"""Redis Streams: the log, fanned out. The only ``redis`` import of the project.

The publisher is a projector like any other, except that its checkpoint lives in Redis: every
event goes to ``cairn:queue:<name>`` and then ``cairn:events`` with the entry id
``<position>-0``, so the last id of ``cairn:events`` says how far it got, and writing an entry
again is refused by Redis (ids only grow) and ignored here. A crash between the two XADDs, or
several processes publishing at once, therefore neither loses nor doubles an entry: each
publisher adds a stream's entries in increasing order, so whenever an entry is refused, every
earlier one is already there. Every process publishes, so the process that committed an event
puts it on Redis at once, without waiting for the others to notice the commit.

Redis is never the source of truth. When it is down, commands still commit, the publisher
retries with backoff from its checkpoint, and feeds are served from the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Final

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError, ResponseError

from broker.events import StoredEvent
from broker.notify import Watermark
from broker.ports import EventStore

__all__ = [
    "Redis",
    "RedisFollower",
    "RedisStreamPublisher",
    "connect",
    "ping",
    "published_position",
]

log = structlog.get_logger(component="cairn.redis")

EVENTS_STREAM: Final = "cairn:events"
QUEUE_STREAM: Final = "cairn:queue:{}"
_UNAVAILABLE: Final = (RedisError, OSError, asyncio.TimeoutError)


def connect(url: str) -> Redis:
    # Quick retries: after Redis comes back the first command on a pooled connection finds it
    # dead; redis-py's default backoff (from 1 s) would outlast a readiness probe's timeout.
    client: Redis = Redis.from_url(
        url,
        socket_connect_timeout=2,
        health_check_interval=10,
        decode_responses=False,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 3),
    )
    return client


def _position(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


async def _last_position(client: Redis) -> int:
    last: Any = await client.xrevrange(EVENTS_STREAM, count=1)
    return _position(last[0][0]) if last else 0


async def published_position(client: Redis, wait_s: float = 1.0) -> int | None:
    """How far the streams reach, whoever publishes them; None if Redis does not answer."""
    try:
        return await asyncio.wait_for(_last_position(client), wait_s)
    except _UNAVAILABLE:
        return None


async def ping(client: Redis, wait_s: float = 1.0) -> bool:
    try:
        return bool(await asyncio.wait_for(client.ping(), wait_s))
    except _UNAVAILABLE:
        return False


class RedisStreamPublisher:
    name: Final = "redis"

    def __init__(
        self,
        store: EventStore,
        client: Redis,
        head: Watermark,
        *,
        maxlen: int = 1_000_000,
        batch_size: int = 500,
    ) -> None:
        self._store = store
        self._client = client
        self._head = head
        self._maxlen = maxlen
        self._batch_size = batch_size
        self.watermark = Watermark()
        self.healthy = False

    async def run(self) -> None:
        """Publish for ever; on any Redis failure, back off and resume from the checkpoint."""
        delay = 0.1
        while True:
            try:
                await self._follow()
            except _UNAVAILABLE as error:
                if self.healthy:  # it worked until now: start the backoff over
                    log.warning("redis_publisher_unavailable", error=str(error))
                    delay = 0.1
                self.healthy = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def published(self) -> int:
        """The checkpoint: the position of the last entry of ``cairn:events`` (0: none)."""
        return await _last_position(self._client)

    async def _follow(self) -> None:
        position = await self.published()
        self.watermark.rewind(position)
        self.watermark.advance(position)
        if not self.healthy:
            log.info("redis_publisher_connected", position=position)
        self.healthy = True
        while True:
            batch = await self._store.read(position, self._batch_size)
            if not batch:
                await self._head.wait_for(position + 1, 1.0)
                continue
            # Where the streams really end, before each batch: a Redis that restarted empty
            # between two batches (its client's own retries can hide that it was ever gone)
            # must get everything again, not the rest on top of a gap.
            reached = await self.published()
            if reached != position:
                log.warning("redis_streams_moved", expected=position, found=reached)
                position = reached
                self.watermark.rewind(position)
                self.watermark.advance(position)
                continue
            await self.publish(batch)
            position = batch[-1].position
            self.watermark.advance(position)

    async def publish(self, batch: list[StoredEvent]) -> None:
        """XADD each event to its queue's stream, then to ``cairn:events``, in one round trip."""
        async with self._client.pipeline(transaction=False) as pipe:
            for stored in batch:
                fields: dict[Any, Any] = {"event": stored.json()}
                entry = f"{stored.position}-0"
                for stream in (QUEUE_STREAM.format(stored.queue), EVENTS_STREAM):
                    pipe.xadd(stream, fields, id=entry, maxlen=self._maxlen, approximate=True)
            results = await pipe.execute(raise_on_error=False)
        for result in results:
            if isinstance(result, ResponseError) and "equal or smaller" in str(result):
                continue  # already there: a retry, or another publisher got there first
            if isinstance(result, Exception):
                raise result

    async def reset(self) -> None:
        """Delete every stream this publisher writes, so it starts again from position 0."""
        keys = [EVENTS_STREAM]
        async for key in self._client.scan_iter(match=QUEUE_STREAM.format("*"), count=500):
            keys.append(key.decode() if isinstance(key, bytes) else key)
        await self._client.delete(*keys)
        self.watermark.rewind(0)


class RedisFollower:
    """Reads ``cairn:events`` as it grows (XREAD BLOCK), for the live tail of feeds."""

    def __init__(self, client: Redis, *, block_ms: int = 1000) -> None:
        self._client = client
        self._block_ms = block_ms

    async def entries(self, after: int) -> AsyncIterator[list[tuple[int, bytes]]]:
        last = f"{after}-0"
        delay = 0.1
        while True:
            try:
                response: Any = await self._client.xread(
                    {EVENTS_STREAM: last}, count=1000, block=self._block_ms
                )
            except _UNAVAILABLE:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            for _stream, items in response or []:
                if items:
                    last = items[-1][0]
                    yield [
                        (_position(entry_id), fields[b"event"])
                        for entry_id, fields in items
                        if b"event" in fields  # someone else's entry: not ours to follow
                    ]
