"""Priorities and FIFO groups (API.md "Priorities and FIFO groups"), over the in-memory store
and a clock we move: which messages a receive may take, and what lets a group go on."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from broker.commands import (
    ExtendLease,
    NackMessage,
    PurgeQueue,
    ReceiveMessages,
    Sweep,
)
from broker.decide import Delivery, ReceiveReply
from broker.errors import LeaseLostError
from broker.events import MessageAcked, MessageDeadLettered, MessagePublished
from broker.state import to_us
from tests.conftest import Broker
from tests.unit.steps import ack, new, publish, receive


async def nack(
    broker: Broker, queue: str, delivery: Delivery, delay_s: int = 0, reason: str | None = None
) -> None:
    await broker.run(
        NackMessage(
            queue=queue,
            message_id=delivery.id,
            receipt=delivery.receipt,
            delay_s=delay_s,
            reason=reason,
        )
    )


def ids(deliveries: list[Delivery]) -> list[str]:
    return [d.id for d in deliveries]


# --- priorities -----------------------------------------------------------------------------


async def test_higher_priority_is_delivered_first_then_publish_order(broker: Broker) -> None:
    await broker.create("q")
    low, high1, default, high2, mid, zero = await publish(
        broker,
        "q",
        new("low", priority=1),
        new("high1", priority=9),
        new("default"),
        new("high2", priority=9),
        new("mid", priority=4),
        new("zero", priority=0),
    )
    got = await receive(broker, "q", 10)
    assert ids(got) == [high1, high2, default, mid, low, zero]
    assert [d.priority for d in got] == [9, 9, 4, 4, 1, 0]


async def test_priority_order_holds_across_receives_of_one(broker: Broker) -> None:
    await broker.create("q")
    a, b, c = await publish(broker, "q", new(priority=2), new(priority=5), new(priority=2))
    [d] = await publish(broker, "q", new(priority=7))  # published last, delivered first
    order = [ids(await receive(broker, "q"))[0] for _ in range(4)]
    assert order == [d, b, a, c]
    assert await receive(broker, "q") == []


async def test_a_delivery_shows_priority_and_group_id(broker: Broker) -> None:
    await broker.create("q")
    await publish(broker, "q", new("plain"), new("grouped", priority=8, group="g-1:x"))
    got = {bytes(d.body): d for d in await receive(broker, "q", 10)}
    assert (got[b'"plain"'].priority, got[b'"plain"'].group_id) == (4, None)
    assert (got[b'"grouped"'].priority, got[b'"grouped"'].group_id) == (8, "g-1:x")


async def test_a_nacked_message_keeps_its_priority_and_place(broker: Broker) -> None:
    await broker.create("q")
    a, b = await publish(broker, "q", new(priority=6), new(priority=6))
    [c] = await publish(broker, "q", new(priority=3))
    first = await receive(broker, "q")
    assert ids(first) == [a]
    await nack(broker, "q", first[0])
    assert ids(await receive(broker, "q", 10)) == [a, b, c]


# --- groups: who may be received ------------------------------------------------------------


async def test_a_groups_followers_wait_behind_its_head(broker: Broker) -> None:
    await broker.create("q")
    a, b, c = await publish(broker, "q", new(group="g"), new(group="g"), new(group="g"))
    statuses = [(await broker.message(m)).status for m in (a, b, c)]  # type: ignore[union-attr]
    assert statuses == ["ready", "waiting", "waiting"]


async def test_only_a_groups_head_is_received(broker: Broker) -> None:
    await broker.create("q")
    a, _b, _c = await publish(broker, "q", new(group="g"), new(group="g"), new(group="g"))
    assert ids(await receive(broker, "q")) == [a]
    assert await receive(broker, "q", 10) == []  # the group is in flight


async def test_within_a_group_publish_order_beats_priority(broker: Broker) -> None:
    await broker.create("q")
    low, high = await publish(broker, "q", new(group="g", priority=0), new(group="g", priority=9))
    assert ids(await receive(broker, "q")) == [low]
    assert await receive(broker, "q") == []
    state = await broker.message(high)
    assert state is not None and state.status == "waiting"


async def test_a_group_head_still_yields_to_higher_priorities(broker: Broker) -> None:
    await broker.create("q")
    head, _ = await publish(broker, "q", new(group="g", priority=1), new(group="g", priority=9))
    [urgent] = await publish(broker, "q", new(priority=9))
    assert ids(await receive(broker, "q")) == [urgent]
    assert ids(await receive(broker, "q")) == [head]


async def test_nothing_of_a_group_is_received_while_one_is_in_flight(broker: Broker) -> None:
    await broker.create("q")
    [a, _b] = await publish(broker, "q", new(group="g"), new(group="g"))
    [held] = await receive(broker, "q")
    assert held.id == a
    await publish(broker, "q", new(group="g"))
    await broker.run(
        ExtendLease(queue="q", message_id=a, receipt=held.receipt, visibility_timeout_s=300)
    )
    broker.clock.advance(60)  # past the first lease's end, not the extended one
    assert await receive(broker, "q", 10) == []


async def test_a_receive_takes_consecutive_group_members_up_to_max_messages(
    broker: Broker,
) -> None:
    await broker.create("q")
    a, b, c, d = await publish(broker, "q", *(new(group="g") for _ in range(4)))
    got = await receive(broker, "q", 3)
    assert ids(got) == [a, b, c]
    assert await receive(broker, "q", 10) == []
    assert await ack(broker, "q", *got) == ["acked"] * 3
    assert ids(await receive(broker, "q", 10)) == [d]


async def test_a_group_in_flight_as_several_holds_until_each_is_settled(broker: Broker) -> None:
    await broker.create("q")
    _a, _b, c = await publish(broker, "q", *(new(group="g") for _ in range(3)))
    first, second = await receive(broker, "q", 2)
    await ack(broker, "q", first)
    assert await receive(broker, "q", 10) == []  # the second is still in flight
    await ack(broker, "q", second)
    assert ids(await receive(broker, "q", 10)) == [c]


async def test_group_followers_use_up_the_room_before_other_heads(broker: Broker) -> None:
    await broker.create("q")
    a1, a2, a3 = await publish(broker, "q", *(new(group="a") for _ in range(3)))
    [b1] = await publish(broker, "q", new(group="b"))
    assert ids(await receive(broker, "q", 2)) == [a1, a2]
    assert ids(await receive(broker, "q", 10)) == [b1]  # a3 waits for its group
    assert await receive(broker, "q", 10) == []
    state = await broker.message(a3)
    assert state is not None and state.status == "waiting"


async def test_a_receive_takes_a_group_with_its_followers_and_the_other_heads(
    broker: Broker,
) -> None:
    await broker.create("q")
    a1, x, b1, a2 = await publish(
        broker, "q", new(group="a"), new(), new(group="b"), new(group="a")
    )
    got = ids(await receive(broker, "q", 10))
    assert sorted(got) == sorted([a1, a2, x, b1])
    assert got.index(a1) < got.index(a2)


async def test_a_delayed_follower_is_not_taken_with_its_head(broker: Broker) -> None:
    await broker.create("q")
    a, b = await publish(broker, "q", new(group="g"), new(group="g", delay_s=10))
    got = await receive(broker, "q", 10)
    assert ids(got) == [a]
    await ack(broker, "q", *got)
    assert await receive(broker, "q", 10) == []
    broker.clock.advance(10)
    assert ids(await receive(broker, "q", 10)) == [b]


async def test_a_delayed_head_holds_its_group_back(broker: Broker) -> None:
    await broker.create("q")
    a, b = await publish(broker, "q", new(group="g", delay_s=10), new(group="g"))
    [x] = await publish(broker, "q", new())
    assert ids(await receive(broker, "q", 10)) == [x]
    broker.clock.advance(10)
    assert ids(await receive(broker, "q", 10)) == [a, b]


# --- groups: what puts a message back, what lets the next one through -----------------------


async def test_a_nack_puts_the_message_back_at_its_groups_head(broker: Broker) -> None:
    await broker.create("q")
    a, b = await publish(broker, "q", new(group="g"), new(group="g"))
    [held] = await receive(broker, "q")
    await nack(broker, "q", held)
    again = await receive(broker, "q", 10)
    assert ids(again) == [a, b]
    assert again[0].receive_count == 2


async def test_a_nack_of_a_follower_waits_for_the_rest_then_goes_first(broker: Broker) -> None:
    await broker.create("q")
    _a, b, c = await publish(broker, "q", *(new(group="g") for _ in range(3)))
    first, second = await receive(broker, "q", 2)
    await nack(broker, "q", second)
    assert await receive(broker, "q", 10) == []  # the first is still in flight
    await ack(broker, "q", first)
    assert ids(await receive(broker, "q", 10)) == [b, c]


async def test_a_nacked_head_goes_before_the_rest_once_the_group_is_free(broker: Broker) -> None:
    await broker.create("q")
    a, _b, c = await publish(broker, "q", *(new(group="g") for _ in range(3)))
    first, second = await receive(broker, "q", 2)
    await nack(broker, "q", first)
    assert await receive(broker, "q", 10) == []
    await ack(broker, "q", second)
    assert ids(await receive(broker, "q", 10)) == [a, c]


async def test_a_lease_expiry_puts_the_message_back_at_its_groups_head(broker: Broker) -> None:
    await broker.create("q", visibility_timeout_s=5)
    a, b = await publish(broker, "q", new(group="g"), new(group="g"))
    await receive(broker, "q")
    broker.clock.advance(5)
    again = await receive(broker, "q", 10)
    assert ids(again) == [a, b]
    assert [d.receive_count for d in again] == [2, 1]


async def test_a_lease_expiry_noticed_by_the_sweeper_frees_the_group(broker: Broker) -> None:
    await broker.create("q", visibility_timeout_s=5)
    a, b = await publish(broker, "q", new(group="g"), new(group="g"))
    await receive(broker, "q")
    broker.clock.advance(5)
    await broker.run(Sweep())
    assert [(await broker.message(m)).status for m in (a, b)] == [  # type: ignore[union-attr]
        "ready",
        "waiting",
    ]


async def test_a_nack_delay_holds_the_whole_group_back(broker: Broker) -> None:
    await broker.create("q")
    a, b = await publish(broker, "q", new(group="g"), new(group="g"))
    [x] = await publish(broker, "q", new())
    [held] = await receive(broker, "q")
    assert held.id == a
    await nack(broker, "q", held, delay_s=30)
    other = await receive(broker, "q", 10)
    assert ids(other) == [x]
    await ack(broker, "q", *other)
    broker.clock.advance(29)
    empty = await broker.run(ReceiveMessages(queue="q", max_messages=10))
    assert isinstance(empty, ReceiveReply) and empty.messages == []
    assert empty.next_visible_at == to_us(broker.clock.now + timedelta(seconds=1))
    broker.clock.advance(1)
    assert ids(await receive(broker, "q", 10)) == [a, b]


async def test_an_ack_lets_the_next_one_through(broker: Broker) -> None:
    await broker.create("q")
    _a, b = await publish(broker, "q", new(group="g"), new(group="g"))
    [held] = await receive(broker, "q")
    assert await ack(broker, "q", held) == ["acked"]
    assert ids(await receive(broker, "q")) == [b]


async def test_a_dead_lettering_lets_the_next_one_through(broker: Broker) -> None:
    await broker.create("dlq")
    await broker.create("q", max_receive_count=1, dead_letter_queue="dlq")
    a, b = await publish(broker, "q", new(group="g"), new(group="g"))
    [held] = await receive(broker, "q")
    await nack(broker, "q", held, reason="cannot parse")
    state = await broker.message(a)
    assert state is not None and state.status == "dead_lettered"
    assert ids(await receive(broker, "q")) == [b]


async def test_a_dead_lettering_by_lease_expiry_lets_the_next_one_through(
    broker: Broker,
) -> None:
    await broker.create("dlq")
    await broker.create("q", visibility_timeout_s=5, max_receive_count=1, dead_letter_queue="dlq")
    _a, b = await publish(broker, "q", new(group="g"), new(group="g"))
    await receive(broker, "q")
    broker.clock.advance(5)
    assert ids(await receive(broker, "q")) == [b]


async def test_a_dead_letter_copy_keeps_priority_group_and_the_nack_reason(
    broker: Broker,
) -> None:
    await broker.create("dlq")
    await broker.create("q", max_receive_count=1, dead_letter_queue="dlq")
    [mid] = await publish(broker, "q", new({"n": 1}, priority=7, group="g", attributes={"k": "v"}))
    [held] = await receive(broker, "q")
    await nack(broker, "q", held, reason="cannot parse")
    [copy] = await receive(broker, "dlq")
    assert (copy.priority, copy.group_id) == (7, "g")
    assert copy.attributes == {"k": "v", "source_queue": "q", "source_message_id": mid}
    events = await broker.events()
    dead = next(e for e in events if isinstance(e, MessageDeadLettered))
    published = next(e for e in events if isinstance(e, MessagePublished) and e.queue == "dlq")
    assert dead.reason == "cannot parse" and published.reason == "cannot parse"
    state = await broker.message(copy.id)
    assert state is not None and state.reason == "cannot parse"


async def test_a_dead_letter_copy_carries_the_final_nacks_reason_not_an_earlier_one(
    broker: Broker,
) -> None:
    await broker.create("dlq")
    await broker.create("q", max_receive_count=2, dead_letter_queue="dlq")
    await publish(broker, "q", new())
    [first] = await receive(broker, "q")
    await nack(broker, "q", first, reason="first try: timeout")
    [second] = await receive(broker, "q")
    await nack(broker, "q", second, reason="second try: bad schema")
    dead = next(e for e in await broker.events() if isinstance(e, MessageDeadLettered))
    assert dead.reason == "second try: bad schema"


async def test_a_dead_letter_copy_by_lease_expiry_says_so(broker: Broker) -> None:
    await broker.create("dlq")
    await broker.create("q", visibility_timeout_s=5, max_receive_count=1, dead_letter_queue="dlq")
    await publish(broker, "q", new(priority=2, group="g"))
    await receive(broker, "q")
    broker.clock.advance(5)
    await broker.run(Sweep())
    [copy] = await receive(broker, "dlq")
    assert (copy.priority, copy.group_id) == (2, "g")
    dead = next(e for e in await broker.events() if isinstance(e, MessageDeadLettered))
    assert dead.reason is not None and "expired" in dead.reason


async def test_a_dead_letter_copy_carries_the_last_nack_reason_over_the_expiry(
    broker: Broker,
) -> None:
    await broker.create("dlq")
    await broker.create("q", visibility_timeout_s=5, max_receive_count=2, dead_letter_queue="dlq")
    await publish(broker, "q", new())
    [first] = await receive(broker, "q")
    await nack(broker, "q", first, reason="db down")
    await receive(broker, "q")
    broker.clock.advance(5)
    await broker.run(Sweep())
    dead = next(e for e in await broker.events() if isinstance(e, MessageDeadLettered))
    assert dead.reason == "db down"


async def test_a_dead_letter_copies_group_keeps_its_order_in_the_dead_letter_queue(
    broker: Broker,
) -> None:
    await broker.create("dlq")
    await broker.create("q", max_receive_count=1, dead_letter_queue="dlq")
    await publish(broker, "q", new("first", group="g"), new("second", group="g"))
    for _ in range(2):
        [held] = await receive(broker, "q")
        await nack(broker, "q", held)
    copies = await receive(broker, "dlq", 10)
    assert [bytes(d.body) for d in copies] == [b'"first"', b'"second"']
    assert [d.group_id for d in copies] == ["g", "g"]


async def test_an_expiry_lets_the_next_one_through(broker: Broker) -> None:
    await broker.create("q", retention_s=60)
    [a] = await publish(broker, "q", new(group="g"))
    broker.clock.advance(30)
    [b] = await publish(broker, "q", new(group="g"))
    broker.clock.advance(30)  # a has outlived retention, b has not
    assert ids(await receive(broker, "q", 10)) == [b]
    state = await broker.message(a)
    assert state is not None and state.status == "expired"


async def test_an_expiry_while_in_flight_lets_the_next_one_through(broker: Broker) -> None:
    await broker.create("q", retention_s=60, visibility_timeout_s=20)
    [a] = await publish(broker, "q", new(group="g"))
    broker.clock.advance(50)
    [b] = await publish(broker, "q", new(group="g"))
    assert ids(await receive(broker, "q")) == [a]
    broker.clock.advance(20)  # the lease ends after a's retention did
    assert ids(await receive(broker, "q", 10)) == [b]
    state = await broker.message(a)
    assert state is not None and state.status == "expired"


async def test_a_purge_lets_the_next_one_through(broker: Broker) -> None:
    await broker.create("q")
    await publish(broker, "q", new(group="g"), new(group="g"))
    [held] = await receive(broker, "q")
    await broker.run(PurgeQueue(queue="q"))
    [c] = await publish(broker, "q", new(group="g"))
    assert ids(await receive(broker, "q", 10)) == [c]
    assert await ack(broker, "q", held) == ["lease_lost"]


async def test_a_stale_receipt_cannot_nack_a_group_member_again(broker: Broker) -> None:
    await broker.create("q")
    await publish(broker, "q", new(group="g"), new(group="g"))
    [held] = await receive(broker, "q")
    await nack(broker, "q", held)
    with pytest.raises(LeaseLostError):
        await nack(broker, "q", held)


# --- independence -----------------------------------------------------------------------------


async def test_ungrouped_messages_are_independent_of_groups(broker: Broker) -> None:
    await broker.create("q")
    a, _b = await publish(broker, "q", new(group="g"), new(group="g"))
    x, y = await publish(broker, "q", new(), new())
    assert ids(await receive(broker, "q")) == [a]
    assert ids(await receive(broker, "q", 10)) == [x, y]


async def test_different_groups_are_independent(broker: Broker) -> None:
    await broker.create("q")
    a1, a2, b1, _b2 = await publish(
        broker, "q", new(group="a"), new(group="a"), new(group="b"), new(group="b")
    )
    [got_a] = await receive(broker, "q")
    [got_b] = await receive(broker, "q")
    assert (got_a.id, got_b.id) == (a1, b1)
    assert await receive(broker, "q", 10) == []
    await ack(broker, "q", got_a)
    assert ids(await receive(broker, "q", 10)) == [a2]


async def test_the_same_group_id_in_two_queues_is_two_groups(broker: Broker) -> None:
    await broker.create("q1")
    await broker.create("q2")
    [a] = await publish(broker, "q1", new(group="g"))
    [b] = await publish(broker, "q2", new(group="g"))
    assert ids(await receive(broker, "q1")) == [a]
    assert ids(await receive(broker, "q2")) == [b]


# --- the property ---------------------------------------------------------------------------

GROUPS = st.sampled_from([None, None, "a", "b", "c"])
PUBLISH = st.tuples(st.just("publish"), st.lists(st.tuples(st.integers(0, 9), GROUPS), max_size=6))
STEP = st.one_of(
    PUBLISH,
    st.tuples(st.just("receive"), st.integers(1, 5)),
    st.tuples(st.just("ack"), st.integers(0, 50)),
    st.tuples(st.just("nack"), st.integers(0, 50)),
    st.tuples(st.just("expire"), st.just(0)),
)


@dataclass
class _Msg:
    id: str
    priority: int
    group: str | None
    order: int
    lease: str | None = None
    """The receipt of its latest lease, while an ack with it may still settle the message."""
    in_flight: bool = False


@dataclass
class _Model:
    """What the contract says a receive gets: among available messages (ungrouped ones, and
    the head of each group with nothing in flight), highest priority first, then publish
    order; a group's head brings the group's next messages along, in order, while room
    lasts."""

    pending: list[_Msg] = field(default_factory=list)
    acked: dict[str, str] = field(default_factory=dict)
    """Settled messages, with the receipt that settled each."""
    count: int = 0

    def groups_in_flight(self) -> set[str]:
        return {m.group for m in self.pending if m.in_flight and m.group is not None}

    def expected(self, room: int) -> list[str]:
        busy = self.groups_in_flight()
        heads: list[_Msg] = []
        seen: set[str] = set()
        for m in sorted(self.pending, key=lambda m: m.order):
            if m.group is None:
                if not m.in_flight:
                    heads.append(m)
            elif m.group not in busy and m.group not in seen:
                seen.add(m.group)
                heads.append(m)
        taken: list[_Msg] = []
        for head in sorted(heads, key=lambda m: (-m.priority, m.order)):
            if len(taken) == room:
                break
            taken.append(head)
            if head.group is None:
                continue
            for follower in sorted(self.pending, key=lambda m: m.order):
                if len(taken) == room:
                    break
                if follower.group == head.group and follower.order > head.order:
                    taken.append(follower)
        return [m.id for m in taken]

    def find(self, message_id: str) -> _Msg | None:
        return next((m for m in self.pending if m.id == message_id), None)


async def _check_script(script: list[tuple[str, object]]) -> None:
    broker = Broker()
    await broker.writer.start()
    try:
        await broker.create("q", visibility_timeout_s=30)
        model = _Model()
        deliveries: list[Delivery] = []
        for op, arg in script:
            note(f"{op} {arg}")
            if op == "publish":
                assert isinstance(arg, list)
                if not arg:
                    continue
                sent = [new(priority=p, group=g) for p, g in arg]
                for message_id, (p, g) in zip(await publish(broker, "q", *sent), arg, strict=True):
                    model.pending.append(_Msg(message_id, p, g, model.count))
                    model.count += 1
            elif op == "receive":
                assert isinstance(arg, int)
                busy = model.groups_in_flight()
                want = model.expected(arg)
                got = await receive(broker, "q", arg)
                assert ids(got) == want
                for d in got:
                    # never a message of a group that was already in flight
                    assert d.group_id is None or d.group_id not in busy
                    m = model.find(d.id)
                    assert m is not None
                    m.in_flight, m.lease = True, d.receipt
                deliveries += got
            elif op == "ack" and deliveries:
                assert isinstance(arg, int)
                d = deliveries[arg % len(deliveries)]
                m = model.find(d.id)
                outcome = (await ack(broker, "q", d))[0]
                if m is not None and m.lease == d.receipt:
                    assert outcome == "acked"
                    model.pending.remove(m)
                    model.acked[m.id] = d.receipt
                elif m is None and model.acked.get(d.id) == d.receipt:
                    assert outcome == "acked"  # the same receipt again: idempotent
                else:
                    assert outcome == "lease_lost"
            elif op == "nack" and deliveries:
                assert isinstance(arg, int)
                d = deliveries[arg % len(deliveries)]
                m = model.find(d.id)
                if m is not None and m.in_flight and m.lease == d.receipt:
                    await nack(broker, "q", d)
                    m.in_flight, m.lease = False, None
                else:
                    with pytest.raises(LeaseLostError):
                        await nack(broker, "q", d)
            elif op == "expire":
                broker.clock.advance(30)
                for m in model.pending:
                    m.in_flight = False  # its lease may still ack until someone re-leases it
        # Then drain: every receive's answer as the model says, until nothing is left.
        for _ in range(model.count + 1):
            if not model.pending:
                break
            for m in model.pending:
                if m.in_flight:
                    m.in_flight = False
            broker.clock.advance(30)
            while True:
                want = model.expected(10)
                got = await receive(broker, "q", 10)
                assert ids(got) == want
                if not got:
                    break
                assert await ack(broker, "q", *got) == ["acked"] * len(got)
                for d in got:
                    m = model.find(d.id)
                    assert m is not None
                    model.pending.remove(m)
                    model.acked[m.id] = d.receipt
        assert model.pending == []
        acked = [e.message_id for e in await broker.events() if isinstance(e, MessageAcked)]
        assert sorted(acked) == sorted(model.acked)  # each message settled exactly once
    finally:
        await broker.writer.stop()


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(script=st.lists(STEP, max_size=30))
def test_receives_follow_priority_then_publish_order_and_one_group_turn_at_a_time(
    script: list[tuple[str, object]],
) -> None:
    asyncio.run(_check_script(script))


async def _drain_in_order(batches: list[list[tuple[int, str | None]]], room: int) -> None:
    """Publish everything, then receive+ack until empty: per group, the order delivered is
    publish order; each receive takes the best available heads first."""
    broker = Broker()
    await broker.writer.start()
    try:
        await broker.create("q")
        published: dict[str, tuple[int, str | None, int]] = {}
        order = 0
        for batch in batches:
            if not batch:
                continue
            sent = [new(priority=p, group=g) for p, g in batch]
            for message_id, (p, g) in zip(await publish(broker, "q", *sent), batch, strict=True):
                published[message_id] = (p, g, order)
                order += 1
        delivered: list[str] = []
        while True:
            got = await receive(broker, "q", room)
            if not got:
                break
            left = {m for m in published if m not in delivered}
            # The first of each receive is the best available head: nothing left beats it.
            heads = {
                m
                for m in left
                if published[m][1] is None
                or published[m][2]
                == min(published[o][2] for o in left if published[o][1] == published[m][1])
            }
            best = min(heads, key=lambda m: (-published[m][0], published[m][2]))
            assert got[0].id == best, (published[got[0].id], published[best])
            for group in {d.group_id for d in got if d.group_id is not None}:
                # a group comes as its next messages, in publish order
                mine = [d.id for d in got if d.group_id == group]
                queue_order = sorted(
                    (m for m in left if published[m][1] == group), key=lambda m: published[m][2]
                )
                assert mine == queue_order[: len(mine)]
            delivered += ids(got)
            await ack(broker, "q", *got)
        assert sorted(delivered) == sorted(published)
        for group in {g for _, g, _ in published.values() if g is not None}:
            mine = [m for m in delivered if published[m][1] == group]
            assert mine == sorted(mine, key=lambda m: published[m][2])
    finally:
        await broker.writer.stop()


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    batches=st.lists(
        st.lists(st.tuples(st.integers(0, 9), GROUPS), min_size=1, max_size=8), max_size=4
    ),
    room=st.integers(1, 4),
)
def test_a_receive_and_ack_drain_keeps_group_order_and_takes_the_best_head_first(
    batches: list[list[tuple[int, str | None]]], room: int
) -> None:
    asyncio.run(_drain_in_order(batches, room))
