"""The writer: the single place that appends to the log.

Commands queue up while the previous transaction commits; the next transaction then takes all
of them (up to ``max_batch``) — one fsync for the lot. That is group commit: on
this machine one commit per event tops out near 3 to 5k events/s (an fsync is ~150 µs), batches
of 100 per commit reach 30 to 50k/s. Each command is still atomic on its own: ``decide`` is pure,
so a rejected command has written nothing, and an accepted one appends all of its events and
state changes before the next command is decided. A command is answered only after the
transaction that carries it has committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

import msgspec
import structlog

from broker import ids
from broker.commands import (
    AckMessages,
    AnyCommand,
    ExtendLease,
    NackMessage,
    ReceiveMessages,
    Sweep,
)
from broker.decide import Context, Reply, SweepReply, decide
from broker.errors import (
    BrokerError,
    IdempotencyKeyReusedError,
    StoreUnavailableError,
    StoreUnreachableError,
)
from broker.events import AnyEvent, StoredEvent, type_of
from broker.idempotency import Claim, Recall, RecordAnswer, Replay, record_of
from broker.ports import Clock, EventStore, system_clock
from broker.state import FINISHED_KEPT_S, IdempotencyRecord, PutIdempotency, StateTx, evolve

log = structlog.get_logger(component="cairn.writer")

FAILING_FOR_S = 5.0


@dataclass(slots=True)
class Commit:
    """What one committed transaction did, for whoever watches the writer."""

    head: int
    commands: int
    queues: set[str] = field(default_factory=set)
    event_types: Counter[str] = field(default_factory=Counter)
    events: list[StoredEvent] = field(default_factory=list)
    """Every event appended, in position order: the feeds of this process take them from
    here instead of reading them back from the store."""


@dataclass(slots=True)
class _Batch:
    outcomes: list[Outcome]
    commit: Commit


Outcome: TypeAlias = Reply | Replay | BrokerError | None
"""A command's reply; the first run's record (a repeated idempotency key); its refusal; or
nothing (an answer recorded)."""
Work: TypeAlias = AnyCommand | RecordAnswer | Recall


def record(tx: StateTx, events: Sequence[AnyEvent], stored: list[StoredEvent] | None = None) -> int:
    """Append events at ``next_position`` onwards with the state changes each one makes;
    returns the last position written (and adds each event as stored to ``stored``). This is
    the one fold of the write side: whatever the store, each event becomes its changes here
    (``evolve``, against the state as it was just before it), and the adapter only stores the
    event and the changes it is handed."""
    for event in events:
        position = tx.next_position
        changes = evolve(tx, event, position)
        appended = StoredEvent.of(position, event)
        tx.append(appended)
        tx.apply(changes)
        if stored is not None:
            stored.append(appended)
    return tx.next_position - 1


def apply_batch(
    tx: StateTx,
    commands: Sequence[Work],
    ctx: Context,
    claims: Sequence[Claim | None] | None = None,
    *,
    finished_kept_s: float = FINISHED_KEPT_S,
) -> _Batch:
    """Decide and append each command in turn, inside the caller's transaction. ``claims``:
    the idempotency key each command came with, if any. A full sweep also prunes what no
    command can need any more (``finished_kept_s``: see ``FINISHED_KEPT_S``)."""
    outcomes: list[Outcome] = []
    commit = Commit(head=tx.next_position - 1, commands=len(commands))
    swept = False
    swept_queues: set[str] = set()
    # Every message the batch's acks, nacks and extends name, in one look: the store keeps
    # what it read, so deciding them costs no round trip each (PostgreSQL's are ~0.2 ms).
    tx.messages([message_id for command in commands for message_id in _named(command)])
    for command, claim in zip(commands, claims or [None] * len(commands), strict=True):
        if isinstance(command, RecordAnswer):
            _record_answer(tx, command)
            outcomes.append(None)
            continue
        if isinstance(command, Recall):
            seen = _kept(tx, command.claim, ctx.now_us)
            outcomes.append(None if seen is None else _repeat(seen, command.claim))
            continue
        try:
            if claim is not None:
                seen = _kept(tx, claim, ctx.now_us)
                if seen is not None:
                    outcomes.append(_repeat(seen, claim))
                    continue
            if isinstance(command, ReceiveMessages) and command.queue not in swept_queues:
                # Leases that ended are made available before choosing what to deliver, so a
                # receiver never waits for the sweeper to notice an expiry. Once per queue per
                # batch: every command of a batch is decided at the same moment.
                _append(tx, decide(tx, Sweep(queue=command.queue), ctx).events, commit)
                swept_queues.add(command.queue)
            decision = decide(tx, command, ctx)
        except BrokerError as error:
            outcomes.append(error)
            continue
        _append(tx, _traced(decision.events, command), commit)
        if isinstance(decision.reply, SweepReply) and decision.reply.visited:
            tx.reschedule(decision.reply.visited)
        if claim is not None:  # in the command's own transaction: exactly once, whatever races
            tx.apply([PutIdempotency(record_of(claim, decision.reply, ctx.now_us))])
        outcomes.append(decision.reply)
        swept = swept or (isinstance(command, Sweep) and command.queue is None)
    if swept:
        tx.prune(ctx.now_us, ctx.now_us - int(finished_kept_s * 1_000_000))
    return _Batch(outcomes, commit)


def _kept(tx: StateTx, claim: Claim, now_us: int) -> IdempotencyRecord | None:
    """The key's record while it is kept: one past its 24 h is gone even before the sweep
    that prunes it (the next claim of the key overwrites it)."""
    seen = tx.idempotency(claim.subject, claim.key)
    return seen if seen is not None and seen.expires_at > now_us else None


def _repeat(seen: IdempotencyRecord, claim: Claim) -> Replay | BrokerError:
    if seen.fingerprint != claim.fingerprint:
        return IdempotencyKeyReusedError(
            "this Idempotency-Key was used before with another method, path or body",
            field="header.Idempotency-Key",
        )
    return Replay(seen)


def _record_answer(tx: StateTx, command: RecordAnswer) -> None:
    seen = tx.idempotency(command.subject, command.key)
    if seen is not None and seen.answer is None:
        tx.apply([PutIdempotency(msgspec.structs.replace(seen, answer=command.answer))])


def _traced(events: Sequence[AnyEvent], command: AnyCommand) -> Sequence[AnyEvent]:
    """The command's trace context on every event it appends (decisions need not know)."""
    trace = getattr(command, "trace", None)
    if trace is None:
        return events
    return [msgspec.structs.replace(event, trace=trace) for event in events]


def _named(command: Work) -> list[str]:
    """The messages a command names by id."""
    match command:
        case AckMessages():
            return [entry.message_id for entry in command.entries]
        case NackMessage() | ExtendLease():
            return [command.message_id]
        case _:
            return []


def _append(tx: StateTx, events: Sequence[AnyEvent], commit: Commit) -> None:
    if not events:
        return
    commit.head = record(tx, events, commit.events)
    for event in events:
        commit.queues.add(event.queue)
        commit.event_types[type_of(event)] += 1


@dataclass(slots=True)
class _Item:
    work: Work
    claim: Claim | None
    future: asyncio.Future[Reply | Replay | None]


@dataclass(slots=True)
class _Turn:
    """One transaction handed to the store. Its batch is taken from the queue when the store
    starts running it (in the store's thread), not when it is handed over: whatever arrived
    while the transaction before it committed rides along."""

    batch: list[_Item] = field(default_factory=list)
    taken: bool = False


class Writer:
    def __init__(
        self,
        store: EventStore,
        *,
        clock: Clock = system_clock,
        new_id: Callable[[], str] = ids.new_message_id,
        new_receipt: Callable[[], str] = ids.new_receipt,
        max_batch: int = 512,
        finished_kept_s: float = FINISHED_KEPT_S,
    ) -> None:
        self._store = store
        self._finished_kept_s = finished_kept_s
        self._clock = clock
        self._new_id = new_id
        self._new_receipt = new_receipt
        self._max_batch = max_batch
        # Appended on the event loop, taken in the store's thread (deque's append and popleft
        # are atomic). A turn that has not taken its batch yet takes what arrives meanwhile;
        # there is at most one such turn, so batches are as large as the store's pace allows.
        self._pending: deque[_Item] = deque()
        self._turns: set[asyncio.Task[None]] = set()
        self._waiting_turn: _Turn | None = None
        self._last_now: datetime | None = None
        self._listeners: list[Callable[[Commit], None]] = []
        self._accepting = False
        self._failure: tuple[float, str] | None = None

    @property
    def failing(self) -> str | None:
        """Why the store refused a transaction in the last few seconds, if it did (readiness
        says so: a full disk leaves reads working while commands are refused, and even then
        one may get through now and then, so one success does not clear it)."""
        if self._failure is None or time.monotonic() - self._failure[0] > FAILING_FOR_S:
            return None
        return self._failure[1]

    def on_commit(self, listener: Callable[[Commit], None]) -> None:
        self._listeners.append(listener)

    def new_id(self) -> str:
        return self._new_id()

    async def start(self) -> None:
        self._accepting = True

    async def stop(self) -> None:
        """Refuse new commands, finish the queued ones, then stop."""
        self._accepting = False
        while self._turns or self._pending:
            if not self._turns:
                self._hand_over()
            await asyncio.wait(set(self._turns))

    async def execute(self, command: AnyCommand, claim: Claim | None = None) -> Reply | Replay:
        """Run one command; returns its reply once durable, or raises its ``BrokerError``.
        With a ``claim`` (an idempotency key) that was seen before with the same request, the
        command does not run again: the first run's ``Replay`` is returned."""
        outcome = await self._submit(command, claim)
        assert outcome is not None
        return outcome

    async def record_answer(self, answer: RecordAnswer) -> None:
        """Keep the answer a door gave for a claimed command (see ``broker.idempotency``)."""
        await self._submit(answer, None)

    async def recall(self, claim: Claim) -> Replay | None:
        """What is kept for the claim's key now (a repeat waiting for the first answer)."""
        outcome = await self._submit(Recall(claim), None)
        assert outcome is None or isinstance(outcome, Replay)
        return outcome

    async def _submit(self, work: Work, claim: Claim | None) -> Reply | Replay | None:
        if not self._accepting:
            raise StoreUnavailableError("the broker is shutting down")
        future: asyncio.Future[Reply | Replay | None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Item(work, claim, future))
        self._hand_over()
        return await future

    def _now(self) -> datetime:
        # Event times never go backwards, even if the wall clock does.
        now = self._clock()
        if self._last_now is not None and now < self._last_now:
            now = self._last_now
        self._last_now = now
        return now

    def _hand_over(self) -> None:
        """Hand the store a transaction for the queued commands, unless one handed over
        already will take them. A turn takes its batch when the store starts running it, so
        it can be handed over while the one before still commits: the store starts it the
        moment that one is done (``EventStore.transact`` runs them in order), where the writer
        used to hear of each commit through the event loop before taking the next batch.
        Under 64 publishing connections a commit's round trip through the busy loop had taken
        as long again as the transaction, the loop waiting on it (``scripts/bench.py``: +21%
        publishes/s, p99 50 → 41 ms, alternating runs)."""
        waiting = self._waiting_turn
        if not self._pending or (waiting is not None and not waiting.taken):
            return
        turn = self._waiting_turn = _Turn()
        task = asyncio.create_task(self._commit(turn))
        self._turns.add(task)
        task.add_done_callback(self._turn_done)

    def _turn_done(self, task: asyncio.Task[None]) -> None:
        self._turns.discard(task)
        self._hand_over()  # what the last batch left (more than max_batch were queued)

    def _take(self, turn: _Turn) -> list[_Item]:
        if not turn.taken:
            turn.taken = True  # first: a command queued from here on is handed over anew
            pending, most = self._pending, self._max_batch
            turn.batch = [pending.popleft() for _ in range(min(len(pending), most))]
        return turn.batch

    async def _commit(self, turn: _Turn) -> None:
        kept_s = self._finished_kept_s

        def run(tx: StateTx) -> _Batch:
            batch = self._take(turn)
            ctx = Context(now=self._now(), new_id=self._new_id, new_receipt=self._new_receipt)
            commands = [item.work for item in batch]
            claims = [item.claim for item in batch]
            return apply_batch(tx, commands, ctx, claims, finished_kept_s=kept_s)

        try:
            result = await self._store.transact(run)
        except Exception as error:  # the whole transaction failed: nothing was written
            # (The store may have failed before the turn took its batch: take it here, so
            # that those commands fail now instead of waiting for the store forever.)
            batch = self._take(turn)
            if len(batch) > 1 and not isinstance(error, StoreUnavailableError):
                # Something other than a domain refusal or an unavailable store (a bug): the
                # batch was rolled back, so run its commands again one by one, each in its own
                # transaction, and only the culprit fails. (When the store is down, running
                # them one by one would only make each wait for the store in turn.)
                log.error("batch_failed_retrying_alone", commands=len(batch), error=str(error))
                for item in batch:
                    await self._commit(_Turn([item], taken=True))
                return
            failure = (
                error
                if isinstance(error, BrokerError)
                else StoreUnavailableError(f"the event store failed: {error}")
            )
            if isinstance(failure, StoreUnavailableError) and not isinstance(
                failure, StoreUnreachableError
            ):
                # A store that answers but refuses writes (a full disk) is remembered for a
                # while, since one commit may still get through; one that cannot be reached
                # is readiness's own check (it reads the head), which ends the moment it is
                # back: remembered, it kept /readyz 503 for seconds after PostgreSQL returned.
                self._failure = (time.monotonic(), failure.detail)
            command = type(batch[0].work).__name__ if batch else None
            log.error("command_failed", error=str(error), command=command)
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(failure)
            return
        for item, outcome in zip(turn.batch, result.outcomes, strict=True):
            future = item.future
            if future.done():  # the caller went away (cancelled); the command still happened
                continue
            if isinstance(outcome, BrokerError):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        for listener in self._listeners:
            try:
                listener(result.commit)
            except Exception:
                log.exception("commit_listener_failed")


async def sweep_forever(writer: Writer, interval: float) -> None:
    """Record due time-driven transitions (lease expiry, retention, dead-lettering) every
    ``interval`` seconds, so read models and feeds see them without waiting for a receive."""
    while True:
        with contextlib.suppress(BrokerError):
            await writer.execute(Sweep())
        await asyncio.sleep(interval)
