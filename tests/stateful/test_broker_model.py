"""The broker against a plain reference model, under random sequences of commands.

Invariants checked after every step: the broker and the model agree on every message's
status; a message is never leased to two receivers at once; nothing acknowledged changes
again; positions are contiguous from 1. The same machine runs over the in-memory store and
over SQLite, where it may also restart the store in the middle of a run.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections import Counter as Counter_
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from broker.commands import (
    AckEntry,
    AckMessages,
    AnyCommand,
    CreateQueue,
    DeleteQueue,
    ExtendLease,
    NackMessage,
    NewMessage,
    PublishMessages,
    PurgeQueue,
    QueueSettings,
    ReceiveMessages,
    RedriveMessages,
    RestoreQueue,
    Sweep,
    UndoPurge,
)
from broker.decide import (
    AckReply,
    ExtendReply,
    PublishReply,
    PurgeReply,
    QueueReply,
    ReceiveReply,
    RedriveReply,
    Reply,
    UndoReply,
)
from broker.errors import (
    BrokerError,
    InvalidCommandError,
    LeaseLostError,
    MessageNotFoundError,
    PurgeNotFoundError,
    QueueExistsError,
    QueueNotFoundError,
)
from broker.events import MessageDeadLettered, MessageRedriven
from broker.ports import EventStore
from broker.state import FINISHED, FINISHED_KEPT_S, MessageState, to_us
from broker.store.memory import MemoryEventStore
from broker.store.postgres import PostgresDatabase, PostgresEventStore
from broker.store.sql import Database
from broker.store.sqlite import SqliteDatabase, SqliteEventStore
from broker.writer import Writer
from projections import as_of
from projections.models import views_file
from projections.runner import ProjectionRunner
from projections.views.messages import MESSAGE_VIEWS
from projections.views.projector import ViewsProjector
from tests.helpers import Counter, FakeClock, fresh_database
from tests.postgres import drop
from tests.postgres import fresh_database as fresh_postgres
from tests.stateful.model import Message, Model, Outcome

NAMES = st.sampled_from(["a", "b", "c", "dlq"])
# Timeouts and clock steps from one small set, so times often land exactly on a lease end,
# a delay's end or a retention boundary, where off-by-one mistakes live.
SECONDS = st.sampled_from([0, 1, 5, 10])
_OUTCOME_OF: dict[type[BrokerError], Outcome] = {
    QueueExistsError: "exists",
    InvalidCommandError: "invalid",
    QueueNotFoundError: "not_found",
    MessageNotFoundError: "not_found",
    LeaseLostError: "lease_lost",
    PurgeNotFoundError: "not_found",
}
PRIORITIES = st.sampled_from([0, 4, 9])
GROUPS = st.none() | st.sampled_from(["g1", "g2"])


class BrokerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.Runner()
        self.clock = FakeClock()
        self.ids = Counter("m")
        self.receipts = Counter("r")
        self.store = self.make_store()
        self.loop.run(self.store.open())
        self.writer = self.make_writer()
        # The read models, built by the views projector from the same log.
        self.views = self.make_views()
        self.loop.run(self.views.open())
        self.runner = self.make_runner()
        self.model = Model()
        self.leases: list[tuple[str, str, str]] = []  # (queue, message id, receipt) handed out
        self.lease_ends: dict[str, int | None] = {}  # receipt -> when it ends (None: released)
        self.acked: set[str] = set()
        self.lease_batch: dict[str, int] = {}  # receipt -> which receive handed it out
        self.seen = 0  # the log positions already folded into the model
        self.past: dict[int, Past] = {}  # position -> what the model said right after it
        # What the write side may forget (broker.state.FINISHED_KEPT_S): after which step the
        # model saw each message finish, when its last lease ended, and the last full sweep
        # (the step after which it ran, and its time).
        self.steps = 0
        self.finished_after: dict[str, int] = {}
        self.lease_end_of: dict[str, int] = {}
        self.swept: tuple[int, int] | None = None

    def make_store(self) -> EventStore:
        raise NotImplementedError

    def make_views(self) -> Database:
        self.views_dir = Path(tempfile.mkdtemp(prefix="cairn-views-"))
        return SqliteDatabase(
            views_file(str(fresh_database(self.views_dir))), table="projection_checkpoints"
        )

    def make_writer(self) -> Writer:
        writer = Writer(self.store, clock=self.clock, new_id=self.ids, new_receipt=self.receipts)
        self.loop.run(writer.start())
        return writer

    def make_runner(self) -> ProjectionRunner:
        runner = ProjectionRunner(self.store, self.views, [ViewsProjector()], batch_size=7)
        self.loop.run(runner.start())
        return runner

    def teardown(self) -> None:
        self.loop.run(self.writer.stop())
        self.loop.run(self.views.close())
        self.loop.run(self.store.close())
        self.loop.close()
        if hasattr(self, "views_dir"):
            shutil.rmtree(self.views_dir, ignore_errors=True)

    @property
    def now(self) -> int:
        return to_us(self.clock.now)

    def _finished(self, message: Message) -> bool:
        if message.status in ("acked", "dead_lettered", "expired", "redriven"):
            return True
        return message.status == "purged" and any(
            message in taken
            for purge, (_, taken) in self.model.purges.items()
            if purge in self.model.undone
        )

    def _note_finished(self) -> None:
        """Called by every check that looks at the write side, after each step: a message
        the model has seen finish is noted at the time it did (steps do not move the clock
        but ``advance_clock``, which finishes nothing)."""
        self.steps += 1
        for message_id, message in self.model.messages.items():
            if not self._finished(message):
                self.finished_after.pop(message_id, None)  # (a purge undone brought it back)
            elif message_id not in self.finished_after:
                self.finished_after[message_id] = self.steps

    def forgettable(self, message_id: str) -> bool:
        """The write side may have forgotten the message: it finished before the last full
        sweep, and its last lease (if any) ended at least FINISHED_KEPT_S before that sweep
        (a purge undone: at once)."""
        self._note_finished()
        finished = self.finished_after.get(message_id)
        if finished is None or self.swept is None or finished > self.swept[0]:
            return False
        message = self.model.messages[message_id]
        if message.status == "purged":
            return True
        return self.lease_end_of.get(message_id, 0) + FINISHED_KEPT_S * 1_000_000 <= self.swept[1]

    def run(self, command: AnyCommand) -> Reply | Outcome:
        try:
            reply = self.loop.run(self.writer.execute(command))
        except BrokerError as error:
            # By the nearest class the table names (LeaseSupersededError is a LeaseLostError).
            return next(_OUTCOME_OF[c] for c in type(error).__mro__ if c in _OUTCOME_OF)
        return reply

    @invariant()
    def the_broker_copied_exactly_what_the_model_moved(self) -> None:
        """Dead letters and redrives: the broker copied exactly the messages the model moved;
        the model then learns the new copies' ids (an invariant, so that it runs after both
        the broker and the model have taken the step)."""
        new = self.loop.run(self.store.read(self.seen, 1_000_000))
        made: dict[str, str] = {}
        for stored in new:
            event = stored.event()
            if isinstance(event, MessageDeadLettered):
                made[event.message_id] = event.dead_letter_message_id
            elif isinstance(event, MessageRedriven):
                made[event.message_id] = event.new_message_id
        if new:
            self.seen = new[-1].position
        expected = {move.source.id: move for move in self.model.moves}
        assert set(made) == set(expected), (made, list(expected))
        for source, new_id in made.items():
            self.model.adopt(expected[source], new_id, self.now)
        self.model.moves.clear()
        # The model, now whole, is what an as-of read of this position must say.
        self.past.setdefault(self.seen, Past.of(self.model))

    # ---- rules --------------------------------------------------------------------------

    @initialize()
    def queues_to_start_with(self) -> None:
        for name, vt, dead_letter in (("dlq", 5, None), ("a", 5, None), ("b", 1, (2, "dlq"))):
            max_count, dlq = dead_letter or (None, None)
            got = self.run(
                CreateQueue(
                    queue=name,
                    settings=QueueSettings(
                        visibility_timeout_s=vt,
                        retention_s=120,
                        max_receive_count=max_count,
                        dead_letter_queue=dlq,
                    ),
                )
            )
            assert not isinstance(got, str)
            assert self.model.create(name, vt, 0, 120, max_count, dlq) == "ok"

    @rule(
        name=NAMES,
        vt=SECONDS,
        delay=SECONDS,
        retention=st.sampled_from([60, 120, 1209600]),
        dead_letter=st.none() | st.tuples(st.integers(1, 3), NAMES),
        half=st.booleans(),
    )
    def create_queue(
        self,
        name: str,
        vt: int,
        delay: int,
        retention: int,
        dead_letter: tuple[int, str] | None,
        half: bool,
    ) -> None:
        max_count, dlq = dead_letter if dead_letter else (None, None)
        if half and dead_letter:  # sometimes only one of the pair: must be refused
            dlq = None
        settings_ = QueueSettings(
            visibility_timeout_s=vt,
            delay_s=delay,
            retention_s=retention,
            max_receive_count=max_count,
            dead_letter_queue=dlq,
        )
        got = self.run(CreateQueue(queue=name, settings=settings_))
        expected = self.model.create(name, vt, delay, retention, max_count, dlq)
        assert (got if isinstance(got, str) else "ok") == expected

    @rule(
        name=NAMES,
        entries=st.lists(
            st.tuples(
                st.none() | SECONDS, st.none() | st.sampled_from(["d1", "d2"]), PRIORITIES, GROUPS
            ),
            min_size=1,
            max_size=3,
        ),
    )
    def publish(
        self, name: str, entries: list[tuple[int | None, str | None, int, str | None]]
    ) -> None:
        messages = []
        for i, (delay, dedup, priority, group) in enumerate(entries):
            body = msgspec.json.encode({"n": self.model.seq + i})
            messages.append(
                NewMessage(
                    message_id=self.ids(),
                    body=msgspec.Raw(body),
                    delay_s=delay,
                    dedup_id=dedup,
                    priority=priority,
                    group_id=group,
                )
            )
        got = self.run(PublishMessages(queue=name, messages=tuple(messages)))
        expected = self.model.publish(
            name,
            [
                (m.message_id, bytes(m.body), m.delay_s, m.dedup_id, m.priority, m.group_id)
                for m in messages
            ],
            self.now,
        )
        if isinstance(got, str):
            assert got == expected
            return
        assert isinstance(got, PublishReply)
        assert [(r.id, r.duplicate) for r in got.results] == expected

    @rule(name=NAMES, count=st.integers(1, 3), vt=st.none() | SECONDS)
    def receive(self, name: str, count: int, vt: int | None) -> None:
        got = self.run(ReceiveMessages(queue=name, max_messages=count, visibility_timeout_s=vt))
        if isinstance(got, str):
            assert got == self.model.receive(name, count, vt, self.now, [])
            return
        assert isinstance(got, ReceiveReply)
        expected = self.model.receive(name, count, vt, self.now, [m.receipt for m in got.messages])
        assert isinstance(expected, list)
        assert [m.id for m in got.messages] == [m.id for m in expected]
        batch = len(self.leases)
        for delivered, message in zip(got.messages, expected, strict=True):
            assert bytes(delivered.body) == message.body
            assert (delivered.priority, delivered.group_id) == (message.priority, message.group)
            self.lease_batch[delivered.receipt] = batch
            self.lease_end_of[message.id] = to_us(delivered.visible_at)
            assert delivered.attributes == message.attributes
            assert delivered.receive_count == message.receive_count
            # Never two live leases: every earlier lease of this message has ended by now,
            # by the broker's own answers (ack, nack, extend), not by the model.
            for _, other_id, receipt in self.leases:
                if other_id == message.id:
                    end = self.lease_ends[receipt]
                    assert end is None or end <= self.now, (message.id, receipt, end)
            self.leases.append((name, message.id, delivered.receipt))
            self.lease_ends[delivered.receipt] = to_us(delivered.visible_at)

    def _pick(self, data: st.DataObject) -> tuple[str, str, str]:
        return data.draw(st.sampled_from(self.leases))

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        queue, message_id, receipt = self._pick(data)
        got = self.run(
            AckMessages(queue=queue, entries=(AckEntry(message_id=message_id, receipt=receipt),))
        )
        expected = self.model.ack(queue, message_id, receipt, self.now)
        if isinstance(got, str):
            assert got == expected
            return
        assert isinstance(got, AckReply)
        outcome = {"acked": "ok", "lease_lost": "lease_lost", "not_found": "not_found"}
        if outcome[got.results[0][1]] == "not_found" and self.forgettable(message_id):
            return  # pruned: the late ack is answered 404
        assert outcome[got.results[0][1]] == expected
        if expected == "ok":
            self.acked.add(message_id)
            self.lease_ends[receipt] = None

    @precondition(lambda self: self.leases)
    @rule(data=st.data(), delay=SECONDS)
    def nack(self, data: st.DataObject, delay: int) -> None:
        queue, message_id, receipt = self._pick(data)
        got = self.run(
            NackMessage(queue=queue, message_id=message_id, receipt=receipt, delay_s=delay)
        )
        expected = self.model.nack(queue, message_id, receipt, delay, self.now)
        if got == "not_found" and self.forgettable(message_id):
            return
        assert (got if isinstance(got, str) else "ok") == expected
        if expected == "ok":
            self.lease_ends[receipt] = None
            self.lease_end_of[message_id] = self.now  # a nack ends the lease now

    @precondition(lambda self: self.leases)
    @rule(data=st.data(), vt=SECONDS)
    def extend(self, data: st.DataObject, vt: int) -> None:
        queue, message_id, receipt = self._pick(data)
        got = self.run(
            ExtendLease(
                queue=queue, message_id=message_id, receipt=receipt, visibility_timeout_s=vt
            )
        )
        expected = self.model.extend(queue, message_id, receipt, vt, self.now)
        if got == "not_found" and self.forgettable(message_id):
            return
        assert (got if isinstance(got, str) else "ok") == expected
        if isinstance(got, ExtendReply):
            self.lease_ends[receipt] = to_us(got.visible_at)
            self.lease_end_of[message_id] = to_us(got.visible_at)

    @rule(seconds=st.sampled_from([1, 5, 10, 60, 120, 300]))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def sweep(self) -> None:
        self._note_finished()  # what finished before the sweep, apart from what it finishes
        self.model.sweep(self.now)
        self.run(Sweep())
        self._note_finished()
        self.swept = (self.steps, self.now)

    @rule(name=NAMES)
    def purge(self, name: str) -> None:
        got = self.run(PurgeQueue(queue=name))
        expected = self.model.purge(name)
        if isinstance(got, PurgeReply):
            assert isinstance(expected, list)
            assert got.purged == len(expected)
            queue = self.model.live(name)
            assert queue is not None
            self.model.purged(got.position, queue, expected)
        else:
            assert got == expected

    @rule(name=NAMES, data=st.data())
    def undo_purge(self, name: str, data: st.DataObject) -> None:
        purge = data.draw(st.sampled_from([*self.model.purges, 1]))  # 1: never a purge
        got = self.run(UndoPurge(queue=name, purge=purge))
        expected = self.model.undo(name, purge, self.now)
        assert ((got.restored, got.skipped) if isinstance(got, UndoReply) else got) == expected

    @rule(name=NAMES)
    def restore(self, name: str) -> None:
        got = self.run(RestoreQueue(queue=name))
        assert ("ok" if isinstance(got, QueueReply) else got) == self.model.restore(name, self.now)

    @rule(name=NAMES)
    def delete(self, name: str) -> None:
        got = self.run(DeleteQueue(queue=name))
        assert (got if isinstance(got, str) else "ok") == self.model.delete(name)

    @rule(name=NAMES, to=st.none() | NAMES)
    def redrive(self, name: str, to: str | None) -> None:
        expected = self.model.redrive(name, to, self.now)
        got = self.run(RedriveMessages(queue=name, to=to))
        assert (got.moved if isinstance(got, RedriveReply) else got) == expected

    # ---- invariants ---------------------------------------------------------------------

    @invariant()
    def every_message_has_the_models_status(self) -> None:
        self._note_finished()
        ids = list(self.model.messages)
        states = self.loop.run(self.store.transact(lambda tx: [tx.message(i) for i in ids]))
        for message_id, state in zip(ids, states, strict=True):
            model: Message = self.model.messages[message_id]
            if state is None:  # pruned: only what the write side may forget
                assert self.forgettable(message_id), message_id
                continue
            assert not self._overdue(state), message_id
            # "waiting": a group's message behind its head (the model works that out itself).
            status = "ready" if state.status == "waiting" else state.status
            assert (status, state.receive_count) == (model.status, model.receive_count), message_id
            if message_id in self.acked:
                assert state.status == "acked"

    def _overdue(self, state: MessageState) -> bool:
        """A row the last full sweep should have pruned (it had fewer than a batch to do)."""
        finished = self.finished_after.get(state.message_id)
        if self.swept is None or finished is None or finished > self.swept[0]:
            return False  # it finished since the last full sweep
        if state.status == "purged":
            return state.purged_by in self.model.undone
        kept_until = state.visible_at + FINISHED_KEPT_S * 1_000_000
        return state.status in FINISHED and kept_until <= self.swept[1]

    @invariant()
    def the_read_model_agrees_with_the_write_side(self) -> None:
        """A projector bug (a wrong status after a nack, a count missed) shows here: the read
        model, caught up, says of every message what the write side says."""
        self.loop.run(self.runner.catch_up())
        ids = list(self.model.messages)
        written = self.loop.run(self.store.transact(lambda tx: [tx.message(i) for i in ids]))
        viewed = self.loop.run(
            self.views.snapshot(
                lambda conn: {
                    row.message_id: row
                    for row in MESSAGE_VIEWS.load_all(conn.query(MESSAGE_VIEWS.select))
                }
            )
        )
        for message_id, state in zip(ids, written, strict=True):
            view = viewed[message_id]  # the read models keep every message
            if state is None:
                continue
            assert (view.status, view.receive_count, view.visible_at) == (
                "ready" if state.status == "waiting" else state.status,
                state.receive_count,
                state.visible_at,
            ), message_id

    @invariant()
    def a_group_is_in_flight_from_one_receive_at_most(self) -> None:
        """While any message of a group is leased, no other receive got one of that group."""
        ids = list(self.model.messages)
        states = self.loop.run(self.store.transact(lambda tx: [tx.message(i) for i in ids]))
        receives: dict[tuple[int, str], set[int]] = {}
        for message_id, state in zip(ids, states, strict=True):
            if state is None or state.group_id is None or state.status != "leased":
                continue
            receipt = self.model.messages[message_id].receipt
            assert receipt is not None
            receives.setdefault((state.queue_id, state.group_id), set()).add(
                self.lease_batch[receipt]
            )
        assert all(len(batches) == 1 for batches in receives.values()), receives

    @precondition(lambda self: self.past)
    @rule(data=st.data())
    def read_the_past(self, data: st.DataObject) -> None:
        """An as-of read of any position so far, of every queue and of its messages, says
        what the model said right after that position."""
        position = data.draw(st.sampled_from(sorted(self.past)))
        then = self.past[position]
        self.loop.run(self.runner.catch_up())
        found = self.loop.run(self.store.read_positions([position]))
        now = to_us(datetime.fromisoformat(found[0].at)) if found else 0
        for name in ("a", "b", "c", "dlq"):
            queue = self.loop.run(as_of.get_queue(self.views, name, position, now))
            if name not in then.queues:
                assert queue is None, (name, position)
                continue
            assert queue is not None, (name, position)
            expected = then.statuses(name, now)
            page = self.loop.run(
                as_of.list_messages(
                    self.views,
                    self.store,
                    name,
                    position=position,
                    status=None,
                    after=None,
                    limit=500,
                    now=now,
                )
            )
            assert {m.id: (m.status, m.receive_count) for m in page.messages} == expected
            counts = Counter_(status for status, _ in expected.values())
            stats = queue.stats
            assert (stats.available, stats.delayed, stats.in_flight) == (
                counts["available"],
                counts["delayed"],
                counts["in_flight"],
            ), (name, position)
            if expected:
                message_id = data.draw(st.sampled_from(sorted(expected)))
                one = self.loop.run(
                    as_of.get_message(self.views, self.store, name, message_id, position, now)
                )
                assert one is not None
                assert (one.status, one.receive_count) == expected[message_id]
                assert all(entry.position <= position for entry in one.history)

    @invariant()
    def positions_are_contiguous(self) -> None:
        positions = [e.position for e in self.loop.run(self.store.read(0, 1_000_000))]
        assert positions == list(range(1, len(positions) + 1))


@dataclass(frozen=True)
class Past:
    """What the model said right after one position: the live queues, and per message its
    queue, status, visible_at and receive count."""

    queues: frozenset[str]
    messages: dict[str, tuple[str, str, int, int]]

    @classmethod
    def of(cls, model: Model) -> Past:
        live = frozenset(name for name, q in model.queues.items() if q.alive)
        return cls(
            live,
            {
                m.id: (m.queue.name, m.status, m.visible_at, m.receive_count)
                for m in model.messages.values()
                if m.queue.alive
            },
        )

    def statuses(self, queue: str, now: int) -> dict[str, tuple[str, int]]:
        """The queue's messages with their public status at ``now``, and receive counts."""
        return {
            message_id: (_public(status, visible_at, now), count)
            for message_id, (name, status, visible_at, count) in self.messages.items()
            if name == queue
        }


def _public(status: str, visible_at: int, now: int) -> str:
    if status == "ready":
        return "available" if visible_at <= now else "delayed"
    return "in_flight" if status == "leased" else status


class MemoryBroker(BrokerMachine):
    def make_store(self) -> EventStore:
        return MemoryEventStore()


class SqliteBroker(BrokerMachine):
    def make_store(self) -> EventStore:
        self.directory = Path(tempfile.mkdtemp(prefix="cairn-model-"))
        return SqliteEventStore(str(fresh_database(self.directory)))

    @rule()
    def restart(self) -> None:
        """Stop everything and open the same file again: the state must come back whole."""
        self.loop.run(self.writer.stop())
        self.loop.run(self.store.close())
        self.store = SqliteEventStore(str(self.directory / "cairn.db"))
        self.loop.run(self.store.open())
        self.writer = self.make_writer()
        self.runner = self.make_runner()

    def teardown(self) -> None:
        super().teardown()
        shutil.rmtree(self.directory, ignore_errors=True)


class PostgresBroker(BrokerMachine):
    def make_store(self) -> EventStore:
        self.url = fresh_postgres()
        return PostgresEventStore(self.url)

    def make_views(self) -> Database:
        return PostgresDatabase(self.url, name="views")

    @rule()
    def restart(self) -> None:
        """Stop everything and connect again: the state must come back whole."""
        self.loop.run(self.writer.stop())
        self.loop.run(self.store.close())
        self.store = PostgresEventStore(self.url)
        self.loop.run(self.store.open())
        self.writer = self.make_writer()
        self.runner = self.make_runner()

    def teardown(self) -> None:
        super().teardown()
        drop(self.url)


_settings: Any = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMemoryBroker = _settings(MemoryBroker).TestCase
TestSqliteBroker = settings(_settings, max_examples=60)(SqliteBroker).TestCase
TestPostgresBroker = settings(_settings, max_examples=40)(PostgresBroker).TestCase
