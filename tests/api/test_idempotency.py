"""Idempotency-Key (API.md v1.1, "Idempotency keys") through real HTTP: a repeat of the same
request replays the first 2xx answer and appends nothing, a reuse with another request is a
422, refused requests are not kept, keys are per token subject, concurrent repeats run once,
and kept answers outlive the broker process."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest

from tests.api.conftest import Server, make_server, problem
from tests.api.v11 import (
    events,
    head,
    new_queue,
    publish,
    publish_batch,
    receive,
    stats,
)
from tests.postgres import drop
from tests.postgres import fresh_database as fresh_postgres

SECRET = "idempotency-secret-for-tests-0123456789"
REPLAYED = "Idempotent-Replayed"


def fresh_key() -> str:
    return f"key-{uuid.uuid4()}"


def keyed(key: str | bytes) -> dict[str, Any]:
    return {"Idempotency-Key": key}


def assert_replay(first: httpx.Response, again: httpx.Response) -> None:
    """``again`` is ``first``'s answer replayed: same status and body, marked as replayed."""
    assert REPLAYED.lower() not in {k.lower() for k in first.headers}
    assert again.status_code == first.status_code, again.text
    assert again.content == first.content
    assert again.headers.get(REPLAYED) == "true"


def reuse_refused(response: httpx.Response) -> None:
    body = problem(response, 422)
    assert body["type"].endswith("/idempotency-key-reused"), body


def test_a_repeated_publish_replays_the_first_answer_and_appends_nothing(
    http: httpx.Client, queue: str
) -> None:
    """The same method, path, key and body (key order and whitespace aside) answers the first
    answer's status and body with ``Idempotent-Replayed: true``, and writes nothing more."""
    key = fresh_key()
    url = f"/v1/queues/{queue}/messages"
    first = http.post(
        url,
        json={"body": {"a": 1, "b": [1, 2]}, "attributes": {"x": "1", "y": "2"}},
        headers=keyed(key),
    )
    assert first.status_code == 201, first.text
    logged = events(http, queue)
    reordered = '{ "attributes" : {"y":"2","x":"1"},\n  "body": {"b": [1,2], "a": 1} }'
    headers = {**keyed(key), "content-type": "application/json"}
    again = http.post(url, content=reordered.encode(), headers=headers)
    assert_replay(first, again)
    assert again.json() == first.json()
    assert events(http, queue) == logged
    assert stats(http, queue)["published_total"] == 1
    [received] = receive(http, queue, max_messages=10)
    assert received["id"] == first.json()["id"]


def test_the_same_key_with_another_body_path_or_method_is_refused(http: httpx.Client) -> None:
    """Reusing a key for a different body, a different path or a different method is a 422
    of type ``…/idempotency-key-reused`` that writes nothing."""
    first_queue, other_queue = new_queue(http), new_queue(http)
    key = fresh_key()
    url = f"/v1/queues/{first_queue}/messages"
    assert http.post(url, json={"body": 1}, headers=keyed(key)).status_code == 201
    logged_first, logged_other = events(http, first_queue), events(http, other_queue)
    reuse_refused(http.post(url, json={"body": 2}, headers=keyed(key)))
    reuse_refused(http.post(url, json={"body": 1, "priority": 4}, headers=keyed(key)))
    reuse_refused(
        http.post(f"/v1/queues/{other_queue}/messages", json={"body": 1}, headers=keyed(key))
    )
    reuse_refused(http.patch(f"/v1/queues/{first_queue}", json={"delay_s": 1}, headers=keyed(key)))
    assert events(http, first_queue) == logged_first
    assert events(http, other_queue) == logged_other

    # The same path under another method: a PATCH's key reused for a DELETE.
    patch_key = fresh_key()
    patched = http.patch(f"/v1/queues/{other_queue}", json={"delay_s": 2}, headers=keyed(patch_key))
    assert patched.status_code == 200, patched.text
    logged_other = events(http, other_queue)
    reuse_refused(http.delete(f"/v1/queues/{other_queue}", headers=keyed(patch_key)))
    assert http.get(f"/v1/queues/{other_queue}").status_code == 200
    assert events(http, other_queue) == logged_other


def test_a_refused_request_is_not_kept_and_may_be_retried_with_its_key(
    http: httpx.Client, queue: str
) -> None:
    """A 4xx first answer is not kept: the same key with a corrected body (or once the queue
    exists) runs for real, and is then the answer that repeats replay."""
    key = fresh_key()
    url = f"/v1/queues/{queue}/messages"
    problem(http.post(url, json={"body": 1, "priority": 99}, headers=keyed(key)), 422)
    retried = http.post(url, json={"body": 1}, headers=keyed(key))
    assert retried.status_code == 201, retried.text
    assert REPLAYED not in retried.headers
    assert_replay(retried, http.post(url, json={"body": 1}, headers=keyed(key)))
    assert stats(http, queue)["published_total"] == 1

    missing = f"later-{uuid.uuid4().hex[:8]}"
    later_key = fresh_key()
    later_url = f"/v1/queues/{missing}/messages"
    problem(http.post(later_url, json={"body": "x"}, headers=keyed(later_key)), 404)
    assert http.post("/v1/queues", json={"name": missing}).status_code == 201
    now_exists = http.post(later_url, json={"body": "x"}, headers=keyed(later_key))
    assert now_exists.status_code == 201, now_exists.text
    assert REPLAYED not in now_exists.headers


@pytest.mark.parametrize(
    "key",
    [b"", b"k" * 256, "clé".encode(), b"two words", b"tab\there"],
    ids=["empty", "256-chars", "non-ascii", "space", "tab"],
)
def test_an_invalid_key_is_a_422_naming_the_header(
    http: httpx.Client, queue: str, key: bytes
) -> None:
    """A key that is not 1..255 visible ASCII characters is refused, naming
    ``header.Idempotency-Key``, and nothing is published."""
    logged = events(http, queue)
    body = problem(
        http.post(f"/v1/queues/{queue}/messages", json={"body": 1}, headers=keyed(key)), 422
    )
    assert [e["field"] for e in body["errors"]] == ["header.Idempotency-Key"]
    assert events(http, queue) == logged


def test_the_longest_key_and_every_visible_character_are_accepted(
    http: httpx.Client, queue: str
) -> None:
    """255 characters, and keys made of any visible ASCII characters, are valid keys."""
    visible = "".join(chr(c) for c in range(0x21, 0x7F))
    for key in ("k" * 255, visible, "!"):
        url = f"/v1/queues/{queue}/messages"
        first = http.post(url, json={"body": key}, headers=keyed(key))
        assert first.status_code == 201, first.text
        assert_replay(first, http.post(url, json={"body": key}, headers=keyed(key)))
    assert stats(http, queue)["published_total"] == 3


Request = tuple[str, str, dict[str, Any] | None]
"""method, path, JSON body (None: no body)."""


def _batch(http: httpx.Client) -> tuple[str, Request]:
    queue = new_queue(http)
    entries = [{"body": i, "priority": i % 10} for i in range(3)]
    return queue, ("POST", f"/v1/queues/{queue}/messages/batch", {"messages": entries})


def _ack(http: httpx.Client) -> tuple[str, Request]:
    queue = new_queue(http)
    published = publish(http, queue)
    [got] = receive(http, queue)
    url = f"/v1/queues/{queue}/messages/{published['id']}/ack"
    return queue, ("POST", url, {"receipt": got["receipt"]})


def _nack(http: httpx.Client) -> tuple[str, Request]:
    queue = new_queue(http)
    published = publish(http, queue)
    [got] = receive(http, queue)
    url = f"/v1/queues/{queue}/messages/{published['id']}/nack"
    return queue, ("POST", url, {"receipt": got["receipt"], "delay_s": 60, "reason": "r"})


def _create(http: httpx.Client) -> tuple[str, Request]:
    queue = f"made-{uuid.uuid4().hex[:10]}"
    return queue, ("POST", "/v1/queues", {"name": queue, "visibility_timeout_s": 7})


def _update(http: httpx.Client) -> tuple[str, Request]:
    queue = new_queue(http)
    return queue, ("PATCH", f"/v1/queues/{queue}", {"visibility_timeout_s": 9, "delay_s": 3})


def _delete(http: httpx.Client) -> tuple[str, Request]:
    queue = new_queue(http)
    return queue, ("DELETE", f"/v1/queues/{queue}", None)


def _purge(http: httpx.Client) -> tuple[str, Request]:
    queue = new_queue(http)
    publish_batch(http, queue, [{"body": i} for i in range(2)])
    return queue, ("POST", f"/v1/queues/{queue}/purge", None)


def _restore(http: httpx.Client) -> tuple[str, Request]:
    queue = new_queue(http)
    publish(http, queue)
    assert http.delete(f"/v1/queues/{queue}").status_code == 204
    return queue, ("POST", f"/v1/queues/{queue}/restore", None)


def _undo(http: httpx.Client) -> tuple[str, Request]:
    queue = new_queue(http)
    publish(http, queue)
    purge_id = http.post(f"/v1/queues/{queue}/purge").json()["purge_id"]
    return queue, ("POST", f"/v1/queues/{queue}/purges/{purge_id}/undo", None)


def _redrive(http: httpx.Client) -> tuple[str, Request]:
    queue, target = new_queue(http), new_queue(http, "target")
    publish_batch(http, queue, [{"body": i} for i in range(2)])
    return queue, ("POST", f"/v1/queues/{queue}/redrive", {"to": target})


COMMANDS: dict[str, Callable[[httpx.Client], tuple[str, Request]]] = {
    "batch-publish": _batch,
    "ack": _ack,
    "nack": _nack,
    "create-queue": _create,
    "patch-queue": _update,
    "delete-queue": _delete,
    "purge": _purge,
    "restore-queue": _restore,
    "undo-purge": _undo,
    "redrive": _redrive,
}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_replays_under_its_key(http: httpx.Client, command: str) -> None:
    """Batch publish, ack, nack, create/patch/delete/restore queue, purge, undo and redrive:
    each repeat under the same key answers the first answer (where running the command again
    would answer differently: 409, 404, 0 restored, ...) and appends nothing."""
    queue, (method, path, body) = COMMANDS[command](http)
    key = fresh_key()

    def send() -> httpx.Response:
        return http.request(method, path, json=body, headers=keyed(key))

    first = send()
    assert 200 <= first.status_code < 300, first.text
    before = head(http)
    again = send()
    assert_replay(first, again)
    assert_replay(first, send())
    touched = {queue} | ({body["to"]} if body and "to" in body else set())
    assert [e for e in events(http, after=before) if e["queue"] in touched] == []


def test_a_purge_replay_does_not_purge_what_came_since(http: httpx.Client, queue: str) -> None:
    """A repeated purge answers the first purge's count and leaves later messages alone."""
    publish_batch(http, queue, [{"body": i} for i in range(2)])
    key = fresh_key()
    first = http.post(f"/v1/queues/{queue}/purge", headers=keyed(key))
    assert first.status_code == 200 and first.json()["purged"] == 2
    later = publish(http, queue, "after the purge")
    again = http.post(f"/v1/queues/{queue}/purge", headers=keyed(key))
    assert_replay(first, again)
    assert [m["id"] for m in receive(http, queue, max_messages=10)] == [later["id"]]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def secure(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A broker with auth on, on each store."""
    url = fresh_postgres() if request.param == "postgres" else None
    running = make_server(
        tmp_path_factory.mktemp("idem-secure"), "--jwt-secret", SECRET, database_url=url
    ).start()
    yield running
    running.stop()
    if url is not None:
        drop(url)


def bearer(subject: str) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": subject, "scope": "admin", "iat": now, "nbf": now, "exp": now + 600}
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


def test_keys_are_scoped_per_token_subject(secure: Server) -> None:
    """Two subjects using the same key each get their own run (two messages), even with
    different bodies; each one's repeat replays its own answer."""
    alice = secure.client(headers=bearer("alice"))
    bob = secure.client(headers=bearer("bob"))
    queue = new_queue(alice)
    key = fresh_key()
    url = f"/v1/queues/{queue}/messages"
    by_alice = alice.post(url, json={"body": "same"}, headers=keyed(key))
    by_bob = bob.post(url, json={"body": "same"}, headers=keyed(key))
    assert (by_alice.status_code, by_bob.status_code) == (201, 201), by_bob.text
    assert REPLAYED not in by_bob.headers
    assert by_alice.json()["id"] != by_bob.json()["id"]
    other_body = bob.post(url, json={"body": "bob's own"}, headers=keyed(key))
    reuse_refused(other_body)  # reused by bob himself: refused for bob
    carol = secure.client(headers=bearer("carol"))
    by_carol = carol.post(url, json={"body": "carol's own"}, headers=keyed(key))
    assert by_carol.status_code == 201 and REPLAYED not in by_carol.headers
    assert_replay(by_alice, alice.post(url, json={"body": "same"}, headers=keyed(key)))
    assert_replay(by_bob, bob.post(url, json={"body": "same"}, headers=keyed(key)))
    assert stats(alice, queue)["published_total"] == 3


def test_concurrent_repeats_run_once_and_all_get_the_same_answer(
    server: Server, http: httpx.Client, queue: str
) -> None:
    """Five identical keyed publishes sent at once: one message is published, all five get
    the same status and body, and all but the one that ran are marked replayed."""
    key = fresh_key()
    url = f"/v1/queues/{queue}/messages"
    start = threading.Barrier(5)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def send() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as own:
            start.wait()
            response = own.post(url, json={"body": {"once": True}}, headers=keyed(key))
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=send) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 5
    assert {(a.status_code, a.content) for a in answers} == {(201, answers[0].content)}
    assert sorted(a.headers.get(REPLAYED, "") for a in answers) == ["", *["true"] * 4]
    published = [e for e in events(http, queue) if e["type"] == "message.published"]
    assert [e["message_id"] for e in published] == [answers[0].json()["id"]]


def test_a_kept_answer_survives_a_restart(server: Server) -> None:
    """A key's answer is kept in the store: after the broker process stops and starts again
    on the same database, the repeat is replayed and publishes nothing."""
    client = server.client()
    queue = new_queue(client)
    key = fresh_key()
    url = f"/v1/queues/{queue}/messages"
    first = client.post(url, json={"body": 1}, headers=keyed(key))
    assert first.status_code == 201, first.text
    logged = events(client, queue)
    assert server.stop() == 0
    server.start()
    with httpx.Client(base_url=server.url, timeout=30) as restarted:
        assert_replay(first, restarted.post(url, json={"body": 1}, headers=keyed(key)))
        reuse_refused(restarted.post(url, json={"body": 2}, headers=keyed(key)))
        assert events(restarted, queue) == logged
