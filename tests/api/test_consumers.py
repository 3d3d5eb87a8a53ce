"""Many consumers at once, against one real server."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from tests.api.conftest import Server


async def test_eight_consumers_drain_500_messages_each_acked_exactly_once(
    server: Server, queue: str
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        for start in range(0, 500, 100):
            response = await client.post(
                f"/v1/queues/{queue}/messages/batch",
                json={"messages": [{"body": i} for i in range(start, start + 100)]},
            )
            assert response.status_code == 201
        deliveries: Counter[int] = Counter()
        acked: list[str] = []

        async def consume() -> None:
            while True:
                got = await client.post(
                    f"/v1/queues/{queue}/receive",
                    json={"max_messages": 10, "visibility_timeout_s": 60, "wait_s": 0.5},
                )
                messages = got.json()["messages"]
                if not messages:
                    return
                for message in messages:
                    deliveries[message["body"]] += 1
                    ack = await client.post(
                        f"/v1/queues/{queue}/messages/{message['id']}/ack",
                        json={"receipt": message["receipt"]},
                    )
                    assert ack.status_code == 204
                    acked.append(message["id"])

        await asyncio.gather(*(consume() for _ in range(8)))
        assert sorted(deliveries) == list(range(500))
        assert set(deliveries.values()) == {1}
        assert len(acked) == len(set(acked)) == 500
        head = (await client.get("/v1/projections")).json()["head"]
        stats = (await client.get(f"/v1/queues/{queue}", params={"min_position": head})).json()
        assert stats["stats"]["acked_total"] == 500
        assert stats["stats"]["available"] == stats["stats"]["in_flight"] == 0
