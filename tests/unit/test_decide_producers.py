"""Idempotent producers (the Kafka door's) as the domain decides them: a retried batch appends
nothing and is answered as the first time; a gap or an older epoch is refused; a FIFO queue
dedups their records by producer id, epoch and sequence. Against a plain model, by
hypothesis."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.commands import NewMessage, ProducerBatch, PublishMessages
from broker.decide import PublishReply
from broker.errors import InvalidCommandError, OutOfOrderSequenceError, ProducerFencedError
from broker.events import MessagePublished
from tests.conftest import Broker
from tests.helpers import Counter

_ids = Counter("m")


def records(count: int, key: str | None = None) -> tuple[NewMessage, ...]:
    return tuple(
        NewMessage(message_id=_ids(), body=msgspec.Raw(b'"v"'), key=key) for _ in range(count)
    )


async def produce(
    broker: Broker, queue: str, first: int, count: int, epoch: int = 0, key: str | None = None
) -> PublishReply:
    batch = ProducerBatch(producer_id=1, epoch=epoch, base_sequence=first)
    reply = await broker.run(
        PublishMessages(queue=queue, messages=records(count, key), producer=batch)
    )
    assert isinstance(reply, PublishReply)
    return reply


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=st.lists(st.tuples(st.integers(0, 6), st.integers(1, 3)), max_size=12))
def test_batches_are_published_once_in_sequence_whatever_is_retried(
    steps: list[tuple[int, int]],
) -> None:
    """Each step sends the batch that starts at a sequence already sent (a retry of one of the
    last five), the next one, or one past it (a gap); the model says which."""

    async def run() -> None:
        broker = Broker()
        await broker.writer.start()
        await broker.create("q")
        sent: list[tuple[int, int, int]] = []  # first, last, base offset
        expected = 0
        for choice, count in steps:
            if choice < len(sent) and choice < 5:
                first, last, offset = sent[-1 - choice]
                reply = await produce(broker, "q", first, last - first + 1)
                assert reply.results == [reply.results[0]]
                assert reply.results[0].duplicate and reply.results[0].position == offset
            elif choice == 6:
                with pytest.raises(OutOfOrderSequenceError):
                    await produce(broker, "q", expected + 1, count)
            else:
                reply = await produce(broker, "q", expected, count)
                assert not any(r.duplicate for r in reply.results)
                sent.append((expected, expected + count - 1, reply.results[0].position))
                expected += count
        published = [e for e in await broker.events() if isinstance(e, MessagePublished)]
        assert len(published) == expected
        await broker.writer.stop()

    asyncio.run(run())


async def test_a_new_epoch_starts_again_and_an_older_one_is_fenced(broker: Broker) -> None:
    await broker.create("q")
    await produce(broker, "q", 0, 2)
    with pytest.raises(OutOfOrderSequenceError):
        await produce(broker, "q", 5, 1, epoch=1)
    await produce(broker, "q", 0, 1, epoch=1)
    with pytest.raises(ProducerFencedError):
        await produce(broker, "q", 2, 1, epoch=0)


async def test_an_unknown_producer_starts_at_zero(broker: Broker) -> None:
    await broker.create("q")
    with pytest.raises(OutOfOrderSequenceError):
        await produce(broker, "q", 3, 1)


async def test_a_fifo_queue_groups_by_key_and_dedups_by_producer_sequence(
    broker: Broker,
) -> None:
    await broker.create("f.fifo", fifo=True)
    await produce(broker, "f.fifo", 0, 2, key="g1")
    published = [e for e in await broker.events() if isinstance(e, MessagePublished)]
    assert [(e.group_id, e.dedup_id) for e in published] == [("g1", "1.0.0"), ("g1", "1.0.1")]
    with pytest.raises(InvalidCommandError, match="dedup_id"):
        await broker.run(PublishMessages(queue="f.fifo", messages=records(1, key="g1")))
    with pytest.raises(InvalidCommandError, match="group"):
        await produce(broker, "f.fifo", 2, 1, key="not a group!")
