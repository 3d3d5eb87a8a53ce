"""kill -9 in the middle of a burst of publishes loses nothing that was answered."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import httpx

from tests.api.conftest import make_server


async def test_every_answered_publish_survives_a_kill_9(tmp_path: Path) -> None:
    server = make_server(tmp_path).start()
    answered: list[tuple[str, int]] = []
    well_into_the_burst = asyncio.Event()
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        assert (await client.post("/v1/queues", json={"name": "burst"})).status_code == 201

        async def producer(n: int) -> None:
            for i in range(10_000):
                try:
                    response = await client.post(
                        "/v1/queues/burst/messages", json={"body": {"p": n, "i": i}}
                    )
                except httpx.TransportError:
                    return  # the server died under us: this publish may or may not be stored
                assert response.status_code == 201
                body = response.json()
                answered.append((body["id"], body["position"]))
                if len(answered) >= 300:
                    well_into_the_burst.set()

        producers = [asyncio.create_task(producer(n)) for n in range(16)]
        await well_into_the_burst.wait()
        server.kill()
        await asyncio.gather(*producers)

    with contextlib.closing(sqlite3.connect(server.database)) as conn:
        positions = [
            row[0] for row in conn.execute("SELECT position FROM events ORDER BY position")
        ]
        stored = published_positions(conn)
    assert positions == list(range(1, len(positions) + 1))
    for message_id, position in answered:
        assert stored.get(message_id) == [position], message_id

    restarted = make_server(tmp_path).start()
    try:
        with httpx.Client(base_url=restarted.url, timeout=10) as client:
            head = client.get("/v1/projections").json()["head"]
            assert head == len(positions)
            assert (
                client.post("/v1/queues/burst/messages", json={"body": "after"}).json()["position"]
                == head + 1
            )
            stats = client.get("/v1/queues/burst", params={"min_position": head + 1}).json()
            assert stats["stats"]["published_total"] == len(positions)  # n - 1 before, 1 after
    finally:
        restarted.stop()


def published_positions(conn: sqlite3.Connection) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for message_id, position in conn.execute(
        "SELECT message_id, position FROM events WHERE type = 'message.published'"
    ):
        found.setdefault(message_id, []).append(position)
    return found
