"""The reference adapter: the whole store in process memory. Shipped as real code and used by
the unit, contract and model tests; nothing survives the process."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar, assert_never

import msgspec

from broker.events import MessagePublished, StoredEvent
from broker.ports import matches_types
from broker.state import (
    FINISHED,
    LIVE,
    PRODUCER_KEPT_S,
    PRUNE_BATCH,
    Change,
    DedupEntry,
    GroupState,
    IdempotencyRecord,
    MessageState,
    ProducerState,
    PurgeMessages,
    PurgeRecord,
    PutDedup,
    PutGroup,
    PutIdempotency,
    PutMessage,
    PutProducer,
    PutPurge,
    PutQueue,
    QueueState,
)

T = TypeVar("T")
_MISSING: Final = object()


class MemoryEventStore:
    def __init__(self) -> None:
        self.events: list[StoredEvent] = []
        self.queues: dict[int, QueueState] = {}
        self.messages: dict[str, MessageState] = {}
        self.dedup: dict[tuple[int, str], DedupEntry] = {}
        self.groups: dict[tuple[int, str], GroupState] = {}
        self.purges: dict[int, PurgeRecord] = {}
        self.idempotency: dict[tuple[str, str], IdempotencyRecord] = {}
        self.producers: dict[tuple[int, int], ProducerState] = {}
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def transact(self, fn: Callable[[Any], T]) -> T:
        async with self._lock:
            tx = _MemoryTx(self)
            try:
                return fn(tx)
            except BaseException:
                tx.rollback()
                raise

    async def read(
        self,
        after: int,
        limit: int,
        *,
        queue: str | None = None,
        types: Sequence[str] | None = None,
        until: int | None = None,
    ) -> list[StoredEvent]:
        found: list[StoredEvent] = []
        for stored in self.events[after:until]:
            if queue is not None and stored.queue != queue:
                continue
            if types and not matches_types(stored.type, types):
                continue
            found.append(stored)
            if len(found) >= limit:
                break
        return found

    async def read_positions(self, positions: Sequence[int]) -> list[StoredEvent]:
        return [self.events[p - 1] for p in sorted(set(positions)) if 0 < p <= len(self.events)]

    async def read_message(self, message_id: str) -> list[StoredEvent]:
        return [stored for stored in self.events if stored.message_id == message_id]

    async def head(self) -> int:
        return len(self.events)

    async def last_position(self, queue: str, type_: str, *, before: int | None = None) -> int:
        end = len(self.events) if before is None else min(before - 1, len(self.events))
        for stored in reversed(self.events[: max(end, 0)]):
            if stored.queue == queue and stored.type == type_:
                return stored.position
        return 0

    async def position_at(self, at: str) -> int:
        return max((e.position for e in self.events if e.at <= at), default=0)


class _MemoryTx:
    """The state as a transaction sees it; every change is journalled so it can be undone."""

    def __init__(self, store: MemoryEventStore) -> None:
        self._store = store
        self._journal: list[tuple[dict[Any, Any], Any, Any]] = []
        self._events_before = len(store.events)

    @property
    def next_position(self) -> int:
        return len(self._store.events) + 1

    def queue(self, name: str) -> QueueState | None:
        for queue in self._store.queues.values():
            if queue.name == name and not queue.deleted:
                return queue
        return None

    def queue_by_id(self, queue_id: int) -> QueueState | None:
        return self._store.queues.get(queue_id)

    def live_queues(self) -> list[QueueState]:
        return sorted(
            (q for q in self._store.queues.values() if not q.deleted), key=lambda q: q.name
        )

    def deleted_queue(self, name: str) -> QueueState | None:
        deleted = [q for q in self._store.queues.values() if q.name == name and q.deleted]
        return max(deleted, key=lambda q: q.queue_id, default=None)

    def group(self, queue_id: int, group_id: str) -> GroupState | None:
        return self._store.groups.get((queue_id, group_id))

    def waiting(self, queue_id: int, group_id: str, after: int, limit: int) -> list[MessageState]:
        found = [
            m
            for m in self._of_queue(queue_id, "waiting")
            if m.group_id == group_id and m.position > after
        ]
        return found[: max(limit, 0)]

    def purge(self, position: int) -> PurgeRecord | None:
        return self._store.purges.get(position)

    def purged_by(self, queue_id: int, purge: int) -> list[MessageState]:
        return [m for m in self._of_queue(queue_id, "purged") if m.purged_by == purge]

    def idempotency(self, subject: str, key: str) -> IdempotencyRecord | None:
        return self._store.idempotency.get((subject, key))

    def producer(self, queue_id: int, producer_id: int) -> ProducerState | None:
        return self._store.producers.get((queue_id, producer_id))

    def available(self, queue_id: int, now: int, after: int, limit: int) -> list[MessageState]:
        found = [
            m
            for m in self._of_queue(queue_id, "ready", "waiting")
            if m.visible_at <= now and m.position > after
        ]
        return found[:limit]

    def message(self, message_id: str) -> MessageState | None:
        return self._store.messages.get(message_id)

    def dedup(self, queue_id: int, dedup_id: str) -> DedupEntry | None:
        return self._store.dedup.get((queue_id, dedup_id))

    def _of_queue(self, queue_id: int, *statuses: str) -> list[MessageState]:
        return sorted(
            (
                m
                for m in self._store.messages.values()
                if m.queue_id == queue_id and m.status in statuses
            ),
            key=lambda m: m.position,
        )

    def receivable(self, queue_id: int, now: int, limit: int) -> list[MessageState]:
        ready = [m for m in self._of_queue(queue_id, "ready") if m.visible_at <= now]
        return sorted(ready, key=lambda m: (m.rank, m.position))[:limit]

    def due(
        self, queue_id: int, now: int, published_before: int, limit: int
    ) -> tuple[list[MessageState], list[MessageState]]:
        due = [m for m in self._of_queue(queue_id, "leased") if m.visible_at <= now]
        ready = self._of_queue(queue_id, "ready", "waiting")
        stale = sorted(
            (m for m in ready if m.published_at <= published_before),
            key=lambda m: (m.published_at, m.position),
        )
        return sorted(due, key=lambda m: (m.visible_at, m.position))[:limit], stale[:limit]

    def count_live(self, queue_id: int) -> int:
        return sum(
            1 for m in self._store.messages.values() if m.queue_id == queue_id and m.status in LIVE
        )

    def next_visible_at(self, queue_id: int, now: int) -> int | None:
        future = [m.visible_at for m in self._of_queue(queue_id, "ready") if m.visible_at > now]
        return min(future, default=None)

    def messages(self, message_ids: Sequence[str]) -> dict[str, MessageState]:
        found = {i: self._store.messages.get(i) for i in message_ids}
        return {i: m for i, m in found.items() if m is not None}

    def published(self, positions: Sequence[int]) -> dict[int, MessagePublished]:
        found: dict[int, MessagePublished] = {}
        for position in positions:
            event = self._store.events[position - 1].event()
            assert isinstance(event, MessagePublished)
            found[position] = event
        return found

    def append(self, event: StoredEvent) -> None:
        if event.position != self.next_position:
            raise ValueError(f"event at {event.position}, but the next is {self.next_position}")
        self._store.events.append(event)

    def prune(self, now: int, finished_before: int) -> int:
        pruned = 0
        for table in (self._store.dedup, self._store.idempotency):
            stale = [key for key, entry in table.items() if entry.expires_at <= now]
            for key in stale:
                self._set(table, key, _MISSING)
            pruned += len(stale)
        silent = now - PRODUCER_KEPT_S * 1_000_000
        gone = [k for k, p in self._store.producers.items() if p.updated_at <= silent]
        for producer in gone:
            self._set(self._store.producers, producer, _MISSING)
        pruned += len(gone)
        undone = {p.position for p in self._store.purges.values() if p.undone}
        taken: Counter[tuple[int, int]] = Counter()
        for message in list(self._store.messages.values()):
            if message.status in FINISHED and message.visible_at <= finished_before:
                batch = (message.queue_id, 0)
            elif message.status == "purged" and message.purged_by in undone:
                batch = (message.queue_id, message.purged_by)
            else:
                continue
            if taken[batch] < PRUNE_BATCH:
                taken[batch] += 1
                self._set(self._store.messages, message.message_id, _MISSING)
        return pruned + sum(taken.values())

    def apply(self, changes: Sequence[Change]) -> None:
        for change in changes:
            self._apply(change)

    def _apply(self, change: Change) -> None:
        match change:
            case PutQueue(queue):
                self._set(self._store.queues, queue.queue_id, queue)
            case PutMessage(message):
                self._set(self._store.messages, message.message_id, message)
            case PutGroup(group):
                self._set(self._store.groups, (group.queue_id, group.group_id), group)
            case PutDedup(entry):
                self._set(self._store.dedup, (entry.queue_id, entry.dedup_id), entry)
            case PutPurge(purge):
                self._set(self._store.purges, purge.position, purge)
            case PutIdempotency(record):
                held = (record.subject, record.idempotency_key)
                self._set(self._store.idempotency, held, record)
            case PutProducer(producer):
                held_by = (producer.queue_id, producer.producer_id)
                self._set(self._store.producers, held_by, producer)
            case PurgeMessages(queue_id, position):
                for message in list(self._store.messages.values()):
                    if (
                        message.queue_id == queue_id
                        and message.status in LIVE
                        and message.position < position
                    ):
                        purged = msgspec.structs.replace(
                            message, status="purged", purged_by=position
                        )
                        self._set(self._store.messages, message.message_id, purged)
                for group_key in [k for k in self._store.groups if k[0] == queue_id]:
                    self._set(self._store.groups, group_key, _MISSING)
            case _:
                assert_never(change)

    def _set(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        self._journal.append((table, key, table.get(key, _MISSING)))
        if value is _MISSING:
            del table[key]
        else:
            table[key] = value

    def rollback(self) -> None:
        for table, key, old in reversed(self._journal):
            if old is _MISSING:
                table.pop(key, None)
            else:
                table[key] = old
        del self._store.events[self._events_before :]
