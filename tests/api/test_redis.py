"""Redis Streams: the log fanned out, and feeds across processes. Real Redis only: the shared
server at 127.0.0.1:6379 (a database index of these tests' own), or one a test starts and kills.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.api.conftest import Server, free_port, make_server
from tests.api.feeds import frames

SHARED = "redis://127.0.0.1:6379/{db}"


def _require(url: str) -> redis.Redis:
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:  # a service the tests need: fail, never skip
        pytest.fail(f"Redis at {url} is unreachable ({error}); start it before the tests")
    return client


@pytest.fixture
def shared_redis() -> Iterator[tuple[str, redis.Redis]]:
    url = SHARED.format(db=11)
    client = _require(url)
    client.flushdb()
    yield url, client
    client.flushdb()
    client.close()


class RedisProcess:
    """A redis-server of our own, so that a test can kill it and bring it back."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "our redis-server did not start"
                time.sleep(0.02)
        client.close()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.process = None


def log(http: httpx.Client) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = 0
    while page := http.get("/v1/events", params={"after": after, "limit": 1000}).json()["events"]:
        found += page
        after = page[-1]["position"]
    return found


def stream_entries(client: redis.Redis, key: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (entry_id.decode(), json.loads(fields[b"event"])) for entry_id, fields in client.xrange(key)
    ]


def wait_for(condition: Any, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_every_event_goes_to_the_global_and_the_queue_stream(
    tmp_path: Path, shared_redis: tuple[str, redis.Redis]
) -> None:
    url, client = shared_redis
    server = make_server(tmp_path, "--redis-url", url).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for name in ("a", "b"):
                http.post("/v1/queues", json={"name": name})
                http.post(
                    f"/v1/queues/{name}/messages/batch",
                    json={"messages": [{"body": i} for i in range(3)]},
                )
            got = http.post("/v1/queues/a/receive", json={"max_messages": 2}).json()["messages"]
            first, second = got
            for verb, message in (("ack", first), ("nack", second)):
                answer = http.post(
                    f"/v1/queues/a/messages/{message['id']}/{verb}",
                    json={"receipt": message["receipt"]},
                )
                assert answer.status_code == 204
            expected = log(http)
            wait_for(lambda: client.xlen("cairn:events") == len(expected))
            entries = b"".join(e[b"event"] for _, e in client.xrange("cairn:events"))
            assert first["receipt"].encode() not in entries  # receipts are the consumer's
            assert second["receipt"].encode() not in entries
            assert stream_entries(client, "cairn:events") == [
                (f"{e['position']}-0", e) for e in expected
            ]
            assert stream_entries(client, "cairn:queue:a") == [
                (f"{e['position']}-0", e) for e in expected if e["queue"] == "a"
            ]
            ready = http.get("/readyz").json()
            assert ready["checks"]["redis"] == "ok"
            wait_for(
                lambda: (
                    {
                        p["name"]: p["lag"]
                        for p in http.get("/v1/projections").json()["projections"]
                    }["redis"]
                    == 0
                )
            )
    finally:
        server.stop()


def test_streams_are_trimmed_to_about_their_configured_length(
    tmp_path: Path, shared_redis: tuple[str, redis.Redis]
) -> None:
    url, client = shared_redis
    server = make_server(tmp_path, "--redis-url", url, "--redis-stream-maxlen", "50").start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            http.post("/v1/queues", json={"name": "t"})
            for _ in range(10):
                http.post(
                    "/v1/queues/t/messages/batch",
                    json={"messages": [{"body": i} for i in range(100)]},
                )
            wait_for(lambda: client.xrevrange("cairn:events", count=1)[0][0] == b"1001-0")
        assert client.xlen("cairn:events") < 300  # approximate: whole nodes of ~100 go
    finally:
        server.stop()


def test_a_redis_outage_loses_nothing(tmp_path: Path) -> None:
    ours = RedisProcess(tmp_path)
    ours.start()
    server = make_server(tmp_path, "--redis-url", ours.url).start()
    seen: list[int] = []
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            http.post("/v1/queues", json={"name": "o"})
            feed_done = threading.Event()

            def follow() -> None:
                with (
                    httpx.Client(base_url=server.url, timeout=60) as client,
                    client.stream("GET", "/v1/events/stream", params={"after": 0}) as response,
                ):
                    for frame in frames(response):
                        if frame.id is not None:
                            seen.append(frame.id)
                            if frame.id == 61:
                                feed_done.set()
                                return

            follower = threading.Thread(target=follow)
            follower.start()
            for i in range(20):
                assert http.post("/v1/queues/o/messages", json={"body": i}).status_code == 201
            ours.kill()
            for i in range(20, 40):  # Redis is down: commands still succeed
                assert http.post("/v1/queues/o/messages", json={"body": i}).status_code == 201
            not_ready = http.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json()["checks"]["redis"] == "unavailable"
            ours.start()  # back, and empty: it kept nothing on disk
            for i in range(40, 60):
                assert http.post("/v1/queues/o/messages", json={"body": i}).status_code == 201
            assert feed_done.wait(30)
            follower.join()
            expected = log(http)
            client = redis.Redis.from_url(ours.url)
            wait_for(lambda: client.xlen("cairn:events") == len(expected))
            assert stream_entries(client, "cairn:events") == [
                (f"{e['position']}-0", e) for e in expected
            ]
            client.close()
            assert http.get("/readyz").status_code == 200
        assert seen == list(range(1, 62))
    finally:
        server.stop()
        with contextlib.suppress(AssertionError):
            ours.kill()


def _follow_until(server: Server, last: list[int], seen: list[int], worker: list[str]) -> None:
    """Record every position the feed delivers until it delivers ``last[0]`` (set later)."""
    with (
        httpx.Client(base_url=server.url, timeout=60) as client,
        client.stream("GET", "/v1/events/stream", params={"after": 0}) as response,
    ):
        worker.append(response.headers["x-cairn-worker"])
        for frame in frames(response):
            if frame.id is not None:
                seen.append(frame.id)
                if last and frame.id >= last[0]:
                    return


@pytest.mark.parametrize("with_redis", [True, False], ids=["redis", "store-only"])
def test_two_nodes_on_one_database_see_each_others_commands(
    tmp_path: Path, shared_redis: tuple[str, redis.Redis], with_redis: bool
) -> None:
    url, _ = shared_redis
    extra = ["--redis-url", url] if with_redis else []
    first = make_server(tmp_path, *extra).start()
    second = make_server(tmp_path, *extra)
    second.log = tmp_path / "second.log"
    second.args[second.args.index("--log-file") + 1] = str(second.log)
    second.start()
    try:
        seen: list[int] = []
        follower = threading.Thread(target=_follow_until, args=(first, [21], seen, []))
        follower.start()
        with httpx.Client(base_url=second.url, timeout=30) as http:
            http.post("/v1/queues", json={"name": "shared"})
            for i in range(20):
                response = http.post("/v1/queues/shared/messages", json={"body": i})
                answered = time.monotonic()
                position = response.json()["position"]
                wait_for(lambda position=position: position in seen, within=1.0)
                assert time.monotonic() - answered < 1.0
        follower.join(30)
        assert not follower.is_alive()
        assert seen == list(range(1, 22))
    finally:
        second.stop()
        first.stop()


def test_workers_share_one_feed(tmp_path: Path, shared_redis: tuple[str, redis.Redis]) -> None:
    url, _ = shared_redis
    server = make_server(tmp_path, "--workers", "2", "--redis-url", url).start()
    try:
        followers: list[tuple[threading.Thread, list[int], list[str]]] = []
        last: list[int] = []
        with httpx.Client(base_url=server.url, timeout=30) as http:
            http.post("/v1/queues", json={"name": "w"})
        # Feeds until both workers serve one (the kernel picks the worker per connection).
        while len({w for _, _, ws in followers for w in ws}) < 2:
            seen: list[int] = []
            worker: list[str] = []
            thread = threading.Thread(target=_follow_until, args=(server, last, seen, worker))
            thread.start()
            wait_for(lambda worker=worker: bool(worker))
            followers.append((thread, seen, worker))
            assert len(followers) < 50, "every feed landed on the same worker"
        # Publishes, each on a new connection, until both workers have handled some.
        published_by: set[str] = set()
        position = 0
        for i in range(500):
            with httpx.Client(base_url=server.url, timeout=30) as http:
                response = http.post("/v1/queues/w/messages", json={"body": i})
                published_by.add(response.headers["x-cairn-worker"])
                position = response.json()["position"]
            if len(published_by) == 2 and i >= 20:
                break
        assert len(published_by) == 2
        # Name the end first, then make it: a feed may already have everything up to now.
        last.append(position + 1)
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert (
                http.post("/v1/queues/w/messages", json={"body": "end"}).json()["position"]
                == position + 1
            )
        for thread, _, _ in followers:
            thread.join(30)
            assert not thread.is_alive()
        for _, seen, _ in followers:
            assert seen == list(range(1, position + 2))
    finally:
        server.stop()
