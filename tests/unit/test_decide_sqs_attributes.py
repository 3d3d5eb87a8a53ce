"""The rest of SQS's queue attributes as the domain decides them, for every door: a FIFO queue's
deduplication scope (``messageGroup``: one dedup id once per group) and throughput limit, the
encryption settings that exclude each other, a policy that must be a JSON object, and every
setting within its range whichever door sent it."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.commands import NewMessage, PublishMessages, UpdateQueue
from broker.decide import PublishReply
from broker.errors import InvalidCommandError
from broker.events import QueueCreated, QueueUpdated
from tests.conftest import Broker
from tests.helpers import Counter

_ids = Counter("sqsattr")


def new(group: str, dedup: str) -> NewMessage:
    return NewMessage(message_id=_ids(), body=msgspec.Raw(b'"x"'), group_id=group, dedup_id=dedup)


SENDS = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["d1", "d2", "d3"])),
    min_size=1,
    max_size=12,
)


async def _published(scope: str, sends: list[tuple[str, str]], batched: bool) -> list[bool]:
    broker = Broker()
    await broker.writer.start()
    try:
        await broker.create("orders.fifo", fifo=True, deduplication_scope=scope)
        messages = [new(group, dedup) for group, dedup in sends]
        batches = [messages] if batched else [[m] for m in messages]
        duplicates: list[bool] = []
        for batch in batches:
            reply = await broker.run(PublishMessages(queue="orders.fifo", messages=tuple(batch)))
            assert isinstance(reply, PublishReply)
            duplicates += [r.duplicate for r in reply.results]
        return duplicates
    finally:
        await broker.writer.stop()


@given(scope=st.sampled_from(["queue", "messageGroup"]), sends=SENDS, batched=st.booleans())
def test_a_dedup_id_is_used_once_per_queue_or_once_per_group(
    scope: str, sends: list[tuple[str, str]], batched: bool
) -> None:
    duplicates = asyncio.run(_published(scope, sends, batched))
    seen: set[object] = set()
    expected = []
    for group, dedup in sends:
        key = (group, dedup) if scope == "messageGroup" else dedup
        expected.append(key in seen)
        seen.add(key)
    assert duplicates == expected


async def test_a_fifo_queue_records_sqs_defaults_and_a_standard_one_none(broker: Broker) -> None:
    await broker.create("orders.fifo", fifo=True)
    await broker.create("plain")
    fifo, plain = await broker.events()
    assert isinstance(fifo, QueueCreated) and isinstance(plain, QueueCreated)
    assert (fifo.deduplication_scope, fifo.fifo_throughput_limit) == ("queue", "perQueue")
    assert (plain.deduplication_scope, plain.fifo_throughput_limit) == (None, None)
    assert plain.kms_data_key_reuse_period_s == 300 and plain.sqs_managed_sse is False


@pytest.mark.parametrize(
    ("name", "settings", "field"),
    [
        ("plain", {"deduplication_scope": "messageGroup"}, "deduplication_scope"),
        ("plain", {"fifo_throughput_limit": "perQueue"}, "fifo_throughput_limit"),
        ("o.fifo", {"fifo_throughput_limit": "perMessageGroupId"}, "fifo_throughput_limit"),
        ("plain", {"kms_master_key_id": "alias/k", "sqs_managed_sse": True}, "sqs_managed_sse"),
        ("plain", {"policy": "[1, 2]"}, "policy"),
        ("plain", {"policy": "{not json"}, "policy"),
        ("plain", {"kms_data_key_reuse_period_s": 59}, "kms_data_key_reuse_period_s"),
        ("plain", {"deduplication_scope": "everywhere"}, "deduplication_scope"),
    ],
)
async def test_settings_sqs_refuses_are_refused_and_write_nothing(
    broker: Broker, name: str, settings: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidCommandError) as raised:
        await broker.create(name, **settings)
    assert raised.value.field == field
    await broker.create(name)
    # The same through an update, whichever door it comes from: nothing is written.
    before = await broker.types()
    with pytest.raises(InvalidCommandError) as raised:
        await broker.run(UpdateQueue(queue=name, changes=settings))  # type: ignore[arg-type]
    assert raised.value.field == field
    assert await broker.types() == before


async def test_a_redrive_policy_text_is_cleared_when_the_settings_change_without_it(
    broker: Broker,
) -> None:
    await broker.create("dlq")
    text = '{"deadLetterTargetArn": "arn:aws:sqs:r:1:dlq", "maxReceiveCount": 3}'
    await broker.create("orders", dead_letter_queue="dlq", max_receive_count=3, redrive_policy=text)
    await broker.run(UpdateQueue(queue="orders", changes={"visibility_timeout_s": 9}))
    await broker.run(UpdateQueue(queue="orders", changes={"max_receive_count": 5}))
    *_, kept, cleared = await broker.events()
    assert isinstance(kept, QueueUpdated) and isinstance(cleared, QueueUpdated)
    assert kept.redrive_policy == text and cleared.redrive_policy is None


async def test_high_throughput_fifo_is_kept(broker: Broker) -> None:
    await broker.create(
        "fast.fifo",
        fifo=True,
        deduplication_scope="messageGroup",
        fifo_throughput_limit="perMessageGroupId",
        policy='{"Statement": []}',
        kms_master_key_id="alias/aws/sqs",
        kms_data_key_reuse_period_s=600,
    )
    [created] = await broker.events()
    assert isinstance(created, QueueCreated)
    assert created.fifo_throughput_limit == "perMessageGroupId"
    assert created.policy == '{"Statement": []}' and created.kms_data_key_reuse_period_s == 600
