"""Topics: which exist, and the one place the door reads the log.

Every live queue is a topic with one partition (0) whose records are the queue's
``message.published`` events, offset = position; ``cairn.events`` is the whole log. A name
may have had queues before (deleted, then the name taken again): a queue's records are the
publishes of its name after its creation. (A restore brings back the queue of the name deleted
last, so no queue of its name was created after it.)

``Topics.read`` is the only read of records: when the log gains an archive, it is the one
function that changes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from api.services import Services
from broker.events import StoredEvent, encode_at
from projections import queries

EVENTS_TOPIC: Final = "cairn.events"
PUBLISHED: Final = "message.published"
_NAMESPACE: Final = uuid.UUID("8f2f3c1e-6a8b-4f3e-9d8a-2b7c5e1a4d60")
_FIND_WAIT_S: Final = 1.0
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Topic:
    name: str
    queue_id: int | None
    """The queue's id (the position of its ``queue.created``); None for ``cairn.events``."""

    @property
    def events(self) -> bool:
        return self.queue_id is None

    @property
    def topic_id(self) -> uuid.UUID:
        """Stable per queue (not per name): a queue made anew under an old name is a new topic,
        as a Kafka topic deleted and created again is."""
        return topic_id(self.name, self.queue_id)


def topic_id(name: str, queue_id: int | None) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{name}/{queue_id or 0}")


EVENTS: Final = Topic(EVENTS_TOPIC, None)


class Topics:
    def __init__(self, services: Services) -> None:
        self._services = services

    async def names(self) -> list[tuple[str, int | None]]:
        """Every topic's name and queue id: ``cairn.events``, then the live queues by name."""
        queues = await queries.live_queue_ids(self._services.views)
        return [(EVENTS_TOPIC, None), *queues]

    async def find(self, name: str) -> Topic | None:
        """The topic of that name, if it exists. The read model of queues may be a moment
        behind the log (a queue created just now): before saying a topic does not exist, it
        waits (briefly) for it to catch up with the head."""
        if name == EVENTS_TOPIC:
            return EVENTS
        found = await self._find(name)
        if found is None:
            s = self._services
            if await s.runner.watermarks["views"].wait_for(s.head.value, _FIND_WAIT_S):
                found = await self._find(name)
        return found

    async def _find(self, name: str) -> Topic | None:
        queue_id = await queries.live_queue_id(self._services.views, name)
        return None if queue_id is None else Topic(name, queue_id)

    async def read(self, topic: Topic, offset: int, limit: int) -> list[StoredEvent]:
        """The topic's records from ``offset`` on (the first at or after it), at most
        ``limit``."""
        store = self._services.store
        if topic.queue_id is None:
            return await store.read(max(offset - 1, 0), limit)
        after = max(offset - 1, topic.queue_id)
        return await store.read(after, limit, queue=topic.name, types=[PUBLISHED])

    async def earliest(self, topic: Topic) -> int:
        """The offset of the first record still readable; the end when there is none."""
        first = await self.read(topic, 0, 1)
        return first[0].position if first else await self.end(topic)

    async def end(self, topic: Topic) -> int:
        """The high watermark: the last record's offset + 1 (and for a queue that has none,
        its creation's position + 1: below any record it will ever have)."""
        store = self._services.store
        if topic.queue_id is None:
            return max(self._services.head.value, await store.head()) + 1
        last = await store.last_position(topic.name, PUBLISHED)
        return max(last, topic.queue_id) + 1

    async def at_time(self, topic: Topic, ms: int) -> StoredEvent | None:
        """The first record published at or after ``ms`` (ms since the epoch), if any. Times
        rise with positions, so the records after the last event before that time are the
        ones."""
        before = encode_at(_EPOCH + timedelta(microseconds=ms * 1000 - 1))
        position = await self._services.store.position_at(before)
        first = await self.read(topic, position + 1, 1)
        return first[0] if first else None

    async def last(self, topic: Topic) -> StoredEvent | None:
        """The topic's last record, if any."""
        end = await self.end(topic)
        found = await self._services.store.read_positions([end - 1])
        return found[0] if found and (topic.events or found[0].type == PUBLISHED) else None
