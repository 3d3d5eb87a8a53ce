"""Move tasks (SQS's StartMessageMoveTask, as events): the sweeper redrives a dead-letter
queue's messages at the task's rate until none is left, and records the end; one task per
queue at a time; a cancel stops it; a deleted destination fails it."""

from __future__ import annotations

import msgspec
import pytest

from broker.commands import (
    CancelMoveTask,
    DeleteQueue,
    NackMessage,
    NewMessage,
    PublishMessages,
    ReceiveMessages,
    StartMoveTask,
    Sweep,
)
from broker.decide import MoveTaskReply, ReceiveReply
from broker.errors import InvalidCommandError, MoveTaskNotFoundError
from broker.events import MessageRedriven, QueueMoveTaskEnded, QueueMoveTaskStarted
from tests.conftest import Broker
from tests.helpers import Counter

_ids = Counter("mv")


async def dead_letters(broker: Broker, n: int) -> None:
    """``dlq`` holding ``n`` messages dead-lettered from ``src`` (each nacked once)."""
    await broker.create("dlq")
    await broker.create("src", max_receive_count=1, dead_letter_queue="dlq")
    await broker.create("elsewhere")
    messages = tuple(NewMessage(message_id=_ids(), body=msgspec.Raw(b"1")) for _ in range(n))
    await broker.run(PublishMessages(queue="src", messages=messages))
    reply = await broker.run(ReceiveMessages(queue="src", max_messages=100))
    assert isinstance(reply, ReceiveReply) and len(reply.messages) == n
    for held in reply.messages:
        await broker.run(NackMessage(queue="src", message_id=held.id, receipt=held.receipt))


async def sweep_after(broker: Broker, seconds: float) -> None:
    broker.clock.advance(seconds)
    await broker.run(Sweep())


async def test_a_task_moves_at_its_rate_and_ends_by_itself(broker: Broker) -> None:
    await dead_letters(broker, 25)
    reply = await broker.run(StartMoveTask(queue="dlq", task="t1", max_per_second=10))
    assert isinstance(reply, MoveTaskReply) and reply.task == "t1"
    await sweep_after(broker, 1)
    moved = [e for e in await broker.events() if isinstance(e, MessageRedriven)]
    assert len(moved) == 10 and all(e.task == "t1" and e.to_queue == "src" for e in moved)
    await sweep_after(broker, 1)
    await sweep_after(broker, 1)
    events = await broker.events()
    assert len([e for e in events if isinstance(e, MessageRedriven)]) == 25
    [started] = [e for e in events if isinstance(e, QueueMoveTaskStarted)]
    assert started.to_move == 25 and started.max_per_second == 10
    [ended] = [e for e in events if isinstance(e, QueueMoveTaskEnded)]
    assert (ended.status, ended.moved) == ("COMPLETED", 25)
    # The queue is free for another task.
    await broker.run(StartMoveTask(queue="dlq", task="t2"))


async def test_a_task_to_a_destination(broker: Broker) -> None:
    await dead_letters(broker, 3)
    await broker.run(StartMoveTask(queue="dlq", task="t", destination="elsewhere"))
    await sweep_after(broker, 1)
    moved = [e for e in await broker.events() if isinstance(e, MessageRedriven)]
    assert {e.to_queue for e in moved} == {"elsewhere"} and len(moved) == 3


async def test_one_task_at_a_time_and_only_on_a_dead_letter_queue(broker: Broker) -> None:
    await dead_letters(broker, 1)
    await broker.run(StartMoveTask(queue="dlq", task="t", max_per_second=1))
    with pytest.raises(InvalidCommandError):
        await broker.run(StartMoveTask(queue="dlq", task="u"))
    with pytest.raises(InvalidCommandError):
        await broker.run(StartMoveTask(queue="src", task="v"))
    with pytest.raises(InvalidCommandError):
        await broker.run(StartMoveTask(queue="dlq", task="w", destination="dlq"))


async def test_a_cancel_stops_the_task(broker: Broker) -> None:
    await dead_letters(broker, 10)
    await broker.run(StartMoveTask(queue="dlq", task="t", max_per_second=2))
    await sweep_after(broker, 1)
    reply = await broker.run(CancelMoveTask(queue="dlq", task="t"))
    assert isinstance(reply, MoveTaskReply) and reply.moved == 2
    await sweep_after(broker, 10)
    events = await broker.events()
    assert len([e for e in events if isinstance(e, MessageRedriven)]) == 2
    [ended] = [e for e in events if isinstance(e, QueueMoveTaskEnded)]
    assert (ended.status, ended.moved) == ("CANCELLED", 2)
    with pytest.raises(MoveTaskNotFoundError):
        await broker.run(CancelMoveTask(queue="dlq", task="t"))


async def test_a_deleted_destination_fails_the_task(broker: Broker) -> None:
    await dead_letters(broker, 3)
    await broker.run(StartMoveTask(queue="dlq", task="t", destination="elsewhere"))
    await broker.run(DeleteQueue(queue="elsewhere"))
    await sweep_after(broker, 1)
    [ended] = [e for e in await broker.events() if isinstance(e, QueueMoveTaskEnded)]
    assert ended.status == "FAILED" and ended.reason is not None
