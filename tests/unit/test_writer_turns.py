"""How the writer hands transactions to the store (``Writer._hand_over``): a transaction takes
its batch when the store starts it, so commands that arrive while it waits ride along, and the
next one is handed over while the last still commits, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from broker.commands import PublishMessages
from broker.decide import PublishReply
from broker.writer import Commit
from tests.conftest import Broker
from tests.helpers import message


def publish(queue: str, n: int) -> PublishMessages:
    return PublishMessages(queue=queue, messages=(message(n),))


async def gated(broker: Broker, *, before: bool) -> tuple[list[Commit], asyncio.Event]:
    """A queue ``q``, the commits the writer reports, and a gate the store's transactions
    wait for: before they run (``before``), or after they ran and before they answer (a
    commit that takes its time)."""
    await broker.create("q")
    commits: list[Commit] = []
    broker.writer.on_commit(commits.append)
    gate = asyncio.Event()
    original: Callable[[Any], Awaitable[Any]] = broker.store.transact

    async def transact(fn: Any) -> Any:
        if before:
            await gate.wait()
        result = await original(fn)
        if not before:
            await gate.wait()
        return result

    broker.store.transact = transact  # type: ignore[method-assign]
    return commits, gate


async def test_commands_arriving_while_a_transaction_waits_for_the_store_join_it(
    broker: Broker,
) -> None:
    commits, gate = await gated(broker, before=True)
    first = asyncio.create_task(broker.run(publish("q", 1)))
    await asyncio.sleep(0)  # its transaction is handed over, and waits
    rest = [asyncio.create_task(broker.run(publish("q", n))) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    gate.set()
    replies = await asyncio.gather(first, *rest)
    assert [c.commands for c in commits] == [4]  # one transaction took all four
    positions = [r.results[0].position for r in replies if isinstance(r, PublishReply)]
    assert positions == [2, 3, 4, 5]  # in the order they were submitted


async def test_the_next_transaction_is_handed_over_while_the_last_commits(
    broker: Broker,
) -> None:
    commits, gate = await gated(broker, before=False)
    first = asyncio.create_task(broker.run(publish("q", 1)))
    for _ in range(3):  # the first transaction runs, and waits before it answers
        await asyncio.sleep(0)
    rest = [asyncio.create_task(broker.run(publish("q", n))) for n in (2, 3)]
    for _ in range(3):  # the second is handed over and runs too: it does not wait its turn
        await asyncio.sleep(0)
    assert not first.done()
    assert [stored.position for stored in broker.store.events][-3:] == [2, 3, 4]
    gate.set()
    replies = await asyncio.gather(first, *rest)
    assert [c.commands for c in commits] == [1, 2]  # heard of in the order they committed
    assert [c.head for c in commits] == [2, 4]
    assert [r.results[0].position for r in replies if isinstance(r, PublishReply)] == [2, 3, 4]


async def test_stop_commits_what_is_queued_and_refuses_more(broker: Broker) -> None:
    await broker.create("q")
    queued = [asyncio.create_task(broker.run(publish("q", n))) for n in range(5)]
    await asyncio.sleep(0)
    await broker.writer.stop()
    assert all(task.done() and not task.exception() for task in queued)
    assert len(broker.store.events) == 6
