"""``consume`` against a real broker: leases kept while handlers run, acks and nacks, and a
clean stop (threads for ``Client``, tasks for ``AsyncClient``)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cairn_client import AsyncClient, AsyncDelivery, Client, Delivery, Message

from tests.api.conftest import Server
from tests.client.conftest import new_queue
from tests.client.proxy import Proxy


class Background:
    """``client.consume(...)`` in a thread of its own, its outcome kept."""

    def __init__(self, target: Callable[[], None]) -> None:
        self.error: BaseException | None = None
        self._target = target
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._target()
        except BaseException as error:
            self.error = error

    def join(self, within: float = 30) -> None:
        self._thread.join(within)
        assert not self._thread.is_alive(), "consume did not return"
        assert self.error is None, repr(self.error)


def leases(client: Client, queue: str) -> Counter[str]:
    """How many times each message of ``queue`` was leased, from the log."""
    events = client.events(after=0, limit=1000, queue=queue, types=["message.leased"]).events
    return Counter(e.message_id for e in events if e.message_id is not None)


def stats_now(client: Client, queue: str) -> tuple[int, int, int]:
    """(acked in all, available, in flight) once the read side has applied the log's last
    event of ``queue``."""
    last = client.events(after=0, limit=1000, queue=queue).next_after
    stats = client.get_queue(queue, min_position=last).stats
    return stats.acked_total, stats.available, stats.in_flight


def settled(client: Client, queue: str, message_id: str) -> Message:
    """The message once the read side has applied the log's last event of ``queue``."""
    last = client.events(after=0, limit=1000, queue=queue).next_after
    return client.get_message(queue, message_id, min_position=last)


def event_types(client: Client, queue: str, message_id: str) -> list[str]:
    return [h.type for h in settled(client, queue, message_id).history]


@pytest.fixture
def competitor(server: Server) -> Iterator[Client]:
    with Client(server.url) as other:
        yield other


def test_a_handler_slower_than_the_visibility_timeout_is_never_delivered_twice(
    client: Client, competitor: Client
) -> None:
    queue = new_queue(client, visibility_timeout_s=1)
    published = {p.id for p in client.publish_batch(queue, [{"body": n} for n in range(2)])}
    handled: list[str] = []
    running = threading.Semaphore(0)
    finished = threading.Event()

    def slow(delivery: Delivery) -> None:
        running.release()
        time.sleep(4)  # the work: four times the lease the consumer asks for
        handled.append(delivery.id)
        if len(handled) == 2:
            finished.set()

    consumer = Background(
        lambda: client.consume(queue, slow, concurrency=2, visibility_timeout_s=1)
    )
    for _ in range(2):
        assert running.acquire(timeout=30)
    # While both handlers run past their leases, nobody else can have their messages.
    stolen = []
    while not finished.is_set():
        stolen += competitor.receive(queue, max_messages=10, wait_s=0.5)
    client.stop()
    consumer.join()
    assert stolen == []
    assert sorted(handled) == sorted(published)
    assert leases(client, queue) == Counter(dict.fromkeys(published, 1))
    for message_id in published:
        types = event_types(client, queue, message_id)
        assert types.count("message.lease_extended") >= 6 and types[-1] == "message.acked"


def test_a_handler_that_raises_nacks_with_the_exception_as_reason(
    client: Client, queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    published = client.publish(queue, {"order": 7})
    attempts: list[int] = []
    done = threading.Event()

    def flaky(delivery: Delivery) -> None:
        attempts.append(delivery.receive_count)
        if delivery.receive_count == 1:
            raise ValueError("payment service said no " + "x" * 2000)
        done.set()

    with caplog.at_level(logging.WARNING, logger="cairn_client"):
        consumer = Background(lambda: client.consume(queue, flaky, concurrency=1, wait_s=1))
        assert done.wait(30)
        client.stop()
        consumer.join()
    assert attempts == [1, 2]
    message = settled(client, queue, published.id)
    nacks = [h.data for h in message.history if h.type == "message.nacked"]
    expected = ("ValueError: payment service said no " + "x" * 2000)[:1024]
    assert [n["reason"] for n in nacks] == [expected]
    assert message.status == "acked"
    failure = [r for r in caplog.records if r.exc_info is not None]
    assert failure and failure[0].name == "cairn_client.consume"
    assert published.id in failure[0].getMessage()


def test_a_handler_may_settle_its_message_itself(client: Client, queue: str) -> None:
    published = client.publish(queue, 1)
    done = threading.Event()

    def settles(delivery: Delivery) -> None:
        delivery.nack(reason="not mine", delay_s=600)
        done.set()

    consumer = Background(lambda: client.consume(queue, settles, wait_s=1))
    assert done.wait(30)
    client.stop()
    consumer.join()
    # Nacked once by the handler; nothing acked or nacked on top of it.
    assert event_types(client, queue, published.id) == [
        "message.published",
        "message.leased",
        "message.nacked",
    ]


def test_stop_lets_running_handlers_finish_receives_no_more_and_loses_nothing(
    client: Client, queue: str
) -> None:
    published = [p.id for p in client.publish_batch(queue, [{"body": n} for n in range(10)])]
    started = threading.Semaphore(0)
    gate = threading.Event()
    finished: list[str] = []

    def blocked(delivery: Delivery) -> None:
        started.release()
        assert gate.wait(30)
        finished.append(delivery.id)

    consumer = Background(lambda: client.consume(queue, blocked, concurrency=3, wait_s=1))
    for _ in range(3):
        assert started.acquire(timeout=30)
    client.stop()
    gate.set()  # the running handlers finish after the stop
    consumer.join()
    assert sorted(finished) == sorted(published[:3])
    assert leases(client, queue) == Counter(dict.fromkeys(published[:3], 1))  # no receive since
    assert stats_now(client, queue) == (3, 7, 0)


def test_what_a_receive_in_flight_brings_after_stop_is_released_at_once(
    server: Server, client: Client, queue: str
) -> None:
    with Proxy(int(server.url.rsplit(":", 1)[1])) as proxy, Client(proxy.url) as consuming:
        handled: list[str] = []
        consumer = Background(
            lambda: consuming.consume(queue, lambda d: handled.append(d.id), wait_s=10)
        )
        receive = f"POST /v1/queues/{queue}/receive".encode()
        deadline = time.monotonic() + 30
        while receive not in proxy.requests:  # the long poll is waiting at the server
            assert time.monotonic() < deadline
            time.sleep(0.01)
        consuming.stop()
        published = client.publish(queue, "late")  # answers the poll in flight, after stop
        consumer.join()
        assert proxy.requests.count(receive) == 1
    assert handled == []
    message = settled(client, queue, published.id)
    assert message.status == "available"
    nacks = [h.data["reason"] for h in message.history if h.type == "message.nacked"]
    assert nacks == ["consumer stopping"]


async def test_async_consume_keeps_leases_and_stop_waits_for_handlers(server: Server) -> None:
    async with AsyncClient(server.url) as client:
        queue = f"q-{time.monotonic_ns()}"
        await client.create_queue(queue, visibility_timeout_s=1)
        published = [p.id for p in await client.publish_batch(queue, [{"body": 1}, {"body": 2}])]
        started = asyncio.Semaphore(0)
        finished: list[str] = []

        async def slow(delivery: AsyncDelivery) -> None:
            started.release()
            await asyncio.sleep(3)  # the work: three times the lease
            finished.append(delivery.id)

        consumer = asyncio.create_task(
            client.consume(queue, slow, concurrency=2, visibility_timeout_s=1, wait_s=1)
        )
        for _ in range(2):
            await asyncio.wait_for(started.acquire(), 30)
        await client.stop()
        assert sorted(finished) == sorted(published)  # stop() returned after the handlers
        await asyncio.wait_for(consumer, 5)
        events = await client.events(after=0, queue=queue, types=["message.*"])
        kinds: Counter[str] = Counter(e.type for e in events.events)
        assert kinds["message.leased"] == 2 and kinds["message.acked"] == 2
        assert kinds["message.lease_extended"] >= 4
        stats = (await client.get_queue(queue, min_position=events.next_after)).stats
        assert (stats.in_flight, stats.available) == (0, 0)


async def test_async_handler_that_raises_is_nacked_and_a_handler_may_stop_its_consumer(
    server: Server,
) -> None:
    async with AsyncClient(server.url) as client:
        queue = f"q-{time.monotonic_ns()}"
        await client.create_queue(queue)
        published = await client.publish(queue, "boom")
        seen: list[int] = []

        async def handler(delivery: AsyncDelivery) -> Any:
            seen.append(delivery.receive_count)
            if delivery.receive_count == 1:
                raise KeyError("missing")
            await client.stop()  # from inside a handler: no waiting for itself

        await asyncio.wait_for(client.consume(queue, handler, wait_s=1), 30)
        assert seen == [1, 2]
        last = (await client.events(after=0, queue=queue)).next_after
        message = await client.get_message(queue, published.id, min_position=last)
        reasons = [h.data["reason"] for h in message.history if h.type == "message.nacked"]
        assert reasons == ["KeyError: 'missing'"] and message.status == "acked"
