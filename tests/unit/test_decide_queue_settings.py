"""The queue settings the SQS door needed, decided in the domain for either door: FIFO queues
(named ``.fifo``, fixed at creation, every message in a group, deduplicated by id or by
content), the per-queue message size limit, tags; and receipts that name their message."""

from __future__ import annotations

import asyncio
import hashlib

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import ids
from broker.commands import (
    NewMessage,
    PublishMessages,
    ReceiveMessages,
    RedriveMessages,
    StartMoveTask,
    UpdateQueue,
)
from broker.decide import PublishReply, ReceiveReply
from broker.errors import InvalidCommandError, MessageTooLargeError
from broker.events import MessagePublished, QueueCreated, QueueUpdated, TypedAttribute
from tests.conftest import Broker
from tests.helpers import Counter

_ids = Counter("set")


def new(body: object = "x", **fields: object) -> NewMessage:
    return NewMessage(
        message_id=_ids(),
        body=msgspec.Raw(msgspec.json.encode(body)),
        **fields,  # type: ignore[arg-type]
    )


async def publish(broker: Broker, queue: str, *messages: NewMessage) -> PublishReply:
    reply = await broker.run(PublishMessages(queue=queue, messages=messages))
    assert isinstance(reply, PublishReply)
    return reply


async def test_a_fifo_queue_needs_the_fifo_suffix_and_only_it_has_one(broker: Broker) -> None:
    with pytest.raises(InvalidCommandError) as raised:
        await broker.create("orders", fifo=True)
    assert raised.value.field == "fifo"
    with pytest.raises(InvalidCommandError) as raised:
        await broker.create("orders.fifo", fifo=False)
    assert raised.value.field == "fifo"
    with pytest.raises(InvalidCommandError) as raised:
        await broker.create("plain", content_based_dedup=True)
    assert raised.value.field == "content_based_dedup"
    await broker.create("orders.fifo", fifo=True)
    assert await broker.types() == ["queue.created"]


NAMES = st.from_regex(r"[A-Za-z0-9_-]{1,20}(\.fifo)?", fullmatch=True)


async def _create_with(name: str, fifo: bool | None) -> None:
    broker = Broker()
    await broker.writer.start()
    try:
        if fifo is not None and fifo != name.endswith(".fifo"):
            with pytest.raises(InvalidCommandError) as raised:
                await broker.create(name, fifo=fifo)
            assert raised.value.field == "fifo" and await broker.events() == []
            return
        await broker.create(name, **({} if fifo is None else {"fifo": fifo}))
        [created] = await broker.events()
        assert isinstance(created, QueueCreated)
        assert created.fifo is name.endswith(".fifo")  # recorded as decided, never null
    finally:
        await broker.writer.stop()


@given(name=NAMES, fifo=st.sampled_from([None, True, False]))
def test_fifo_defaults_to_the_name_and_a_fifo_that_disagrees_is_refused(
    name: str, fifo: bool | None
) -> None:
    asyncio.run(_create_with(name, fifo))


async def _dead_letter_into(source_fifo: bool, dlq_fifo: bool, by_update: bool) -> None:
    broker = Broker()
    await broker.writer.start()
    try:
        dlq = "dlq.fifo" if dlq_fifo else "dlq"
        source = "source.fifo" if source_fifo else "source"
        await broker.create(dlq)
        policy = {"dead_letter_queue": dlq, "max_receive_count": 1}
        if by_update:
            await broker.create(source)
        before = await broker.events()

        async def name_it() -> None:
            if by_update:
                await broker.run(UpdateQueue(queue=source, changes=policy))
            else:
                await broker.create(source, **policy)

        if source_fifo == dlq_fifo:
            await name_it()
            return
        with pytest.raises(InvalidCommandError) as raised:
            await name_it()
        assert raised.value.field == "dead_letter_queue"
        assert "FIFO" in raised.value.detail and "standard" in raised.value.detail
        assert await broker.events() == before  # nothing written
    finally:
        await broker.writer.stop()


@given(source_fifo=st.booleans(), dlq_fifo=st.booleans(), by_update=st.booleans())
def test_a_dead_letter_queue_is_of_its_sources_kind(
    source_fifo: bool, dlq_fifo: bool, by_update: bool
) -> None:
    asyncio.run(_dead_letter_into(source_fifo, dlq_fifo, by_update))


async def _move_between(source_fifo: bool, to_fifo: bool, dry_run: bool) -> None:
    broker = Broker()
    await broker.writer.start()
    try:
        source = "dlq.fifo" if source_fifo else "dlq"
        to = "to.fifo" if to_fifo else "to"
        await broker.create(source)
        await broker.create(to)
        await broker.create(
            "main.fifo" if source_fifo else "main", dead_letter_queue=source, max_receive_count=1
        )
        before = await broker.events()
        redrive = RedriveMessages(queue=source, to=to, dry_run=dry_run)
        move = StartMoveTask(queue=source, task="t-1", destination=to)
        if source_fifo == to_fifo:
            await broker.run(redrive)
            await broker.run(move)
            return
        for command, field in ((redrive, "to"), (move, "destination")):
            with pytest.raises(InvalidCommandError) as raised:
                await broker.run(command)
            assert raised.value.field == field
            assert "FIFO" in raised.value.detail and "standard" in raised.value.detail
        assert await broker.events() == before  # nothing written
    finally:
        await broker.writer.stop()


@given(source_fifo=st.booleans(), to_fifo=st.booleans(), dry_run=st.booleans())
def test_messages_move_only_into_a_queue_of_their_kind(
    source_fifo: bool, to_fifo: bool, dry_run: bool
) -> None:
    asyncio.run(_move_between(source_fifo, to_fifo, dry_run))


async def test_fifo_is_fixed_at_creation(broker: Broker) -> None:
    await broker.create("orders.fifo", fifo=True)
    with pytest.raises(InvalidCommandError):
        await broker.run(UpdateQueue(queue="orders.fifo", changes={"fifo": False}))
    await broker.run(UpdateQueue(queue="orders.fifo", changes={"content_based_dedup": True}))
    *_, updated = await broker.events()
    assert isinstance(updated, QueueUpdated)
    assert updated.fifo is True and updated.content_based_dedup is True


async def test_every_message_of_a_fifo_queue_needs_a_group_and_a_dedup_id(broker: Broker) -> None:
    await broker.create("orders.fifo", fifo=True)
    with pytest.raises(InvalidCommandError) as raised:
        await publish(broker, "orders.fifo", new(dedup_id="d"))
    assert raised.value.field == "group_id"
    with pytest.raises(InvalidCommandError) as raised:
        await publish(broker, "orders.fifo", new(), new(group_id="g"))
    assert (raised.value.field, raised.value.entry) == ("group_id", 0)
    with pytest.raises(InvalidCommandError) as raised:
        await publish(broker, "orders.fifo", new(group_id="g"))
    assert raised.value.field == "dedup_id"
    assert await broker.types() == ["queue.created"]


async def test_content_based_dedup_uses_the_body_digest(broker: Broker) -> None:
    await broker.create("orders.fifo", fifo=True, content_based_dedup=True)
    first = await publish(broker, "orders.fifo", new("same", group_id="g"))
    second = await publish(broker, "orders.fifo", new("same", group_id="g"))
    other = await publish(broker, "orders.fifo", new("other", group_id="g"))
    assert second.results[0].duplicate and second.results[0].id == first.results[0].id
    assert not other.results[0].duplicate
    published = [e for e in await broker.events() if isinstance(e, MessagePublished)]
    assert published[0].dedup_id == hashlib.sha256(b'"same"').hexdigest()
    # An explicit dedup id wins over the content.
    explicit = await publish(broker, "orders.fifo", new("same", group_id="g", dedup_id="e"))
    assert not explicit.results[0].duplicate


async def test_a_message_over_the_queues_size_limit_is_refused(broker: Broker) -> None:
    await broker.create("small", max_message_bytes=1024)
    await publish(broker, "small", new("x" * 1022))  # 1024 bytes of JSON
    with pytest.raises(MessageTooLargeError) as raised:
        await publish(broker, "small", new("x" * 1023))
    assert raised.value.field == "body"
    # A door may count the size its own way (SQS: the text and the attributes).
    with pytest.raises(MessageTooLargeError):
        await publish(broker, "small", new("x", size=1025))
    await publish(broker, "small", new("x" * 2000, size=1024))
    assert (await broker.types()).count("message.published") == 2


async def test_settings_tags_and_typed_attributes_are_kept_on_the_events(broker: Broker) -> None:
    await broker.create("q", tags={"team": "a"}, receive_wait_s=5, redrive_allow_policy="{}")
    await broker.run(UpdateQueue(queue="q", changes={"tags": {"team": "b"}}))
    created, updated = await broker.events()
    assert isinstance(created, QueueCreated) and isinstance(updated, QueueUpdated)
    assert created.tags == {"team": "a"} and updated.tags == {"team": "b"}
    assert updated.receive_wait_s == 5 and updated.redrive_allow_policy == "{}"
    typed = {
        "n": TypedAttribute("Number", string_value="1"),
        "b": TypedAttribute("Binary", binary_value="AAE="),
    }
    await publish(broker, "q", new(typed_attributes=typed))
    reply = await broker.run(ReceiveMessages(queue="q"))
    assert isinstance(reply, ReceiveReply)
    assert reply.messages[0].typed_attributes == typed


async def test_a_receipt_names_its_message(broker: Broker) -> None:
    await broker.create("q")
    [published] = (await publish(broker, "q", new())).results
    reply = await broker.run(ReceiveMessages(queue="q"))
    assert isinstance(reply, ReceiveReply)
    assert ids.message_of(reply.messages[0].receipt) == published.id
    assert ids.message_of("no-dot-here") is None
    assert ids.message_of(".only-an-id") is None


async def test_the_first_receive_time_is_kept_across_receives(broker: Broker) -> None:
    await broker.create("q")
    await publish(broker, "q", new())
    first = await broker.run(ReceiveMessages(queue="q", visibility_timeout_s=0))
    assert isinstance(first, ReceiveReply)
    [delivery] = first.messages
    assert delivery.first_received_at == broker.clock()
    broker.clock.advance(5)
    again = await broker.run(ReceiveMessages(queue="q"))
    assert isinstance(again, ReceiveReply)
    assert again.messages[0].receive_count == 2
    assert again.messages[0].first_received_at == delivery.first_received_at
