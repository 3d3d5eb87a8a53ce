"""The reference adapter: the whole store in process memory. Shipped as real code and used by
the unit, contract and model tests; nothing survives the process."""

from __future__ import annotations

import asyncio
import heapq
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
    PRUNE_QUEUES,
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
    message_prune_at,
    message_sweep_at,
    queue_due_now,
    sweep_due,
)

T = TypeVar("T")
_MISSING: Final = object()


class DueTimes:
    """A time per queue (``QueueDue.sweep_at`` or ``prune_at``), and the queues whose time has
    come, earliest first, without looking at the others: a heap beside the mapping, whose
    entries no longer the queue's time are dropped as they surface."""

    def __init__(self) -> None:
        self.at: dict[int, int] = {}
        self._heap: list[tuple[int, int]] = []

    def pushed(self, queue_id: int) -> None:
        """``at[queue_id]`` was just set: the heap learns of it."""
        if queue_id in self.at:
            heapq.heappush(self._heap, (self.at[queue_id], queue_id))

    def rebuild(self) -> None:
        """After ``at`` was put back as it was (a rollback)."""
        self._heap = [(at, queue_id) for queue_id, at in self.at.items()]
        heapq.heapify(self._heap)

    def due(self, now: int, limit: int) -> list[int]:
        """The queues whose time is at or before ``now``, at most ``limit``, earliest first."""
        heap = self._heap
        found: dict[int, int] = {}
        while heap and heap[0][0] <= now and len(found) < limit:
            at, queue_id = heapq.heappop(heap)
            if self.at.get(queue_id) == at:
                found[queue_id] = at
        for queue_id, at in found.items():  # still due until set anew
            heapq.heappush(heap, (at, queue_id))
        return list(found)


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
        self.sweep_due = DueTimes()
        self.prune_due = DueTimes()
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

    def due_queues(self, now: int, limit: int) -> list[QueueState]:
        queues = (self._store.queues[q] for q in self._store.sweep_due.due(now, limit))
        return sorted((q for q in queues if not q.deleted), key=lambda q: q.name)

    def reschedule(self, queue_ids: Sequence[int]) -> None:
        for queue_id in queue_ids:
            queue = self._store.queues[queue_id]
            leased = self._of_queue(queue_id, "leased")
            available = self._of_queue(queue_id, "ready", "waiting")
            lease_end = min((m.visible_at for m in leased), default=None)
            oldest = min((m.published_at for m in available), default=None)
            self._set_due(self._store.sweep_due, queue_id, sweep_due(queue, lease_end, oldest))

    def _set_due(self, times: DueTimes, queue_id: int, at: int | None) -> None:
        self._set(times.at, queue_id, _MISSING if at is None else at)
        times.pushed(queue_id)

    def _lower(self, times: DueTimes, queue_id: int, at: int | None) -> None:
        known = times.at.get(queue_id)
        if at is not None and (known is None or at < known):
            self._set_due(times, queue_id, at)

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
        for queue_id in self._store.prune_due.due(finished_before, PRUNE_QUEUES):
            taken: Counter[int] = Counter()
            for message in self._of_queue(queue_id, *FINISHED, "purged"):
                if message.status in FINISHED and message.visible_at <= finished_before:
                    batch = 0
                elif message.status == "purged" and message.purged_by in undone:
                    assert message.purged_by is not None
                    batch = message.purged_by
                else:
                    continue
                if taken[batch] < PRUNE_BATCH:
                    taken[batch] += 1
                    self._set(self._store.messages, message.message_id, _MISSING)
            pruned += sum(taken.values())
            more = any(n >= PRUNE_BATCH for n in taken.values())
            finished = min(
                (m.visible_at for m in self._of_queue(queue_id, *FINISHED)), default=None
            )
            self._set_due(self._store.prune_due, queue_id, 0 if more else finished)
        return pruned

    def apply(self, changes: Sequence[Change]) -> None:
        for change in changes:
            self._apply(change)

    def _apply(self, change: Change) -> None:
        match change:
            case PutQueue(queue):
                before = self._store.queues.get(queue.queue_id)
                self._set(self._store.queues, queue.queue_id, queue)
                if queue.deleted:  # the sweeper visits live queues only
                    self._set_due(self._store.sweep_due, queue.queue_id, None)
                elif queue_due_now(before, queue):
                    self._lower(self._store.sweep_due, queue.queue_id, 0)
            case PutMessage(message):
                self._set(self._store.messages, message.message_id, message)
                retention_s = self._store.queues[message.queue_id].retention_s
                swept = message_sweep_at(message, retention_s)
                self._lower(self._store.sweep_due, message.queue_id, swept)
                self._lower(self._store.prune_due, message.queue_id, message_prune_at(message))
            case PutGroup(group):
                self._set(self._store.groups, (group.queue_id, group.group_id), group)
            case PutDedup(entry):
                self._set(self._store.dedup, (entry.queue_id, entry.dedup_id), entry)
            case PutPurge(purge):
                self._set(self._store.purges, purge.position, purge)
                if purge.undone:  # what it took and nothing restored can be pruned
                    self._lower(self._store.prune_due, purge.queue_id, 0)
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
            table.pop(key, None)
        else:
            table[key] = value

    def rollback(self) -> None:
        for table, key, old in reversed(self._journal):
            if old is _MISSING:
                table.pop(key, None)
            else:
                table[key] = old
        del self._store.events[self._events_before :]
        self._store.sweep_due.rebuild()
        self._store.prune_due.rebuild()
