"""The decision logic, command by command, over the in-memory store and a clock we move."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from broker.commands import (
    AckEntry,
    AckMessages,
    DeleteQueue,
    ExtendLease,
    NackMessage,
    NewMessage,
    PublishMessages,
    PurgeQueue,
    ReceiveMessages,
    RedriveMessages,
    Sweep,
    UpdateQueue,
)
from broker.decide import (
    AckReply,
    ExtendReply,
    PublishReply,
    PurgeReply,
    ReceiveReply,
    RedriveReply,
)
from broker.errors import (
    InvalidCommandError,
    LeaseLostError,
    MessageNotFoundError,
    QueueExistsError,
    QueueNotFoundError,
    StoreUnavailableError,
)
from broker.events import MessageDeadLettered, MessagePublished
from tests.conftest import Broker
from tests.helpers import message


async def publish(
    broker: Broker,
    queue: str,
    *bodies: object,
    delay_s: int | None = None,
    dedup_id: str | None = None,
    attributes: dict[str, str] | None = None,
) -> list[str]:
    messages = tuple(
        message(b, delay_s=delay_s, dedup_id=dedup_id, attributes=attributes) for b in bodies
    )
    reply = await broker.run(PublishMessages(queue=queue, messages=messages))
    assert isinstance(reply, PublishReply)
    return [r.id for r in reply.results]


async def receive(broker: Broker, queue: str, n: int = 1, vt: int | None = None) -> ReceiveReply:
    reply = await broker.run(ReceiveMessages(queue=queue, max_messages=n, visibility_timeout_s=vt))
    assert isinstance(reply, ReceiveReply)
    return reply


async def ack(broker: Broker, queue: str, message_id: str, receipt: str) -> str:
    reply = await broker.run(
        AckMessages(queue=queue, entries=(AckEntry(message_id=message_id, receipt=receipt),))
    )
    assert isinstance(reply, AckReply)
    return reply.results[0][1]


async def test_a_queue_name_is_unique_among_live_queues(broker: Broker) -> None:
    await broker.create("orders")
    with pytest.raises(QueueExistsError):
        await broker.create("orders")


async def test_a_deleted_queue_frees_its_name_and_hides_its_messages(broker: Broker) -> None:
    await broker.create("orders")
    await publish(broker, "orders", "old")
    await broker.run(DeleteQueue(queue="orders"))
    with pytest.raises(QueueNotFoundError):
        await receive(broker, "orders")
    await broker.create("orders")
    assert (await receive(broker, "orders")).messages == []
    await publish(broker, "orders", "new")
    got = await receive(broker, "orders")
    assert [bytes(m.body) for m in got.messages] == [b'"new"']


async def test_dead_letter_settings_go_together_and_name_a_live_other_queue(
    broker: Broker,
) -> None:
    with pytest.raises(InvalidCommandError, match="together"):
        await broker.create("a", max_receive_count=3)
    with pytest.raises(InvalidCommandError, match="does not exist"):
        await broker.create("a", max_receive_count=3, dead_letter_queue="missing")
    with pytest.raises(InvalidCommandError, match="own"):
        await broker.create("a", max_receive_count=3, dead_letter_queue="a")
    assert await broker.events() == []


async def test_messages_are_received_oldest_first_and_leased_once(broker: Broker) -> None:
    await broker.create("q")
    ids = await publish(broker, "q", 1, 2, 3)
    first = await receive(broker, "q", 2)
    second = await receive(broker, "q", 5)
    assert [m.id for m in first.messages] == ids[:2]
    assert [m.id for m in second.messages] == ids[2:]
    assert (await receive(broker, "q", 5)).messages == []


async def test_a_delayed_message_is_invisible_until_its_delay_ends(broker: Broker) -> None:
    await broker.create("q", delay_s=10)
    await publish(broker, "q", "queue default")
    await publish(broker, "q", "overridden", delay_s=0)
    got = await receive(broker, "q", 10)
    assert [bytes(m.body) for m in got.messages] == [b'"overridden"']
    empty = await receive(broker, "q", 10)
    assert empty.messages == [] and empty.next_visible_at is not None  # a long poll's timer
    broker.clock.advance(10)
    assert [bytes(m.body) for m in (await receive(broker, "q")).messages] == [b'"queue default"']


async def test_a_dedup_id_suppresses_repeats_for_five_minutes(broker: Broker) -> None:
    await broker.create("q")
    first = await publish(broker, "q", "a", dedup_id="k")
    broker.clock.advance(299)
    again = await broker.run(PublishMessages(queue="q", messages=(message("b", dedup_id="k"),)))
    assert isinstance(again, PublishReply)
    assert again.results[0].duplicate and again.results[0].id == first[0]
    broker.clock.advance(1)
    later = await broker.run(PublishMessages(queue="q", messages=(message("c", dedup_id="k"),)))
    assert isinstance(later, PublishReply)
    assert not later.results[0].duplicate
    assert (await broker.types()).count("message.published") == 2


async def test_a_batch_repeating_a_dedup_id_publishes_it_once(broker: Broker) -> None:
    await broker.create("q")
    reply = await broker.run(
        PublishMessages(queue="q", messages=(message(1, dedup_id="x"), message(2, dedup_id="x")))
    )
    assert isinstance(reply, PublishReply)
    assert [r.duplicate for r in reply.results] == [False, True]
    assert reply.results[0].id == reply.results[1].id


async def test_ack_is_idempotent_for_its_receipt_and_refuses_stale_ones(broker: Broker) -> None:
    await broker.create("q", visibility_timeout_s=5)
    [mid] = await publish(broker, "q", "x")
    stale = (await receive(broker, "q")).messages[0].receipt
    broker.clock.advance(5)  # the lease ends; the next receive re-leases it
    fresh = (await receive(broker, "q")).messages[0]
    assert fresh.receive_count == 2
    assert await ack(broker, "q", mid, stale) == "lease_lost"
    assert await ack(broker, "q", mid, fresh.receipt) == "acked"
    assert await ack(broker, "q", mid, fresh.receipt) == "acked"
    assert (await broker.types()).count("message.acked") == 1
    assert await ack(broker, "q", "nope", fresh.receipt) == "not_found"


async def test_an_ack_after_the_lease_ended_settles_it_until_someone_else_leases_it(
    broker: Broker,
) -> None:
    await broker.create("q", visibility_timeout_s=5)
    first, second = await publish(broker, "q", "x", "y")
    late = (await receive(broker, "q", 2)).messages
    broker.clock.advance(5)
    assert await ack(broker, "q", first, late[0].receipt) == "acked"  # before the sweep
    await broker.run(Sweep())
    assert await ack(broker, "q", second, late[1].receipt) == "acked"  # after it
    settled = await broker.message(second)
    assert settled is not None and settled.status == "acked"
    assert (await receive(broker, "q")).messages == []


async def test_an_ack_loses_once_another_receive_leased_the_message(broker: Broker) -> None:
    await broker.create("q", visibility_timeout_s=5)
    [mid] = await publish(broker, "q", "x")
    stale = (await receive(broker, "q")).messages[0].receipt
    broker.clock.advance(5)
    assert (await receive(broker, "q")).messages[0].id == mid
    assert await ack(broker, "q", mid, stale) == "lease_lost"


async def test_an_ack_after_a_nack_loses(broker: Broker) -> None:
    await broker.create("q")
    [mid] = await publish(broker, "q", "x")
    receipt = (await receive(broker, "q")).messages[0].receipt
    await broker.run(NackMessage(queue="q", message_id=mid, receipt=receipt))
    assert await ack(broker, "q", mid, receipt) == "lease_lost"


async def test_no_event_carries_a_receipt(broker: Broker) -> None:
    await broker.create("q", visibility_timeout_s=5)
    ids = await publish(broker, "q", "a", "b", "c")
    got = (await receive(broker, "q", 3)).messages
    await ack(broker, "q", ids[0], got[0].receipt)
    await broker.run(NackMessage(queue="q", message_id=ids[1], receipt=got[1].receipt))
    await broker.run(
        ExtendLease(queue="q", message_id=ids[2], receipt=got[2].receipt, visibility_timeout_s=1)
    )
    broker.clock.advance(1)
    await broker.run(Sweep())
    log = b"".join(stored.json() for stored in await broker.store.read(0, 1000))
    assert b"message.lease_expired" in log and b"message.lease_extended" in log
    for delivery in got:
        assert delivery.receipt.encode() not in log


async def test_nack_makes_the_message_available_after_its_delay(broker: Broker) -> None:
    await broker.create("q")
    [mid] = await publish(broker, "q", "x")
    receipt = (await receive(broker, "q")).messages[0].receipt
    await broker.run(
        NackMessage(queue="q", message_id=mid, receipt=receipt, delay_s=30, reason="busy")
    )
    assert (await receive(broker, "q")).messages == []
    broker.clock.advance(30)
    assert [m.id for m in (await receive(broker, "q")).messages] == [mid]
    with pytest.raises(LeaseLostError):
        await broker.run(NackMessage(queue="q", message_id=mid, receipt=receipt))


async def test_extend_moves_the_end_of_the_lease(broker: Broker) -> None:
    await broker.create("q", visibility_timeout_s=10)
    [mid] = await publish(broker, "q", "x")
    receipt = (await receive(broker, "q")).messages[0].receipt
    broker.clock.advance(8)
    reply = await broker.run(
        ExtendLease(queue="q", message_id=mid, receipt=receipt, visibility_timeout_s=10)
    )
    assert isinstance(reply, ExtendReply)
    broker.clock.advance(8)  # 16 s after the receive: past the first end, before the new one
    assert (await receive(broker, "q")).messages == []
    assert await ack(broker, "q", mid, receipt) == "acked"
    with pytest.raises(MessageNotFoundError):
        await broker.run(
            ExtendLease(queue="q", message_id="nope", receipt="r", visibility_timeout_s=1)
        )


async def test_the_sweeper_records_lease_expiry_without_a_receive(broker: Broker) -> None:
    await broker.create("q", visibility_timeout_s=5)
    [mid] = await publish(broker, "q", "x")
    await receive(broker, "q")
    broker.clock.advance(5)
    await broker.run(Sweep())
    state = await broker.message(mid)
    assert state is not None and state.status == "ready"
    assert (await broker.types())[-1] == "message.lease_expired"


async def test_a_message_out_of_receives_moves_to_the_dead_letter_queue(broker: Broker) -> None:
    await broker.create("dlq")
    await broker.create("q", visibility_timeout_s=1, max_receive_count=2, dead_letter_queue="dlq")
    [mid] = await publish(broker, "q", {"n": 1}, attributes={"k": "v"})
    for _ in range(2):
        assert [m.id for m in (await receive(broker, "q")).messages] == [mid]
        broker.clock.advance(1)
    assert (await receive(broker, "q")).messages == []
    state = await broker.message(mid)
    assert state is not None and state.status == "dead_lettered"
    moved = (await receive(broker, "dlq")).messages
    assert len(moved) == 1
    assert bytes(moved[0].body) == b'{"n":1}'
    assert moved[0].attributes == {"k": "v", "source_queue": "q", "source_message_id": mid}
    events = await broker.events()
    dead = next(e for e in events if isinstance(e, MessageDeadLettered))
    assert dead.dead_letter_message_id == moved[0].id


async def test_a_lowered_receive_limit_dead_letters_at_the_next_receive(broker: Broker) -> None:
    await broker.create("dlq")
    await broker.create("q", visibility_timeout_s=1)
    [mid] = await publish(broker, "q", "x")
    for _ in range(3):
        await receive(broker, "q")
        broker.clock.advance(1)
    await broker.run(
        UpdateQueue(queue="q", changes={"max_receive_count": 2, "dead_letter_queue": "dlq"})
    )
    assert (await receive(broker, "q")).messages == []
    state = await broker.message(mid)
    assert state is not None and state.status == "dead_lettered"


async def test_retention_expires_messages_that_were_never_delivered(broker: Broker) -> None:
    await broker.create("q", retention_s=60)
    [mid] = await publish(broker, "q", "x")
    broker.clock.advance(60)
    assert (await receive(broker, "q")).messages == []
    state = await broker.message(mid)
    assert state is not None and state.status == "expired"


async def test_purge_removes_available_delayed_and_in_flight_messages(broker: Broker) -> None:
    await broker.create("q")
    ids = await publish(broker, "q", 1, 2)
    [delayed] = await publish(broker, "q", 3, delay_s=60)
    receipt = (await receive(broker, "q")).messages[0].receipt
    reply = await broker.run(PurgeQueue(queue="q"))
    assert isinstance(reply, PurgeReply) and reply.purged == 3
    for mid in [*ids, delayed]:
        state = await broker.message(mid)
        assert state is not None and state.status == "purged"
    assert await ack(broker, "q", ids[0], receipt) == "lease_lost"
    [after] = await publish(broker, "q", 4)
    assert [m.id for m in (await receive(broker, "q")).messages] == [after]


async def test_redrive_sends_dead_letters_back_where_they_came_from(broker: Broker) -> None:
    await broker.create("dlq")
    await broker.create("q", visibility_timeout_s=1, max_receive_count=1, dead_letter_queue="dlq")
    await publish(broker, "q", "x", attributes={"k": "v"})
    await receive(broker, "q")
    broker.clock.advance(1)
    await broker.run(Sweep())
    reply = await broker.run(RedriveMessages(queue="dlq"))
    assert isinstance(reply, RedriveReply) and reply.moved == 1
    back = (await receive(broker, "q")).messages
    assert [(bytes(m.body), m.attributes) for m in back] == [(b'"x"', {"k": "v"})]
    with pytest.raises(InvalidCommandError):
        await broker.run(RedriveMessages(queue="dlq", to="missing"))


async def test_a_rejected_command_appends_nothing(broker: Broker) -> None:
    await broker.create("q")
    before = await broker.types()
    with pytest.raises(QueueNotFoundError):
        await broker.run(PublishMessages(queue="missing", messages=(message(1),)))
    [mid] = await publish(broker, "q", 1)
    with pytest.raises(LeaseLostError):
        await broker.run(NackMessage(queue="q", message_id=mid, receipt="never issued"))
    assert await broker.types() == [*before, "message.published"]


async def test_publishing_keeps_the_body_bytes_exactly(broker: Broker) -> None:
    await broker.create("q")
    raw = b'{"b": [1, 2.50, "\\u00e9"],  "a": null}'
    await broker.run(
        PublishMessages(queue="q", messages=(NewMessage(message_id="m", body=msgspec.Raw(raw)),))
    )
    published = next(e for e in await broker.events() if isinstance(e, MessagePublished))
    assert bytes(published.body) == raw
    assert bytes((await receive(broker, "q")).messages[0].body) == raw


async def test_a_command_that_breaks_the_store_fails_alone(broker: Broker) -> None:
    """A failure that is not a domain refusal rolls the whole group commit back; the writer
    then runs each command on its own, so only the one that breaks fails."""
    await broker.create("q")
    original = broker.store.transact
    poisoned = {"body": "poison"}
    calls = []

    async def transact(fn):
        calls.append(fn)

        def guarded(tx):
            result = fn(tx)
            if any(b'"poison"' in stored.data for stored in broker.store.events):
                raise RuntimeError("disk on fire")
            return result

        return await original(guarded)

    broker.store.transact = transact
    outcomes = await asyncio.gather(
        *(broker.run(PublishMessages(queue="q", messages=(message(b),))) for b in (1, poisoned, 3)),
        return_exceptions=True,
    )
    assert len(calls) == 4  # the group commit of three, then each of them alone
    assert isinstance(outcomes[1], StoreUnavailableError)
    assert all(isinstance(o, PublishReply) for o in (outcomes[0], outcomes[2]))
    bodies = [bytes(e.body) for e in await broker.events() if isinstance(e, MessagePublished)]
    assert sorted(bodies) == [b"1", b"3"]


async def test_a_publish_that_forges_a_broker_attribute_is_refused_by_decide(
    broker: Broker,
) -> None:
    """Not only by the HTTP route: any door that builds the command meets the same rule."""
    await broker.create("q")
    forged = message("x", attributes={"source_queue": "elsewhere"})
    with pytest.raises(InvalidCommandError) as refused:
        await broker.run(PublishMessages(queue="q", messages=(message(1), forged)))
    assert (refused.value.field, refused.value.entry) == ("attributes", 1)
    assert await broker.types() == ["queue.created"]


@pytest.mark.parametrize("name", ["", ".", "..", "a\n", "x" * 81, "a/b", "caf\u00e9"])
async def test_a_queue_name_the_contract_refuses_is_refused_by_decide(
    broker: Broker, name: str
) -> None:
    with pytest.raises(InvalidCommandError) as refused:
        await broker.create(name)
    assert refused.value.field == "name"
