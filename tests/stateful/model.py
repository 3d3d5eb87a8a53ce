"""A plain reference model of a queue broker, written from API.md without looking at
``broker/decide.py``: lists and dicts, times in integer microseconds, no events.

Where the broker makes a new message on its own (dead-lettering, redrive) the model cannot
know the id the broker picked; it says which message moved where, and the test tells it the
new id read from the broker's log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["ok", "exists", "invalid", "not_found", "lease_lost"]
Entry = tuple[str, bytes, int | None, str | None, int, str | None]
US = 1_000_000
DEDUP_WINDOW = 300 * US


@dataclass(eq=False)
class Queue:
    name: str
    visibility_timeout_s: int
    delay_s: int
    retention_s: int
    max_receive_count: int | None
    dead_letter_queue: str | None
    alive: bool = True
    dedup: dict[str, tuple[str, int]] = field(default_factory=dict)  # key -> (id, at)


@dataclass(eq=False)
class Message:
    id: str
    queue: Queue
    body: bytes
    attributes: dict[str, str]
    seq: int
    published_at: int
    visible_at: int
    status: str = "ready"
    receipt: str | None = None
    receive_count: int = 0
    priority: int = 4
    group: str | None = None


@dataclass
class Move:
    """The model expects message ``source`` to be copied into ``target`` (a DLQ or redrive)."""

    source: Message
    target: Queue
    attributes: dict[str, str]
    kind: Literal["dead_lettered", "redriven"]


class Model:
    def __init__(self) -> None:
        self.queues: dict[str, Queue] = {}
        self.messages: dict[str, Message] = {}
        self.seq = 0
        self.moves: list[Move] = []
        self.purges: dict[int, tuple[Queue, list[Message]]] = {}  # purge id -> what it took
        self.undone: set[int] = set()

    # ---- queues -------------------------------------------------------------------------

    def live(self, name: str) -> Queue | None:
        queue = self.queues.get(name)
        return queue if queue is not None and queue.alive else None

    def create(
        self,
        name: str,
        visibility_timeout_s: int,
        delay_s: int,
        retention_s: int,
        max_receive_count: int | None,
        dead_letter_queue: str | None,
    ) -> Outcome:
        if self.live(name):
            return "exists"
        if (max_receive_count is None) != (dead_letter_queue is None):
            return "invalid"
        if dead_letter_queue is not None and (
            dead_letter_queue == name or not self.live(dead_letter_queue)
        ):
            return "invalid"
        self.queues[name] = Queue(
            name, visibility_timeout_s, delay_s, retention_s, max_receive_count, dead_letter_queue
        )
        return "ok"

    def delete(self, name: str) -> Outcome:
        queue = self.live(name)
        if queue is None:
            return "not_found"
        queue.alive = False
        return "ok"

    def purge(self, name: str) -> Outcome | list[Message]:
        queue = self.live(name)
        if queue is None:
            return "not_found"
        purged = []
        for message in self.messages.values():
            if message.queue is queue and message.status in ("ready", "leased"):
                message.status = "purged"
                message.receipt = None
                purged.append(message)
        return purged

    def purged(self, purge_id: int, queue: Queue, messages: list[Message]) -> None:
        """The broker named the purge that took ``messages``."""
        self.purges[purge_id] = (queue, messages)

    def undo(self, name: str, purge_id: int, now: int) -> Outcome | tuple[int, int]:
        """-> (restored, skipped): what the purge took comes back, but what outlived its
        retention meanwhile; a second undo restores nothing."""
        queue = self.live(name)
        found = self.purges.get(purge_id)
        if queue is None or found is None or found[0] is not queue:
            return "not_found"
        if purge_id in self.undone:
            return 0, 0
        self.undone.add(purge_id)
        restored = skipped = 0
        for message in found[1]:
            if message.status != "purged":
                continue
            if self._expired(message, now):
                skipped += 1
                continue
            message.status = "ready"
            message.visible_at = now
            restored += 1
        return restored, skipped

    def restore(self, name: str, now: int) -> Outcome:
        if self.live(name):
            return "exists"
        queue = self.queues.get(name)
        if queue is None:
            return "not_found"
        queue.alive = True
        for message in self.messages.values():
            if message.queue is queue and message.status == "ready" and self._expired(message, now):
                message.status = "expired"
        return "ok"

    # ---- messages -----------------------------------------------------------------------

    def add(
        self,
        queue: Queue,
        message_id: str,
        body: bytes,
        attributes: dict[str, str],
        now: int,
        delay_s: int,
        priority: int = 4,
        group: str | None = None,
    ) -> Message:
        self.seq += 1
        message = Message(message_id, queue, body, attributes, self.seq, now, now + delay_s * US)
        message.priority, message.group = priority, group
        self.messages[message_id] = message
        return message

    def publish(
        self, name: str, entries: list[Entry], now: int
    ) -> Outcome | list[tuple[str, bool]]:
        """entries: (id the broker gave it, body, delay_s, dedup_id, priority, group) ->
        [(id, duplicate)]."""
        queue = self.live(name)
        if queue is None:
            return "not_found"
        results: list[tuple[str, bool]] = []
        for message_id, body, delay_s, dedup_id, priority, group in entries:
            if dedup_id is not None:
                seen = queue.dedup.get(dedup_id)
                if seen is not None and seen[1] + DEDUP_WINDOW > now:
                    results.append((seen[0], True))
                    continue
                queue.dedup[dedup_id] = (message_id, now)
            delay = queue.delay_s if delay_s is None else delay_s
            self.add(queue, message_id, body, {}, now, delay, priority, group)
            results.append((message_id, False))
        return results

    def _expired(self, message: Message, now: int) -> bool:
        return message.published_at + message.queue.retention_s * US <= now

    def _dead_letter_target(self, message: Message) -> Queue | None:
        queue = message.queue
        if queue.max_receive_count is None or queue.dead_letter_queue is None:
            return None
        if message.receive_count < queue.max_receive_count:
            return None
        return self.live(queue.dead_letter_queue)

    def _move(
        self, message: Message, target: Queue, kind: Literal["dead_lettered", "redriven"]
    ) -> None:
        message.status = kind
        if kind == "dead_lettered":
            attributes = {
                **message.attributes,
                "source_queue": message.queue.name,
                "source_message_id": message.id,
            }
        else:
            attributes = {
                k: v
                for k, v in message.attributes.items()
                if k not in ("source_queue", "source_message_id")
            }
        self.moves.append(Move(message, target, attributes, kind))

    def _release(self, message: Message, now: int) -> None:
        """A lease ended (expiry or nack): maybe dead-letter, maybe expire."""
        target = self._dead_letter_target(message)
        if target is not None:
            self._move(message, target, "dead_lettered")
        elif self._expired(message, now):
            message.status = "expired"

    def sweep(self, now: int, only: str | None = None) -> None:
        names = [only] if only is not None else sorted(self.queues)
        for name in names:
            queue = self.live(name)
            if queue is None:
                continue
            mine = [m for m in self.messages.values() if m.queue is queue]
            ready_before = [m for m in mine if m.status == "ready"]
            for message in mine:
                if message.status == "leased" and message.visible_at <= now:
                    message.status = "ready"
                    message.visible_at = now
                    self._release(message, now)
            for message in ready_before:
                if message.status == "ready" and self._expired(message, now):
                    message.status = "expired"

    def _available(self, queue: Queue, now: int) -> list[Message]:
        """Every message of the queue that nothing holds back, by publish order."""
        return sorted(
            (
                m
                for m in self.messages.values()
                if m.queue is queue and m.status == "ready" and m.visible_at <= now
            ),
            key=lambda m: m.seq,
        )

    def group_of(self, message: Message) -> list[Message]:
        """The live messages of the message's group, by publish order."""
        return sorted(
            (
                m
                for m in self.messages.values()
                if m.queue is message.queue
                and m.group == message.group
                and m.status in ("ready", "leased")
            ),
            key=lambda m: m.seq,
        )

    def _candidates(self, queue: Queue, now: int) -> list[Message]:
        """What a receive may take first: higher priority first, then publish order; of a
        group, only its first live message, and only while none of the group is leased."""
        candidates = []
        for message in self._available(queue, now):
            if message.group is not None:
                group = self.group_of(message)
                if group[0] is not message or any(m.status == "leased" for m in group):
                    continue
            candidates.append(message)
        return sorted(candidates, key=lambda m: (-m.priority, m.seq))

    def _receivable(self, message: Message, now: int) -> bool:
        return (
            message.status == "ready"
            and message.visible_at <= now
            and not self._expired(message, now)
            and self._dead_letter_target(message) is None
        )

    def receive(
        self, name: str, max_messages: int, vt: int | None, now: int, receipts: list[str]
    ) -> Outcome | list[Message]:
        """``receipts``: the ones the broker handed out, in delivery order."""
        queue = self.live(name)
        if queue is None:
            return "not_found"
        self.sweep(now, only=name)
        timeout = queue.visibility_timeout_s if vt is None else vt
        delivered: list[Message] = []
        for message in self._candidates(queue, now)[:max_messages]:
            if len(delivered) == max_messages:
                break
            if self._expired(message, now):
                message.status = "expired"
                continue
            target = self._dead_letter_target(message)
            if target is not None:
                self._move(message, target, "dead_lettered")
                continue
            delivered.append(message)
            if message.group is not None:
                # The group goes in flight as one: its head and the ones right behind it.
                for follower in self.group_of(message)[1:]:
                    if len(delivered) == max_messages or not self._receivable(follower, now):
                        break
                    delivered.append(follower)
        for message, receipt in zip(delivered, receipts, strict=False):
            message.status = "leased"
            message.receive_count += 1
            message.receipt = receipt
            message.visible_at = now + timeout * US
        return delivered

    def _holds(self, message: Message, receipt: str, now: int) -> bool:
        return (
            message.status == "leased" and message.receipt == receipt and message.visible_at > now
        )

    def _find(self, name: str, message_id: str) -> Queue | Outcome | Message:
        queue = self.live(name)
        if queue is None:
            return "not_found"
        message = self.messages.get(message_id)
        if message is None or message.queue is not queue:
            return "not_found"
        return message

    def ack(self, name: str, message_id: str, receipt: str, now: int) -> Outcome:
        found = self._find(name, message_id)
        if not isinstance(found, Message):
            return "not_found"
        # In flight, or its lease ended without anyone leasing the message since (a nack
        # gives the lease up): the ack settles it.
        if found.status in ("leased", "ready") and found.receipt == receipt:
            found.status = "acked"
            return "ok"
        if found.status == "acked" and found.receipt == receipt:
            return "ok"
        return "lease_lost"

    def nack(self, name: str, message_id: str, receipt: str, delay_s: int, now: int) -> Outcome:
        found = self._find(name, message_id)
        if not isinstance(found, Message):
            return "not_found"
        if not self._holds(found, receipt, now):
            return "lease_lost"
        found.status = "ready"
        found.receipt = None
        found.visible_at = now + delay_s * US
        self._release(found, now)
        return "ok"

    def extend(self, name: str, message_id: str, receipt: str, vt: int, now: int) -> Outcome:
        found = self._find(name, message_id)
        if not isinstance(found, Message):
            return "not_found"
        if not self._holds(found, receipt, now):
            return "lease_lost"
        found.visible_at = now + vt * US
        return "ok"

    def redrive(self, name: str, to: str | None, now: int) -> Outcome | int:
        queue = self.live(name)
        if queue is None:
            return "not_found"
        named = None
        if to is not None:
            named = self.live(to)
            if named is None or named is queue:
                return "invalid"
        moved = 0
        for message in self._available(queue, now)[:100]:
            if self._expired(message, now):
                continue
            target = named
            if target is None:
                source = message.attributes.get("source_queue")
                target = self.live(source) if source is not None else None
            if target is None or target is queue:
                continue
            self._move(message, target, "redriven")
            moved += 1
        return moved

    def adopt(self, move: Move, new_id: str, now: int) -> None:
        """The broker made the copy ``move`` asked for, with id ``new_id``."""
        source = move.source
        self.add(
            move.target, new_id, source.body, move.attributes, now, 0, source.priority, source.group
        )
