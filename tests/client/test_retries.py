"""Retries that never do anything twice: commands carry one idempotency key over all their
attempts, so a command whose answer was lost after the broker committed happens once; a
receive is never sent again after its answer was lost; 429 waits for ``Retry-After``; 503 and
connection errors are retried with backoff up to ``retries``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from cairn_client import Client, ConnectionFailed, Published, RateLimited, Unavailable

from tests.api.conftest import Server, make_server
from tests.api.test_cluster import PostgresProcess
from tests.api.test_cluster import private_postgres as private_postgres
from tests.client.conftest import new_queue
from tests.client.proxy import Proxy


def port_of(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def published_ids(client: Client, queue: str) -> list[str | None]:
    events = client.events(after=0, queue=queue, types=["message.published"]).events
    return [e.message_id for e in events]


def test_a_command_whose_answer_was_lost_happens_once(server: Server) -> None:
    with Client(server.url) as direct, Proxy(port_of(server)) as proxy:
        queue = new_queue(direct)
        with Client(proxy.url) as client:
            proxy.drop_answers(f"POST /v1/queues/{queue}/messages$")
            published = client.publish(queue, {"order": 42})
            assert proxy.dropped == [f"POST /v1/queues/{queue}/messages".encode()]
            [delivery] = direct.receive(queue, wait_s=1)
            proxy.drop_answers(f"POST /v1/queues/{queue}/messages/.*/ack$")
            delivery._bind(client, queue)  # settle it through the proxy
            acked_at = delivery.ack()
        sent = [r for r in proxy.requests if r.startswith(b"POST")]
        assert len(sent) == 4 and len(proxy.dropped) == 2  # each sent twice, answered once
        assert published_ids(direct, queue) == [published.id]
        acks = direct.events(after=0, queue=queue, types=["message.acked"]).events
        assert [e.position for e in acks] == [acked_at]


def test_a_receive_whose_answer_was_lost_raises_and_is_not_sent_again(server: Server) -> None:
    with Client(server.url) as direct, Proxy(port_of(server)) as proxy:
        queue = new_queue(direct, visibility_timeout_s=1)
        published = direct.publish(queue, "once")
        with Client(proxy.url, retries=5) as client:
            proxy.drop_answers(f"POST /v1/queues/{queue}/receive$")
            with pytest.raises(ConnectionFailed):
                client.receive(queue, wait_s=1)
        assert proxy.requests.count(f"POST /v1/queues/{queue}/receive".encode()) == 1
        assert direct.receive(queue, wait_s=0) == []  # leased by the lost answer...
        [back] = direct.receive(queue, wait_s=5)  # ...until its lease ends
        assert (back.id, back.receive_count) == (published.id, 2)


def test_429_is_retried_after_retry_after(tmp_path: Path) -> None:
    server = make_server(tmp_path, "--rate-limit", "4/second").start()
    try:
        with Client(server.url, retries=0) as client:
            queue = new_queue(client)
            with pytest.raises(RateLimited) as limited:
                [client.publish(queue, n) for n in range(10)]
            assert limited.value.status == 429 and limited.value.retry_after is not None
            assert limited.value.retry_after >= 1
        # One retry is enough when it waits as long as Retry-After says (a second or more):
        # the window has moved on by then.
        with Client(server.url, retries=1) as client:
            started = time.monotonic()
            answers = [client.publish(queue, n) for n in range(10)]
            assert time.monotonic() - started >= 1
            assert set(published_ids(client, queue)) >= {a.id for a in answers}
            assert len(set(published_ids(client, queue))) == len(published_ids(client, queue))
    finally:
        server.stop()


def test_connection_errors_are_retried_until_the_server_is_back(tmp_path: Path) -> None:
    server = make_server(tmp_path).start()
    try:
        with Client(server.url, retries=10) as client:
            queue = new_queue(client)
            server.stop()
            outcome: list[Published | BaseException] = []
            worker = threading.Thread(target=lambda: outcome.append(client.publish(queue, 1)))
            worker.start()
            server.start()
            worker.join(60)
            [published] = outcome
            assert isinstance(published, Published)
            assert published_ids(client, queue) == [published.id]
    finally:
        server.stop()


def test_503_is_retried_until_the_store_is_back_and_the_command_happens_once(
    tmp_path: Path, private_postgres: PostgresProcess
) -> None:
    server = make_server(tmp_path, database_url=private_postgres.url()).start()
    try:
        with Client(server.url) as direct, Proxy(port_of(server)) as proxy:
            queue = new_queue(direct)
            private_postgres.stop("immediate")
            with Client(proxy.url, retries=0) as impatient, pytest.raises(Unavailable) as down:
                impatient.publish(queue, 0)
            assert down.value.status == 503
            outcome: list[Published] = []
            with Client(proxy.url, retries=20) as client:
                worker = threading.Thread(target=lambda: outcome.append(client.publish(queue, 1)))
                worker.start()
                publishes = f"POST /v1/queues/{queue}/messages".encode()
                deadline = time.monotonic() + 60
                while proxy.requests.count(publishes) < 3:  # refused, and tried again
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
                private_postgres.start()
                worker.join(90)
            [published] = outcome
            assert published_ids(direct, queue) == [published.id]
    finally:
        server.stop()
