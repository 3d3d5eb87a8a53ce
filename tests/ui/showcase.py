"""A small, believable broker to photograph: a shop's queues with traffic, nacks with reasons,
a dead-lettered message and a message with a long history. ``seed`` takes a second or two;
``traffic`` keeps messages flowing for a while, so the charts have more than one bucket
(``CAIRN_UI_TRAFFIC_S``, for the screenshots in the README)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

REASONS = ("timeout calling payments", "card declined", "address not found")


@dataclass(frozen=True)
class Shop:
    orders: str
    dead_letters: str
    story: str
    """The id of an orders message with a long history (leased, nacked, leased again)."""


def _publish(http: httpx.Client, queue: str, bodies: list[dict[str, Any]], **extra: Any) -> None:
    for start in range(0, len(bodies), 100):
        entries = [{"body": body, **extra} for body in bodies[start : start + 100]]
        answer = http.post(f"/v1/queues/{queue}/messages/batch", json={"messages": entries})
        assert answer.status_code == 201, answer.text


def _orders(rng: random.Random, count: int) -> list[dict[str, Any]]:
    return [
        {
            "order_id": f"ord-{rng.randrange(10_000, 99_999)}",
            "customer": rng.choice(["ada", "grace", "edsger", "barbara", "ken"]),
            "total": round(rng.uniform(5, 400), 2),
            "lines": [{"sku": f"SKU-{rng.randrange(100, 999)}", "qty": rng.randrange(1, 4)}],
        }
        for _ in range(count)
    ]


def _work(
    http: httpx.Client, queue: str, rng: random.Random, count: int, nack_share: float
) -> None:
    """Receive up to ``count`` messages; ack most, nack some with a reason, keep a few."""
    answer = http.post(f"/v1/queues/{queue}/receive", json={"max_messages": min(count, 100)})
    assert answer.status_code == 200, answer.text
    for message in answer.json()["messages"]:
        path = f"/v1/queues/{queue}/messages/{message['id']}"
        roll = rng.random()
        if roll < nack_share:
            reason = rng.choices(REASONS, weights=(6, 3, 1))[0]
            http.post(f"{path}/nack", json={"receipt": message["receipt"], "reason": reason})
        elif roll < 0.93:
            http.post(f"{path}/ack", json={"receipt": message["receipt"]})


def seed(http: httpx.Client) -> Shop:
    rng = random.Random(7)
    for name, settings in [
        ("orders-dlq", {}),
        ("orders", {"max_receive_count": 2, "dead_letter_queue": "orders-dlq"}),
        ("payments", {"visibility_timeout_s": 60}),
        ("emails", {"delay_s": 0, "retention_s": 86400}),
        ("webhooks", {"visibility_timeout_s": 10}),
    ]:
        answer = http.post("/v1/queues", json={"name": name, **settings})
        assert answer.status_code == 201, answer.text
    _publish(http, "orders", _orders(rng, 60), attributes={"source": "checkout"})
    _publish(http, "payments", [{"payment": n, "amount": n * 3} for n in range(40)])
    _publish(http, "emails", [{"to": f"user{n}@example.com"} for n in range(12)], delay_s=600)
    _publish(http, "emails", [{"to": f"user{n}@example.com"} for n in range(12, 20)])
    _publish(http, "webhooks", [{"event": "order.paid", "n": n} for n in range(15)])

    story = http.post(
        "/v1/queues/orders/messages",
        json={
            "body": {"order_id": "ord-31337", "customer": "ada", "total": 129.9},
            "attributes": {"source": "checkout", "region": "eu"},
            "priority": 7,
        },
    ).json()["id"]
    # The story: received, nacked with a reason, received again and still being worked on.
    _follow_story(http, story)
    _work(http, "orders", rng, 45, nack_share=0.2)
    _work(http, "payments", rng, 30, nack_share=0.05)
    _work(http, "webhooks", rng, 10, nack_share=0.4)
    # A dead letter: an order nacked until its second delivery moves it to orders-dlq.
    _work(http, "orders", rng, 100, nack_share=0.5)
    _work(http, "orders", rng, 100, nack_share=0.0)
    return Shop(orders="orders", dead_letters="orders-dlq", story=story)


def _follow_story(http: httpx.Client, story: str) -> None:
    # The story has the highest priority: the next receive of the orders queue takes it.
    path = f"/v1/queues/orders/messages/{story}"
    [message] = http.post("/v1/queues/orders/receive", json={}).json()["messages"]
    assert message["id"] == story
    http.post(f"{path}/nack", json={"receipt": message["receipt"], "reason": REASONS[0]})
    [message] = http.post("/v1/queues/orders/receive", json={}).json()["messages"]
    assert message["id"] == story
    http.post(f"{path}/extend", json={"receipt": message["receipt"], "visibility_timeout_s": 900})


def traffic(http: httpx.Client, seconds: float) -> None:
    """Messages flowing through the shop's queues for ``seconds``, in waves."""
    rng = random.Random(11)
    end = time.monotonic() + seconds
    wave = 0
    while time.monotonic() < end:
        wave += 1
        size = int(20 + 15 * (1 + (wave % 7) / 3))
        _publish(http, "orders", _orders(rng, size))
        _publish(http, "payments", [{"payment": wave, "n": n} for n in range(size // 2)])
        _work(http, "orders", rng, size, nack_share=0.12)
        _work(http, "payments", rng, size // 2, nack_share=0.03)
        time.sleep(2.0)  # pacing the waves over real time: that is what the charts show
