"""Small helpers shared by the end-to-end tests of the v1.1 additions (idempotency keys,
priorities and FIFO groups, history, tracing): plain HTTP calls against a real server."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx


def new_queue(http: httpx.Client, prefix: str = "q", **settings: Any) -> str:
    """Create a queue with a fresh name (and ``settings``); return its name."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    response = http.post("/v1/queues", json={"name": name, **settings})
    assert response.status_code == 201, response.text
    return name


def publish(http: httpx.Client, queue: str, body: Any = "x", **fields: Any) -> dict[str, Any]:
    response = http.post(f"/v1/queues/{queue}/messages", json={"body": body, **fields})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def publish_batch(http: httpx.Client, queue: str, entries: list[dict[str, Any]]) -> list[str]:
    """Publish ``entries`` in one batch; return the new message ids, in order."""
    response = http.post(f"/v1/queues/{queue}/messages/batch", json={"messages": entries})
    assert response.status_code == 201, response.text
    return [r["id"] for r in response.json()["results"]]


def receive(http: httpx.Client, queue: str, **fields: Any) -> list[dict[str, Any]]:
    response = http.post(f"/v1/queues/{queue}/receive", json=fields)
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


def receive_within(
    http: httpx.Client, queue: str, within_s: float = 10.0, **fields: Any
) -> list[dict[str, Any]]:
    """Long-poll until a receive answers something, or fail once ``within_s`` has passed."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        got = receive(http, queue, wait_s=2, **fields)
        if got:
            return got
    raise AssertionError(f"nothing became receivable in {queue!r} within {within_s} s")


def ack(http: httpx.Client, queue: str, message: dict[str, Any]) -> None:
    url = f"/v1/queues/{queue}/messages/{message['id']}/ack"
    response = http.post(url, json={"receipt": message["receipt"]})
    assert response.status_code == 204, response.text


def nack(http: httpx.Client, queue: str, message: dict[str, Any], **fields: Any) -> None:
    url = f"/v1/queues/{queue}/messages/{message['id']}/nack"
    response = http.post(url, json={"receipt": message["receipt"], **fields})
    assert response.status_code == 204, response.text


def head(http: httpx.Client) -> int:
    value: int = http.get("/v1/projections").json()["head"]
    return value


def events(http: httpx.Client, queue: str | None = None, after: int = 0) -> list[dict[str, Any]]:
    """Every event of the log (of ``queue``, when given) after ``after``, read from the log."""
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 500}
    if queue is not None:
        params["queue"] = queue
    while True:
        response = http.get("/v1/events", params={**params, "after": after})
        assert response.status_code == 200, response.text
        page = response.json()
        found += page["events"]
        if not page["events"]:
            return found
        after = page["next_after"]


def stats(http: httpx.Client, queue: str) -> dict[str, Any]:
    """The queue's stats once the read model has caught up with everything logged so far."""
    response = http.get(f"/v1/queues/{queue}", params={"min_position": head(http)})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["stats"]
    return result


def message(http: httpx.Client, queue: str, message_id: str) -> dict[str, Any]:
    """The message resource, read once the read model has caught up with the log."""
    url = f"/v1/queues/{queue}/messages/{message_id}"
    response = http.get(url, params={"min_position": head(http)})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def listing(http: httpx.Client, queue: str, **params: Any) -> list[dict[str, Any]]:
    """Every list item of the queue's messages (all pages), caught up with the log."""
    items: list[dict[str, Any]] = []
    query: dict[str, Any] = {"min_position": head(http), "limit": 100, **params}
    while True:
        response = http.get(f"/v1/queues/{queue}/messages", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["messages"]
        if page["next"] is None:
            return items
        query["after"] = page["next"]


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def between(earlier: str, later: str) -> str:
    """An RFC 3339 time strictly between two (distinct) RFC 3339 times."""
    first, second = parse_time(earlier), parse_time(later)
    assert first < second, (earlier, later)
    return rfc3339(first + (second - first) / 2)
