"""Errors a client acts on (API.md v1.2, "Clarifications of v1.1"): one problem type per
condition whatever the route, a ``min_position`` no command answered refused at once, and a
bad queue name said in words, through every door. Both stores."""

from __future__ import annotations

import time
import uuid
from typing import Any, Final

import httpx
import pytest

from tests.api.conftest import problem
from tests.api.test_sqs import error_of
from tests.api.test_sqs import sqs as sqs  # the fixture
from tests.api.v11 import head, new_queue, publish

TYPE: Final = "https://cairn.dev/problems/"
NAME_RULE: Final = "1 to 80 characters: letters, digits, '_', '.', '-'; not '.' or '..'"


def missing(name: str = "") -> str:
    return name or f"gone-{uuid.uuid4().hex[:8]}"


def queue_routes(name: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every route that names a queue, as a client would call it on one that does not exist."""
    return [
        ("GET", f"/v1/queues/{name}", None),
        ("GET", f"/v1/queues/{name}?as_of=1", None),
        ("PATCH", f"/v1/queues/{name}", {"delay_s": 1}),
        ("DELETE", f"/v1/queues/{name}", None),
        ("POST", f"/v1/queues/{name}/purge", None),
        ("POST", f"/v1/queues/{name}/redrive", {}),
        ("POST", f"/v1/queues/{name}/messages", {"body": 1}),
        ("POST", f"/v1/queues/{name}/messages/batch", {"messages": [{"body": 1}]}),
        ("POST", f"/v1/queues/{name}/receive", {}),
        ("POST", f"/v1/queues/{name}/messages/m/ack", {"receipt": "r"}),
        ("POST", f"/v1/queues/{name}/messages/m/nack", {"receipt": "r"}),
        (
            "POST",
            f"/v1/queues/{name}/messages/m/extend",
            {"receipt": "r", "visibility_timeout_s": 1},
        ),
        ("POST", f"/v1/queues/{name}/ack", {"acks": [{"id": "m", "receipt": "r"}]}),
        ("GET", f"/v1/queues/{name}/messages", None),
        ("GET", f"/v1/queues/{name}/messages?as_of=1", None),
        ("GET", f"/v1/queues/{name}/messages/m", None),
        ("GET", f"/v1/queues/{name}/messages/m?as_of=1", None),
        ("GET", f"/v1/queues/{name}/analytics", None),
        ("GET", f"/v1/queues/{name}/events/stream", None),
    ]


@pytest.mark.parametrize("name", ["", "bad%20name"])
def test_a_missing_queue_is_one_problem_type_on_every_route(http: httpx.Client, name: str) -> None:
    publish(http, new_queue(http))  # so that as_of=1 names a position that exists
    for method, path, body in queue_routes(missing(name)):
        answer = http.request(method, path, json=body)
        found = problem(answer, 404)
        assert found["type"] == TYPE + "queue-not-found", (method, path, found)


def test_a_missing_message_is_one_problem_type_on_every_route(http: httpx.Client) -> None:
    queue = new_queue(http)
    published = publish(http, queue)
    unknown = "01a2333f-6906-79b4-b6db-88e08081c4c5"
    for method, path, body in [
        ("GET", f"/v1/queues/{queue}/messages/{unknown}", None),
        ("GET", f"/v1/queues/{queue}/messages/{unknown}?as_of={published['position']}", None),
        ("GET", f"/v1/messages/{unknown}", None),
        ("POST", f"/v1/queues/{queue}/messages/{unknown}/ack", {"receipt": "r"}),
        ("POST", f"/v1/queues/{queue}/messages/{unknown}/nack", {"receipt": "r"}),
        (
            "POST",
            f"/v1/queues/{queue}/messages/{unknown}/extend",
            {"receipt": "r", "visibility_timeout_s": 1},
        ),
    ]:
        found = problem(http.request(method, path, json=body), 404)
        assert found["type"] == TYPE + "message-not-found", (method, path, found)


def read_routes(queue: str, message_id: str) -> list[str]:
    """Every read that takes ``min_position``."""
    return [
        "/v1/queues",
        f"/v1/queues/{queue}",
        f"/v1/queues/{queue}/messages",
        f"/v1/queues/{queue}/messages/{message_id}",
        f"/v1/messages/{message_id}",
        f"/v1/queues/{queue}/analytics",
        "/v1/projections",
        "/v1/events",
        "/v1/events/stream",
        f"/v1/queues/{queue}/events/stream",
    ]


def test_a_min_position_beyond_the_head_is_422_at_once_on_every_read(http: httpx.Client) -> None:
    queue = new_queue(http)
    published = publish(http, queue)
    beyond = head(http) + 1000
    for path in read_routes(queue, published["id"]):
        started = time.monotonic()
        found = problem(http.get(path, params={"min_position": beyond}), 422)
        assert time.monotonic() - started < 1.0, path  # not a wait for what cannot come
        assert [e["field"] for e in found["errors"]] == ["query.min_position"], path
        assert "head" in found["detail"]


def test_a_min_position_a_command_answered_is_still_read_your_writes(http: httpx.Client) -> None:
    queue = new_queue(http)
    published = publish(http, queue)
    for path in read_routes(queue, published["id"]):
        if path.endswith("/stream"):
            continue
        answer = http.get(path, params={"min_position": published["position"]})
        assert answer.status_code == 200, (path, answer.text)
        assert int(answer.headers["x-cairn-position"]) >= published["position"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/queues", {"name": "a b"}, "body.name"),
        ("/v1/queues", {"name": ".."}, "body.name"),
        ("/v1/queues", {"name": "x" * 81}, "body.name"),
        (
            "/v1/queues",
            {"name": "fine", "dead_letter_queue": "not/ok", "max_receive_count": 1},
            "body.dead_letter_queue",
        ),
    ],
)
def test_a_bad_queue_name_is_said_in_words(
    http: httpx.Client, path: str, body: dict[str, Any], field: str
) -> None:
    found = problem(http.post(path, json=body), 422)
    [error] = found["errors"]
    assert error["field"] == field
    for said in (found["detail"], error["message"]):
        assert NAME_RULE in said and "regex" not in said and "\\" not in said


def test_a_bad_queue_name_in_a_query_or_a_redrive_is_said_in_words(http: httpx.Client) -> None:
    queue = new_queue(http)
    for answer in (
        http.get("/v1/events", params={"queue": "a b"}),
        http.post(f"/v1/queues/{queue}/redrive", json={"to": "a b"}),
    ):
        found = problem(answer, 422)
        assert NAME_RULE in found["errors"][0]["message"] and "regex" not in found["detail"]


def test_the_sqs_door_says_a_bad_name_in_sqs_words(sqs: Any) -> None:
    error = error_of(sqs.create_queue, QueueName="a b")
    assert error["Code"] == "InvalidParameterValue"
    assert error["Message"].startswith("Can only include alphanumeric characters, periods,")
    assert "regex" not in error["Message"] and "\\" not in error["Message"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"QueueUrl": "q", "MessageBody": "\\ud800"}', "half a UTF-16 surrogate pair"),
        (b'{"QueueUrl": "q", "MessageBody": "\\udc00 x"}', "half a UTF-16 surrogate pair"),
        (b'{"QueueUrl": "q", "MessageBody": "\xff"}', "0xff at offset 34 is not UTF-8"),
    ],
)
def test_the_sqs_door_says_what_is_wrong_with_a_body_that_is_not_unicode(
    http: httpx.Client, body: bytes, says: str
) -> None:
    before = head(http)
    answer = http.post(
        "/",
        content=body,
        headers={
            "content-type": "application/x-amz-json-1.0",
            "x-amz-target": "AmazonSQS.SendMessage",
        },
    )
    assert answer.status_code == 400
    error = answer.json()
    assert error["__type"] == "com.amazonaws.sqs#SerializationException"
    assert says in error["message"] and "truncated" not in error["message"]
    assert head(http) == before
