"""Tracing (API.md v1.1, "Tracing") through real HTTP: a command's W3C trace context is stored
on every event it appends and comes back on received messages; an invalid one is ignored."""

from __future__ import annotations

import httpx

from tests.api.v11 import events, head, new_queue, receive

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
STATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"


def test_a_publish_trace_is_on_its_event_and_on_the_received_message(
    http: httpx.Client, queue: str
) -> None:
    published = http.post(
        f"/v1/queues/{queue}/messages",
        json={"body": "traced"},
        headers={"traceparent": PARENT, "tracestate": STATE},
    )
    assert published.status_code == 201, published.text
    [event] = [e for e in events(http, queue) if e["type"] == "message.published"]
    assert event["trace"] == {"traceparent": PARENT, "tracestate": STATE}
    assert "trace" not in event["data"]
    [got] = receive(http, queue)
    assert got["trace"] == {"traceparent": PARENT, "tracestate": STATE}

    # The ack is a command of its own: its event carries the consumer's trace, not the
    # producer's.
    consumer = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    position = head(http)
    acked = http.post(
        f"/v1/queues/{queue}/messages/{got['id']}/ack",
        json={"receipt": got["receipt"]},
        headers={"traceparent": consumer},
    )
    assert acked.status_code == 204, acked.text
    [ack_event] = events(http, queue, after=position)
    assert ack_event["type"] == "message.acked"
    assert ack_event["trace"] == {"traceparent": consumer}


def test_every_event_of_a_traced_batch_carries_the_trace(http: httpx.Client) -> None:
    queue = new_queue(http)
    response = http.post(
        f"/v1/queues/{queue}/messages/batch",
        json={"messages": [{"body": i} for i in range(3)]},
        headers={"traceparent": PARENT},
    )
    assert response.status_code == 201, response.text
    logged = [e for e in events(http, queue) if e["type"] == "message.published"]
    assert [e["trace"] for e in logged] == [{"traceparent": PARENT}] * 3
    assert [m["trace"] for m in receive(http, queue, max_messages=3)] == [
        {"traceparent": PARENT}
    ] * 3


def test_an_invalid_traceparent_is_ignored_not_refused(http: httpx.Client, queue: str) -> None:
    for bad in (
        "not-a-trace",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
    ):
        response = http.post(
            f"/v1/queues/{queue}/messages",
            json={"body": bad},
            headers={"traceparent": bad, "tracestate": STATE},
        )
        assert response.status_code == 201, response.text
    logged = [e for e in events(http, queue) if e["type"] == "message.published"]
    assert len(logged) == 4 and all("trace" not in e for e in logged)
    assert [m["trace"] for m in receive(http, queue, max_messages=10)] == [None] * 4


def test_an_untraced_command_stores_no_trace(http: httpx.Client, queue: str) -> None:
    assert http.post(f"/v1/queues/{queue}/messages", json={"body": 1}).status_code == 201
    [event] = [e for e in events(http, queue) if e["type"] == "message.published"]
    assert "trace" not in event
    [got] = receive(http, queue)
    assert got["trace"] is None
