"""Scripts of commands for the projection tests (rebuild, history retention): a hypothesis
strategy's steps, played through a real writer, with the projector catching up where the
script says."""

from __future__ import annotations

from typing import Any

from broker.commands import (
    AckEntry,
    AckMessages,
    AnyCommand,
    CreateQueue,
    DeleteQueue,
    NackMessage,
    PublishMessages,
    PurgeQueue,
    QueueSettings,
    ReceiveMessages,
    RedriveMessages,
    RestoreQueue,
    Sweep,
    UndoPurge,
)
from broker.decide import PurgeReply, ReceiveReply
from broker.errors import BrokerError
from broker.writer import Writer
from projections.runner import ProjectionRunner
from tests.helpers import FakeClock, message

START_QUEUES: list[tuple[Any, ...]] = [
    ("create", "dlq", False),
    ("create", "a", True),
    ("create", "b", False),
]
"""Queues exist from the start: most runs then do something worth projecting, rather than
failing on missing queues."""


Lease = tuple[str, str, str]
"""Queue, message id, receipt."""


async def play(
    writer: Writer, runner: ProjectionRunner, clock: FakeClock, script: list[tuple[Any, ...]]
) -> None:
    """Run each step; a command the broker refuses is skipped, as a client would go on."""
    leases: list[Lease] = []
    purges: list[tuple[str, int]] = []
    for step in script:
        if step[0] == "project":
            await runner.catch_up()
            continue
        if step[0] == "cycle":  # publish, receive and ack: a finished message
            step = ("publish", step[1], 1, 0)
            await _run(writer, step, leases, purges, clock)
            received = len(leases)
            await _run(writer, ("receive", step[1], 10), leases, purges, clock)
            for index in range(received, len(leases)):
                await _run(writer, ("ack", index), leases, purges, clock)
            continue
        await _run(writer, step, leases, purges, clock)


async def _run(
    writer: Writer,
    step: tuple[Any, ...],
    leases: list[Lease],
    purges: list[tuple[str, int]],
    clock: FakeClock,
) -> None:
    command = _command(step, clock, leases, purges)
    if command is None:
        return
    try:
        reply = await writer.execute(command)
    except BrokerError:
        return
    if isinstance(reply, ReceiveReply):
        leases += [(step[1], m.id, m.receipt) for m in reply.messages]
    if isinstance(reply, PurgeReply):
        purges.append((step[1], reply.position))


def _command(
    step: tuple[Any, ...], clock: FakeClock, leases: list[Lease], purges: list[tuple[str, int]]
) -> AnyCommand | None:
    match step:
        case ("create", name, with_dlq):
            dead = {"max_receive_count": 1, "dead_letter_queue": "dlq"} if with_dlq else {}
            return CreateQueue(queue=name, settings=QueueSettings(visibility_timeout_s=30, **dead))
        case ("publish", name, count, delay):
            return PublishMessages(
                queue=name, messages=tuple(message(i, delay_s=delay) for i in range(count))
            )
        case ("receive", name, count):
            return ReceiveMessages(queue=name, max_messages=count)
        case ("ack" | "nack", index) if leases:
            queue, mid, receipt = leases[index % len(leases)]
            if step[0] == "ack":
                entry = AckEntry(message_id=mid, receipt=receipt)
                return AckMessages(queue=queue, entries=(entry,))
            return NackMessage(queue=queue, message_id=mid, receipt=receipt, reason=f"r{index % 3}")
        case ("advance", seconds):
            clock.advance(seconds)
            return Sweep()
        case ("purge", name):
            return PurgeQueue(queue=name)
        case ("undo", index) if purges:
            queue, position = purges[index % len(purges)]
            return UndoPurge(queue=queue, purge=position)
        case ("delete", name):
            return DeleteQueue(queue=name)
        case ("restore", name):
            return RestoreQueue(queue=name)
        case ("redrive", name):
            return RedriveMessages(queue=name)
    return None
