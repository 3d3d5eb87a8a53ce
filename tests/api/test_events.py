"""The event log over HTTP: pages, and SSE feeds that replay and then follow it."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from tests.api.conftest import Server, make_server, problem
from tests.api.feeds import Frame, events, frames


def log(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = http.get("/v1/events", params={"after": after, "limit": 1000, **params}).json()
        found += page["events"]
        if page["next_after"] == after:
            return found
        after = page["next_after"]


def publish_many(http: httpx.Client, queue: str, count: int) -> None:
    for start in range(0, count, 100):
        body = {"messages": [{"body": i} for i in range(start, min(count, start + 100))]}
        assert http.post(f"/v1/queues/{queue}/messages/batch", json=body).status_code == 201


def test_the_log_pages_with_filters(http: httpx.Client, queue: str) -> None:
    publish_many(http, queue, 3)
    [first, *_] = http.post(f"/v1/queues/{queue}/receive", json={"max_messages": 3}).json()[
        "messages"
    ]
    everything = log(http)
    assert [e["position"] for e in everything] == list(range(1, len(everything) + 1))
    mine = log(http, queue=queue)
    assert [e["type"] for e in mine] == ["queue.created"] + ["message.published"] * 3 + [
        "message.leased"
    ] * 3
    published = log(http, queue=queue, types="message.published")
    assert published[0]["message_id"] == first["id"]
    assert log(http, queue=queue, types="message.*") == mine[1:]
    assert log(http, queue=queue, types="queue.created,message.leased") == [mine[0], *mine[4:]]
    page = http.get("/v1/events", params={"after": mine[0]["position"] - 1, "limit": 2})
    assert [e["position"] for e in page.json()["events"]] == [
        mine[0]["position"],
        mine[0]["position"] + 1,
    ]
    assert page.json()["next_after"] == mine[0]["position"] + 1
    assert int(page.headers["x-cairn-position"]) >= everything[-1]["position"]
    event = mine[1]
    assert set(event) == {"position", "type", "at", "queue", "message_id", "data"}
    assert event["data"]["body"] == 0 and event["queue"] == queue
    problem(http.get("/v1/events", params={"types": "message.pub lished"}), 422)
    problem(http.get("/v1/events", params={"limit": 1001}), 422)


def test_a_feed_replays_from_zero_then_follows(
    http: httpx.Client, queue: str, server: Server
) -> None:
    publish_many(http, queue, 5)
    expected = log(http)
    with (
        httpx.Client(base_url=server.url, timeout=30) as client,
        connect_sse(client, "GET", "/v1/events/stream", params={"after": 0}) as source,
    ):
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        events = (e for e in source.iter_sse() if e.id)  # the retry-only block has no id
        replayed = [next(events) for _ in expected]
        assert [(int(e.id), e.event, e.json()) for e in replayed] == [
            (e["position"], e["type"], e) for e in expected
        ]
        published = http.post(f"/v1/queues/{queue}/messages", json={"body": "live"})
        answered = time.monotonic()
        live = next(events)
        assert time.monotonic() - answered < 1.0
        assert int(live.id) == published.json()["position"]
        assert live.json()["data"]["body"] == "live"


def test_the_first_frame_sets_the_reconnection_delay(server: Server) -> None:
    with (
        httpx.Client(base_url=server.url, timeout=30) as client,
        client.stream("GET", "/v1/events/stream") as response,
    ):
        first = next(frames(response))
        assert first.retry is not None and 0 < first.retry <= 5000


def test_a_resumed_feed_misses_nothing_and_repeats_nothing(
    server: Server, http: httpx.Client
) -> None:
    queue = f"resume-{uuid.uuid4().hex[:8]}"
    http.post("/v1/queues", json={"name": queue})
    stop = threading.Event()

    def keep_publishing() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as producer:
            i = 0
            while not stop.is_set():
                producer.post(f"/v1/queues/{queue}/messages", json={"body": i})
                i += 1

    producer = threading.Thread(target=keep_publishing)
    producer.start()
    seen: list[int] = []
    try:
        last_id = 0
        for _ in range(4):  # connect, read a while, drop the connection, resume
            with (
                httpx.Client(base_url=server.url, timeout=30) as client,
                connect_sse(
                    client,
                    "GET",
                    f"/v1/queues/{queue}/events/stream",
                    headers={"Last-Event-ID": str(last_id)},
                ) as source,
            ):
                for event in source.iter_sse():
                    if not event.id:  # the opening block: retry only
                        continue
                    seen.append(int(event.id))
                    if len(seen) % 25 == 0:
                        break
            last_id = seen[-1]
    finally:
        stop.set()
        producer.join()
    expected = [e["position"] for e in log(http, queue=queue)]
    assert seen == expected[: len(seen)]
    assert len(seen) == 100


def test_resume_position_precedence(server: Server, http: httpx.Client, queue: str) -> None:
    publish_many(http, queue, 4)
    positions = [e["position"] for e in log(http, queue=queue)]

    def first_id(**kwargs: Any) -> int | None:
        with (
            httpx.Client(base_url=server.url, timeout=30) as client,
            client.stream("GET", f"/v1/queues/{queue}/events/stream", **kwargs) as response,
        ):
            return events(response, 1)[0].id

    assert first_id(params={"after": positions[0]}) == positions[1]
    assert first_id(params={"after": positions[0], "last_event_id": positions[1]}) == positions[2]
    assert (
        first_id(
            params={"after": positions[0], "last_event_id": positions[1]},
            headers={"Last-Event-ID": str(positions[2])},
        )
        == positions[3]
    )


def test_without_a_position_a_feed_starts_from_now(
    server: Server, http: httpx.Client, queue: str
) -> None:
    publish_many(http, queue, 2)
    with (
        httpx.Client(base_url=server.url, timeout=30) as client,
        client.stream("GET", f"/v1/queues/{queue}/events/stream") as response,
    ):
        stream = frames(response)
        assert next(stream).retry is not None  # connected: anything from here on is new
        published = http.post(f"/v1/queues/{queue}/messages", json={"body": "new"}).json()
        frame = next(f for f in stream if f.id is not None)
        assert frame.id == published["position"]


def test_feeds_filter_by_queue_and_type(server: Server, http: httpx.Client, queue: str) -> None:
    other = f"other-{uuid.uuid4().hex[:8]}"
    http.post("/v1/queues", json={"name": other})
    start = http.get("/v1/projections").json()["head"]
    for name in (other, queue, other, queue):
        http.post(f"/v1/queues/{name}/messages", json={"body": name})
    http.post(f"/v1/queues/{queue}/receive", json={"max_messages": 2})
    with httpx.Client(base_url=server.url, timeout=30) as client:
        with client.stream(
            "GET",
            "/v1/events/stream",
            params={"after": start, "queue": queue, "types": "message.leased"},
        ) as response:
            leased = events(response, 2)
        assert [f.event for f in leased] == ["message.leased"] * 2
        assert {f.data["queue"] for f in leased} == {queue}
        with client.stream(
            "GET", f"/v1/queues/{queue}/events/stream", params={"after": start}
        ) as response:
            mine = events(response, 4)
        assert [f.event for f in mine] == ["message.published"] * 2 + ["message.leased"] * 2
    problem(http.get(f"/v1/queues/{uuid.uuid4().hex}/events/stream"), 404)
    problem(http.get("/v1/events/stream", headers={"Last-Event-ID": "x"}), 422)


def test_heartbeats_keep_an_idle_feed_alive(tmp_path: Path) -> None:
    server = make_server(tmp_path, env={"CAIRN_SSE_HEARTBEAT_S": "0.2"}).start()
    try:
        with (
            httpx.Client(base_url=server.url, timeout=30) as client,
            client.stream("GET", "/v1/events/stream") as response,
        ):
            stream = frames(response)
            beats: list[Frame] = []
            started = time.monotonic()
            while len(beats) < 3:
                frame = next(stream)
                if "heartbeat" in frame.comments:
                    beats.append(frame)
            assert time.monotonic() - started < 3
    finally:
        server.stop()


def test_a_feed_that_falls_behind_catches_up_from_the_store(tmp_path: Path) -> None:
    server = make_server(tmp_path, env={"CAIRN_SSE_BUFFER_EVENTS": "10"}).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            http.post("/v1/queues", json={"name": "burst"})
            with http.stream("GET", "/v1/events/stream", params={"after": 0}) as response:
                stream = frames(response)
                next(stream)
                publish_many(http, "burst", 300)  # 100 per commit: more than the buffer holds
                got = [f.id for f in (next(f for f in stream if f.id) for _ in range(301))]
            assert got == list(range(1, 302))
            metrics = http.get("/metrics").text
            overflows = next(
                line
                for line in metrics.splitlines()
                if line.startswith("cairn_feed_overflows_total")
            )
            assert float(overflows.split()[1]) >= 1
    finally:
        server.stop()


async def test_two_hundred_subscribers_each_receive_every_event(server: Server) -> None:
    queue = f"fanout-{uuid.uuid4().hex[:8]}"
    limits = httpx.Limits(max_connections=250, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
        assert (await client.post("/v1/queues", json={"name": queue})).status_code == 201
        connected = 0
        all_connected = asyncio.Event()

        async def subscribe() -> list[int]:
            nonlocal connected
            async with client.stream("GET", f"/v1/queues/{queue}/events/stream") as response:
                lines = response.aiter_lines()
                async for line in lines:  # the retry frame: subscribed from here on
                    if line.startswith("retry:"):
                        break
                connected += 1
                if connected == 200:
                    all_connected.set()
                ids: list[int] = []
                async for line in lines:
                    if line.startswith("id: "):
                        ids.append(int(line[4:]))
                        if len(ids) == 50:
                            return ids
            return ids

        subscribers = [asyncio.create_task(subscribe()) for _ in range(200)]
        await asyncio.wait_for(all_connected.wait(), 30)
        positions: list[int] = []
        for start in range(0, 50, 10):
            response = await client.post(
                f"/v1/queues/{queue}/messages/batch",
                json={"messages": [{"body": i} for i in range(start, start + 10)]},
            )
            positions += [r["position"] for r in response.json()["results"]]
        results = await asyncio.wait_for(asyncio.gather(*subscribers), 60)
        assert all(ids == positions for ids in results)


@pytest.mark.parametrize("params", [{"after": "-1"}, {"types": "*"}, {"queue": "bad name"}])
def test_bad_feed_parameters_are_422(http: httpx.Client, params: dict[str, str]) -> None:
    problem(http.get("/v1/events/stream", params=params), 422)
