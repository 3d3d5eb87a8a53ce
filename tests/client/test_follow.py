"""``follow`` resumes the feed with ``Last-Event-ID`` after a server restart or a dropped
connection: every event once, in order, no gap, no duplicate."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from cairn_client import AsyncClient, Client, ConnectionFailed, Event, Invalid

from tests.api.conftest import Server, free_port, make_server
from tests.client.conftest import new_queue
from tests.client.proxy import Proxy


class Follower:
    """A thread iterating ``follow(...)`` until it has ``count`` events."""

    def __init__(self, feed: Generator[Event, None, None], count: int) -> None:
        self.events: list[Event] = []
        self.error: BaseException | None = None
        self._feed, self._count = feed, count
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._feed:
                self.events.append(event)
                if len(self.events) == self._count:
                    return
        except BaseException as error:
            self.error = error
        finally:
            self._feed.close()

    def wait_for(self, count: int, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while len(self.events) < count:
            assert self.error is None, repr(self.error)
            assert time.monotonic() < deadline, f"{len(self.events)} of {count} events"
            time.sleep(0.02)


def wait_until(condition: Callable[[], bool], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[Server]:
    server = make_server(tmp_path).start()
    yield server
    server.stop()


def test_a_follower_resumes_across_a_server_restart_with_no_gap_and_no_duplicate(
    restartable: Server,
) -> None:
    with Client(restartable.url, retries=10) as client:
        queue = new_queue(client)
        published = [p.id for p in client.publish_batch(queue, [{"body": n} for n in range(20)])]
        follower = Follower(client.follow(after=0, queue=queue, types=["message.published"]), 999)
        from_now = Follower(client.follow(queue=queue), 999)
        # The "from now" follower is connected once it sees a marker published after it.
        wait_until(lambda: bool(client.publish(queue, "marker") and from_now.events), 30)
        follower.wait_for(21)

        restartable.stop()
        restartable.start()
        published += [p.id for p in client.publish_batch(queue, [{"body": n} for n in range(19)])]
        log = client.events(after=0, limit=1000, queue=queue, types=["message.published"]).events
        follower.wait_for(len(log))
        ids = [e.message_id for e in follower.events]
        assert ids == [e.message_id for e in log]  # each once, in order, across the restart
        assert [i for i in ids if i in published] == published
        assert len(follower.events) == len(log)

        # The one that started "from now" resumed from where now was: the same events, from
        # its first one on, with nothing missed across the restart.
        first = from_now.events[0].position
        expected = client.events(after=first - 1, limit=1000, queue=queue).events
        from_now.wait_for(len(expected))
        assert [e.position for e in from_now.events] == [e.position for e in expected]


def test_a_follower_resumes_after_its_connection_drops(server: Server) -> None:
    with Client(server.url) as client, Proxy(int(server.url.rsplit(":", 1)[1])) as proxy:
        queue = new_queue(client)
        with Client(proxy.url) as through:
            follower = Follower(through.follow(after=0, queue=queue), 21)
            first = client.publish_batch(queue, [{"body": n} for n in range(10)])
            follower.wait_for(11)  # queue.created and ten publishes
            proxy.sever()
            second = client.publish_batch(queue, [{"body": n} for n in range(10)])
            follower.wait_for(21)
        positions = [e.position for e in follower.events]
        assert positions[1:] == [p.position for p in [*first, *second]]
        streams = [r for r in proxy.requests if r.startswith(b"GET /v1/events/stream")]
        assert len(streams) >= 2  # it reconnected


async def test_the_async_follower_resumes_after_its_connection_drops(server: Server) -> None:
    with Client(server.url) as client, Proxy(int(server.url.rsplit(":", 1)[1])) as proxy:
        queue = new_queue(client)
        async with AsyncClient(proxy.url) as through:
            feed = through.follow(after=0, queue=queue, types=["message.published"])
            first = client.publish_batch(queue, [{"body": n} for n in range(5)])
            seen = [await anext(feed) for _ in range(5)]
            proxy.sever()
            second = client.publish_batch(queue, [{"body": n} for n in range(5)])
            seen += [await anext(feed) for _ in range(5)]
            await feed.aclose()
        assert [e.message_id for e in seen] == [p.id for p in [*first, *second]]


def test_a_follower_that_never_connected_gives_up_after_its_retries() -> None:
    with Client(f"http://127.0.0.1:{free_port()}", retries=1) as client:
        started = time.monotonic()
        with pytest.raises(ConnectionFailed):
            next(client.follow(after=0))
        assert time.monotonic() - started < 10


def test_a_refused_feed_raises_without_retrying(sqlite_server: Server) -> None:
    with Client(sqlite_server.url) as client, pytest.raises(Invalid) as refused:
        next(client.follow(types=["NOT A TYPE"]))
    assert refused.value.problem.errors[0].field == "query.types"
