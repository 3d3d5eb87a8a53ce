"""Auth: a token, or a callable that hands out a fresh one for every request; refusals are
``Unauthorized`` and ``Forbidden``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cairn_client import Client, Delivery, Forbidden, Unauthorized

from tests.api.conftest import Server, make_server
from tests.api.test_security import AUDIENCE, ISSUER, SECRET, token


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory: Path = tmp_path_factory.mktemp("secure")
    server = make_server(
        directory, "--jwt-secret", SECRET, "--jwt-audience", AUDIENCE, "--jwt-issuer", ISSUER
    ).start()
    yield server
    server.stop()


def test_a_token_is_sent_with_every_request_feeds_included(secure: Server) -> None:
    with Client(secure.url, token=token("admin")) as client:
        client.create_queue("orders.auth")
        published = client.publish("orders.auth", 1)
        feed = client.follow(after=published.position - 1)
        assert next(feed).message_id == published.id
        feed.close()


def test_a_callable_hands_out_a_fresh_token_for_each_request(secure: Server) -> None:
    minted: list[str] = []

    def fresh() -> str:
        minted.append(token("admin", ttl=60))
        return minted[-1]

    with Client(secure.url, token=fresh) as client:
        client.create_queue("fresh")
        client.publish("fresh", 1)
        client.get_queue("fresh")
    assert len(minted) == 3


def test_a_consumer_needs_no_more_than_the_consume_scope(secure: Server) -> None:
    with Client(secure.url, token=token("admin")) as admin:
        admin.create_queue("jobs.scoped")
        published = admin.publish("jobs.scoped", "work")
    handled: list[str] = []
    done = threading.Event()

    def handler(delivery: Delivery) -> None:
        handled.append(delivery.id)
        done.set()

    with Client(secure.url, token=token("consume:jobs.*")) as worker:
        thread = threading.Thread(target=lambda: worker.consume("jobs.scoped", handler, wait_s=1))
        thread.start()
        assert done.wait(30)
        worker.stop()
        thread.join(30)
        assert handled == [published.id]
        with pytest.raises(Forbidden) as refused:
            worker.publish("jobs.scoped", "not allowed")
    assert refused.value.status == 403


def test_no_token_or_an_expired_one_is_unauthorized(secure: Server) -> None:
    with Client(secure.url) as anonymous, pytest.raises(Unauthorized) as refused:
        anonymous.list_queues()
    assert refused.value.status == 401 and refused.value.problem.status == 401
    with Client(secure.url, token=token("admin", ttl=-60)) as expired, pytest.raises(Unauthorized):
        expired.list_queues()
