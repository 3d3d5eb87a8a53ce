"""Among many idle queues, the sweeper still finds what is due (it looks only at the queues
whose due time has come): a lease that ends and a message that outlives retention are
recorded without a receive, on SQLite and PostgreSQL.

Retention is at least 60 s, too long to wait for in a test: the store is given its history
before the server starts (written by the broker's own writer code, two minutes in the past),
2,000 idle queues and a message published then into a queue that keeps messages 60 s."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from broker.commands import AnyCommand, CreateQueue, PublishMessages, QueueSettings
from broker.decide import Context
from broker.ports import EventStore
from broker.store.postgres import PostgresEventStore
from broker.store.sqlite import SqliteEventStore
from broker.writer import apply_batch
from tests.api.conftest import Server, make_server
from tests.helpers import Counter, fresh_database, message
from tests.postgres import drop
from tests.postgres import fresh_database as fresh_postgres

IDLE = 2000


async def _history(store: EventStore) -> None:
    """Two minutes ago: ``IDLE`` queues, and one message in a queue that keeps them 60 s."""
    ctx = Context(datetime.now(UTC) - timedelta(minutes=2), Counter("old"), Counter("r"))
    commands: list[AnyCommand] = [
        CreateQueue(queue=f"idle-{i:05d}", settings=QueueSettings()) for i in range(IDLE)
    ]
    commands += [
        CreateQueue(queue="short", settings=QueueSettings(retention_s=60)),
        PublishMessages(queue="short", messages=(message("old"),)),
    ]
    await store.open()
    try:
        await store.transact(lambda tx: apply_batch(tx, commands, ctx))
    finally:
        await store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    url = fresh_postgres() if request.param == "postgres" else None
    store: EventStore = (
        PostgresEventStore(url) if url else SqliteEventStore(str(fresh_database(tmp_path)))
    )
    asyncio.run(_history(store))
    running = make_server(tmp_path, database_url=url).start()
    yield running
    running.stop()
    if url is not None:
        drop(url)


def _recorded(server: Server, types: str, count: int, within: float) -> list[dict[str, object]]:
    """The first ``count`` events of ``types``, as the SSE feed delivers them."""
    found: list[dict[str, object]] = []
    deadline = time.monotonic() + within
    try:
        with (
            httpx.Client(base_url=server.url, timeout=within) as client,
            client.stream("GET", f"/v1/events/stream?after=0&types={types}") as feed,
        ):
            for line in feed.iter_lines():
                if line.startswith("data:"):
                    found.append(json.loads(line[5:]))
                    if len(found) == count:
                        return found
                assert time.monotonic() < deadline
    except (httpx.ReadTimeout, AssertionError):
        pass
    pytest.fail(f"{types}: {found} recorded within {within} s, {count} expected")


def test_expiries_are_recorded_among_many_idle_queues(server: Server) -> None:
    http = server.client()
    assert http.post("/v1/queues", json={"name": "leases"}).status_code == 201
    published = http.post("/v1/queues/leases/messages", json={"body": "x"}).json()
    got = http.post(
        "/v1/queues/leases/receive", json={"max_messages": 1, "visibility_timeout_s": 1}
    ).json()["messages"]
    assert [m["id"] for m in got] == [published["id"]]
    leased_at = time.monotonic()

    expired = _recorded(server, "message.expired", 1, within=10)
    assert [(e["queue"], e["type"]) for e in expired] == [("short", "message.expired")]
    ended = _recorded(server, "message.lease_expired", 1, within=10)
    assert [(e["queue"], e["message_id"]) for e in ended] == [("leases", published["id"])]
    # A sweep every 0.5 s: recorded soon after the lease's second, not at some later visit.
    assert time.monotonic() - leased_at < 5
