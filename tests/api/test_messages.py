"""Publishing and consuming through real HTTP."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.api.conftest import make_server, problem
from tests.api.feeds import frames


def publish(http: httpx.Client, queue: str, body: Any = "x", **fields: Any) -> dict[str, Any]:
    response = http.post(f"/v1/queues/{queue}/messages", json={"body": body, **fields})
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    return result


def receive(http: httpx.Client, queue: str, **fields: Any) -> list[dict[str, Any]]:
    response = http.post(f"/v1/queues/{queue}/receive", json=fields)
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


def head(http: httpx.Client) -> int:
    value: int = http.get("/v1/projections").json()["head"]
    return value


def test_publish_answers_id_position_and_not_duplicate(http: httpx.Client, queue: str) -> None:
    response = http.post(f"/v1/queues/{queue}/messages", json={"body": {"order": 1}})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "position", "duplicate"}
    assert body["duplicate"] is False and body["position"] == head(http)


def test_a_repeated_dedup_id_answers_200_with_the_first_message(
    http: httpx.Client, queue: str
) -> None:
    first = http.post(f"/v1/queues/{queue}/messages", json={"body": 1, "dedup_id": "k"})
    before = head(http)
    again = http.post(f"/v1/queues/{queue}/messages", json={"body": 2, "dedup_id": "k"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == {**first.json(), "duplicate": True}
    assert head(http) == before


def test_a_body_comes_back_byte_for_byte(http: httpx.Client, queue: str) -> None:
    raw = '{"body": {"b": [1, 2.50, "\\u00e9 <script>"],  "a": null}, "attributes": {"k": "<v>"}}'
    response = http.post(
        f"/v1/queues/{queue}/messages", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 201
    got = http.post(f"/v1/queues/{queue}/receive", json={})
    assert '"body":{"b": [1, 2.50, "\\u00e9 <script>"],  "a": null}' in got.text
    assert got.json()["messages"][0]["attributes"] == {"k": "<v>"}


def test_a_batch_answers_in_request_order(http: httpx.Client, queue: str) -> None:
    response = http.post(
        f"/v1/queues/{queue}/messages/batch", json={"messages": [{"body": i} for i in range(5)]}
    )
    assert response.status_code == 201
    results = response.json()["results"]
    positions = [r["position"] for r in results]
    assert positions == list(range(positions[0], positions[0] + 5))
    got = receive(http, queue, max_messages=10)
    assert [m["id"] for m in got] == [r["id"] for r in results]
    assert [m["body"] for m in got] == list(range(5))


def test_a_batch_with_one_bad_entry_writes_nothing(http: httpx.Client, queue: str) -> None:
    before = head(http)
    entries: list[dict[str, Any]] = [{"body": i} for i in range(10)]
    entries[7]["delay_s"] = 901
    body = problem(http.post(f"/v1/queues/{queue}/messages/batch", json={"messages": entries}), 422)
    assert body["errors"][0]["field"] == "messages[7].delay_s"
    entries[7] = {"body": 7, "attributes": {"bad key": "v"}}
    body = problem(http.post(f"/v1/queues/{queue}/messages/batch", json={"messages": entries}), 422)
    assert body["errors"][0]["field"] == "messages[7].attributes"
    problem(http.post(f"/v1/queues/{queue}/messages/batch", json={"messages": []}), 422)
    too_many = {"messages": [{"body": 1}] * 101}
    problem(http.post(f"/v1/queues/{queue}/messages/batch", json=too_many), 422)
    assert head(http) == before


def test_bad_requests_get_precise_problems(http: httpx.Client, queue: str) -> None:
    url = f"/v1/queues/{queue}/messages"
    problem(http.post(url, content="{", headers={"content-type": "application/json"}), 400)
    problem(http.post(url, content="[1]", headers={"content-type": "application/json"}), 400)
    problem(http.post(url, content="body=1", headers={"content-type": "text/plain"}), 415)
    problem(http.post(url, content='{"body": 1}'), 415)
    assert problem(http.post(url, json={}), 422)["errors"][0]["field"] == "body.body"
    assert problem(http.post(url, json={"body": 1, "delay_s": -1}), 422)["errors"][0]["field"] == (
        "body.delay_s"
    )
    many = {f"k{i}": "v" for i in range(17)}
    assert (
        problem(http.post(url, json={"body": 1, "attributes": many}), 422)["errors"][0]["field"]
        == "body.attributes"
    )
    long_value = {"k": "v" * 1025}
    problem(http.post(url, json={"body": 1, "attributes": long_value}), 422)
    problem(http.post(url, json={"body": "x" * (256 * 1024)}), 413)
    problem(
        http.post(
            url,
            content=b'{"body": "' + b"x" * (1024 * 1024) + b'"}',
            headers={"content-type": "application/json"},
        ),
        413,
    )
    problem(http.post(f"/v1/queues/{uuid.uuid4().hex}/messages", json={"body": 1}), 404)


def test_receive_leases_with_a_visibility_timeout(http: httpx.Client, queue: str) -> None:
    published = publish(http, queue, "a")
    [message] = receive(http, queue, visibility_timeout_s=1)
    assert message["id"] == published["id"] and message["receive_count"] == 1
    assert message["position"] == published["position"] and message["receipt"]
    assert message["visible_at"] > message["published_at"]
    assert receive(http, queue) == []
    again = receive(http, queue, wait_s=3)  # the lease ends after 1 s, the long poll sees it
    assert [m["id"] for m in again] == [published["id"]]
    assert again[0]["receive_count"] == 2 and again[0]["receipt"] != message["receipt"]


def test_ack_is_204_idempotent_and_409_for_a_lost_lease(http: httpx.Client, queue: str) -> None:
    published = publish(http, queue)
    [first] = receive(http, queue, visibility_timeout_s=1)
    [second] = receive(http, queue, visibility_timeout_s=30, wait_s=3)
    url = f"/v1/queues/{queue}/messages/{published['id']}/ack"
    body = problem(http.post(url, json={"receipt": first["receipt"]}), 409)
    assert body["errors"][0]["field"] == "body.receipt"
    assert http.post(url, json={"receipt": second["receipt"]}).status_code == 204
    assert http.post(url, json={"receipt": second["receipt"]}).status_code == 204
    problem(http.post(f"/v1/queues/{queue}/messages/nope/ack", json={"receipt": "r"}), 404)
    detail = http.get(
        f"/v1/queues/{queue}/messages/{published['id']}", params={"min_position": head(http)}
    )
    assert detail.json()["status"] == "acked"
    assert [h["type"] for h in detail.json()["history"]].count("message.acked") == 1


def test_nack_redelivers_after_its_delay_with_a_reason(http: httpx.Client, queue: str) -> None:
    published = publish(http, queue)
    [message] = receive(http, queue)
    url = f"/v1/queues/{queue}/messages/{published['id']}/nack"
    assert (
        http.post(
            url, json={"receipt": message["receipt"], "delay_s": 1, "reason": "busy"}
        ).status_code
        == 204
    )
    assert receive(http, queue) == []
    assert [m["id"] for m in receive(http, queue, wait_s=3)] == [published["id"]]
    problem(http.post(url, json={"receipt": message["receipt"]}), 409)
    problem(http.post(url, json={"receipt": "r", "delay_s": 43201}), 422)
    detail = http.get(
        f"/v1/queues/{queue}/messages/{published['id']}", params={"min_position": head(http)}
    ).json()
    nacked = [h for h in detail["history"] if h["type"] == "message.nacked"]
    assert nacked[0]["data"]["reason"] == "busy"


def test_extend_pushes_the_end_of_the_lease(http: httpx.Client, queue: str) -> None:
    published = publish(http, queue)
    [message] = receive(http, queue, visibility_timeout_s=1)
    url = f"/v1/queues/{queue}/messages/{published['id']}/extend"
    response = http.post(url, json={"receipt": message["receipt"], "visibility_timeout_s": 60})
    assert response.status_code == 200
    assert response.json()["visible_at"] > message["visible_at"]
    assert receive(http, queue, wait_s=1.5) == []
    ack = http.post(
        f"/v1/queues/{queue}/messages/{published['id']}/ack", json={"receipt": message["receipt"]}
    )
    assert ack.status_code == 204
    problem(http.post(url, json={"receipt": message["receipt"]}), 422)


def test_batch_ack_reports_each_entry(http: httpx.Client, queue: str) -> None:
    ids = [publish(http, queue, i)["id"] for i in range(2)]
    got = receive(http, queue, max_messages=2)
    acks = [{"id": m["id"], "receipt": m["receipt"]} for m in got]
    acks += [{"id": ids[0], "receipt": "stale"}, {"id": "missing", "receipt": "r"}]
    response = http.post(f"/v1/queues/{queue}/ack", json={"acks": acks})
    assert response.status_code == 200
    assert response.json()["results"] == [
        {"id": ids[0], "status": 204},
        {"id": ids[1], "status": 204},
        {"id": ids[0], "status": 409},
        {"id": "missing", "status": 404},
    ]


def test_a_delayed_message_shows_as_delayed_then_available(http: httpx.Client, queue: str) -> None:
    published = publish(http, queue, "later", delay_s=1)
    url = f"/v1/queues/{queue}/messages/{published['id']}"
    assert (
        http.get(url, params={"min_position": published["position"]}).json()["status"] == "delayed"
    )
    stats = http.get(f"/v1/queues/{queue}").json()["stats"]
    assert (stats["delayed"], stats["available"]) == (1, 0)
    start = time.monotonic()
    [message] = receive(http, queue, wait_s=5)
    assert message["id"] == published["id"]
    assert 0.5 < time.monotonic() - start < 3
    http.patch(f"/v1/queues/{queue}", json={"delay_s": 1})
    default_delayed = publish(http, queue, "queue default")
    assert receive(http, queue) == []
    assert [m["id"] for m in receive(http, queue, wait_s=3)] == [default_delayed["id"]]


def test_a_long_poll_wakes_within_a_second_of_a_publish(
    http: httpx.Client, queue: str, server: Any
) -> None:
    got: dict[str, Any] = {}

    def poll() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as other:
            response = other.post(f"/v1/queues/{queue}/receive", json={"wait_s": 20})
            got["messages"] = response.json()["messages"]
            got["at"] = time.monotonic()

    waiting_before = _waiting_polls(http)
    poller = threading.Thread(target=poll)
    poller.start()
    deadline = time.monotonic() + 10
    while _waiting_polls(http) <= waiting_before:  # until the server reports the poll waiting
        assert time.monotonic() < deadline, "the long poll never started waiting"
    published = publish(http, queue, "wake up")
    answered = time.monotonic()
    poller.join(25)
    assert [m["id"] for m in got["messages"]] == [published["id"]]
    assert got["at"] - answered < 1.0


def _waiting_polls(http: httpx.Client) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("cairn_receive_long_polls_waiting "):
            return float(line.split()[1])
    raise AssertionError("no cairn_receive_long_polls_waiting metric")


def test_a_long_poll_that_finds_nothing_answers_empty_when_the_wait_ends(
    http: httpx.Client, queue: str
) -> None:
    start = time.monotonic()
    assert receive(http, queue, wait_s=1) == []
    assert 0.9 < time.monotonic() - start < 3
    problem(http.post(f"/v1/queues/{queue}/receive", json={"wait_s": 21}), 422)
    problem(http.post(f"/v1/queues/{queue}/receive", json={"max_messages": 101}), 422)


def test_messages_out_of_receives_go_to_the_dead_letter_queue(http: httpx.Client) -> None:
    dlq, source = f"dlq-{uuid.uuid4().hex[:8]}", f"src-{uuid.uuid4().hex[:8]}"
    http.post("/v1/queues", json={"name": dlq})
    http.post(
        "/v1/queues",
        json={
            "name": source,
            "visibility_timeout_s": 1,
            "max_receive_count": 1,
            "dead_letter_queue": dlq,
        },
    )
    published = publish(http, source, {"k": 1}, attributes={"a": "b"})
    [message] = receive(http, source)
    nack = http.post(
        f"/v1/queues/{source}/messages/{published['id']}/nack", json={"receipt": message["receipt"]}
    )
    assert nack.status_code == 204
    [dead] = receive(http, dlq)
    assert dead["body"] == {"k": 1}
    assert dead["attributes"] == {
        "a": "b",
        "source_queue": source,
        "source_message_id": published["id"],
    }
    original = http.get(
        f"/v1/queues/{source}/messages/{published['id']}", params={"min_position": head(http)}
    ).json()
    assert original["status"] == "dead_lettered"
    stats = http.get(f"/v1/queues/{source}").json()["stats"]
    assert stats["dead_lettered_total"] == 1
    http.post(f"/v1/queues/{dlq}/messages/{dead['id']}/nack", json={"receipt": dead["receipt"]})
    moved = http.post(f"/v1/queues/{dlq}/redrive", json={})
    assert moved.status_code == 200 and moved.json()["moved"] == 1
    [back] = receive(http, source)
    assert back["body"] == {"k": 1} and back["attributes"] == {"a": "b"}
    problem(http.post(f"/v1/queues/{dlq}/redrive", json={"to": "no-such-queue"}), 422)


def test_message_detail_and_list_by_status_with_a_cursor(http: httpx.Client, queue: str) -> None:
    ids = [publish(http, queue, i)["id"] for i in range(5)]
    [leased] = receive(http, queue)
    assert leased["id"] == ids[0]
    at = head(http)
    detail = http.get(f"/v1/queues/{queue}/messages/{ids[0]}", params={"min_position": at})
    assert detail.status_code == 200
    body = detail.json()
    assert (body["id"], body["queue"], body["status"], body["body"]) == (
        ids[0],
        queue,
        "in_flight",
        0,
    )
    assert [h["type"] for h in body["history"]] == ["message.published", "message.leased"]
    assert "receipt" not in body["history"][1]["data"] and body["history"][1]["data"]["lease"]
    page = http.get(
        f"/v1/queues/{queue}/messages", params={"status": "available", "limit": 2}
    ).json()
    assert [m["id"] for m in page["messages"]] == ids[1:3] and page["next"] == ids[2]
    assert "history" not in page["messages"][0]
    rest = http.get(
        f"/v1/queues/{queue}/messages",
        params={"status": "available", "after": page["next"], "limit": 2},
    ).json()
    assert [m["id"] for m in rest["messages"]] == ids[3:5] and rest["next"] is None
    everything = http.get(f"/v1/queues/{queue}/messages").json()["messages"]
    assert [m["status"] for m in everything] == ["in_flight"] + ["available"] * 4
    problem(http.get(f"/v1/queues/{queue}/messages/{uuid.uuid4()}"), 404)
    problem(http.get(f"/v1/queues/{queue}/messages", params={"after": "nope"}), 404)
    problem(http.get(f"/v1/queues/{queue}/messages", params={"limit": 0}), 422)


def test_queue_stats_follow_the_messages(http: httpx.Client, queue: str) -> None:
    for i in range(3):
        publish(http, queue, i)
    publish(http, queue, "d", delay_s=60)
    [message] = receive(http, queue)
    http.post(
        f"/v1/queues/{queue}/messages/{message['id']}/ack", json={"receipt": message["receipt"]}
    )
    receive(http, queue)
    stats = http.get(f"/v1/queues/{queue}", params={"min_position": head(http)}).json()["stats"]
    assert stats["available"] == 1 and stats["delayed"] == 1 and stats["in_flight"] == 1
    assert stats["published_total"] == 4 and stats["acked_total"] == 1
    assert stats["oldest_available_age_s"] > 0


def test_a_long_poll_whose_client_left_leases_nothing(
    http: httpx.Client, queue: str, server: Any
) -> None:
    waiting_before = _waiting_polls(http)
    client = httpx.Client(base_url=server.url, timeout=0.5)
    poller = threading.Thread(target=_poll_and_give_up, args=(client, queue))
    poller.start()
    deadline = time.monotonic() + 10
    while _waiting_polls(http) <= waiting_before:  # the poll is waiting on the server
        assert time.monotonic() < deadline
    poller.join()  # its client gave up after 0.5 s and closed the connection
    client.close()
    while _waiting_polls(http) > waiting_before:  # the server noticed and stopped waiting
        assert time.monotonic() < deadline
    published = publish(http, queue, "for someone who is still here")
    [message] = receive(http, queue)
    assert message["id"] == published["id"] and message["receive_count"] == 1


def _poll_and_give_up(client: httpx.Client, queue: str) -> None:
    with contextlib.suppress(httpx.TimeoutException):
        client.post(f"/v1/queues/{queue}/receive", json={"wait_s": 20})


def test_broker_attributes_cannot_be_forged(http: httpx.Client, queue: str) -> None:
    url = f"/v1/queues/{queue}/messages"
    body = problem(http.post(url, json={"body": 1, "attributes": {"source_queue": "billing"}}), 422)
    assert body["errors"][0]["field"] == "body.attributes"
    entries = [{"body": 0}, {"body": 1, "attributes": {"source_message_id": "x"}}]
    body = problem(http.post(f"{url}/batch", json={"messages": entries}), 422)
    assert body["errors"][0]["field"] == "messages[1].attributes"


def test_a_trailing_newline_is_not_part_of_a_name(http: httpx.Client, queue: str) -> None:
    problem(http.post("/v1/queues", json={"name": f"{queue}\n"}), 422)
    problem(http.get(f"/v1/queues/{queue}%0A"), 404)
    problem(
        http.post(f"/v1/queues/{queue}/messages", json={"body": 1, "attributes": {"k\n": "v"}}), 422
    )


def test_a_receipt_is_in_the_receive_answer_only(http: httpx.Client, queue: str) -> None:
    """Anyone with read: may see events, history and feeds; a receipt would let them ack,
    nack or extend someone else's lease."""
    start = http.get("/v1/projections").json()["head"]
    http.post(f"/v1/queues/{queue}/messages/batch", json={"messages": [{"body": 1}, {"body": 2}]})
    first, second = http.post(f"/v1/queues/{queue}/receive", json={"max_messages": 2}).json()[
        "messages"
    ]
    http.post(
        f"/v1/queues/{queue}/messages/{first['id']}/extend",
        json={"receipt": first["receipt"], "visibility_timeout_s": 9},
    )
    acked = http.post(
        f"/v1/queues/{queue}/messages/{first['id']}/ack", json={"receipt": first["receipt"]}
    )
    nacked = http.post(
        f"/v1/queues/{queue}/messages/{second['id']}/nack", json={"receipt": second["receipt"]}
    )
    assert acked.status_code == nacked.status_code == 204
    end = int(nacked.headers["x-cairn-position"])
    seen = [
        http.get(f"/v1/queues/{queue}/messages/{m['id']}", params={"min_position": end}).text
        for m in (first, second)
    ]
    seen.append(http.get("/v1/events", params={"after": start}).text)
    seen.append(http.get(f"/v1/queues/{queue}/messages", params={"min_position": end}).text)
    with http.stream("GET", "/v1/events/stream", params={"after": start}) as feed:
        for frame in frames(feed):
            if frame.id is not None:
                seen.append(json.dumps(frame.data))
                if int(frame.id) >= end:
                    break
    text = "".join(seen)
    assert "message.leased" in text and "message.lease_extended" in text
    assert first["receipt"] not in text and second["receipt"] not in text


def test_a_message_can_be_found_by_its_id_alone(http: httpx.Client, queue: str) -> None:
    published = publish(http, queue, {"find": "me"})
    found = http.get(
        f"/v1/messages/{published['id']}", params={"min_position": published["position"]}
    )
    assert found.status_code == 200, found.text
    body = found.json()
    assert (body["id"], body["queue"], body["body"]) == (published["id"], queue, {"find": "me"})
    assert [h["type"] for h in body["history"]] == ["message.published"]
    assert int(found.headers["x-cairn-position"]) >= published["position"]
    problem(http.get(f"/v1/messages/{uuid.uuid4()}"), 404)
    http.delete(f"/v1/queues/{queue}")
    problem(http.get(f"/v1/messages/{published['id']}"), 404)  # its queue is gone


def test_the_size_limit_is_the_queues_and_the_setting_only_its_default(tmp_path: Path) -> None:
    """API.md v1.2: a queue's ``max_message_bytes`` is its whole limit through every door;
    ``CAIRN_MAX_MESSAGE_BYTES`` is only the default of queues created natively."""
    server = make_server(tmp_path, env={"CAIRN_MAX_MESSAGE_BYTES": "2048"}).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            small = http.post("/v1/queues", json={"name": "small"}).json()
            assert small["max_message_bytes"] == 2048
            big = http.post("/v1/queues", json={"name": "big", "max_message_bytes": 8192})
            assert big.json()["max_message_bytes"] == 8192
            body = "x" * 5000
            assert http.post("/v1/queues/big/messages", json={"body": body}).status_code == 201
            refused = problem(http.post("/v1/queues/small/messages", json={"body": body}), 413)
            assert refused["errors"][0]["field"] == "body.body"
            batch = {"messages": [{"body": 1}, {"body": "y" * 9000}]}
            refused = problem(http.post("/v1/queues/big/messages/batch", json=batch), 413)
            assert refused["errors"][0]["field"] == "messages[1].body"
    finally:
        server.stop()
