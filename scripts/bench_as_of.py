#!/usr/bin/env python
"""As-of read benchmark: how long reading the past takes once a queue has a long history.

Builds a queue with about ``--events`` events behind it on a real ``cairn serve`` (batches of
publishes, receives and batch acks, so the history holds every kind of change), then times,
over real HTTP and one connection:

  now        GET /v1/queues/{name}: the present, from the read model (the baseline)
  as-of      GET /v1/queues/{name}?as_of=<position>, at positions spread over the history
  as-of time the same, by RFC 3339 time
  message    GET /v1/queues/{name}/messages/{id}?as_of=<position>
  listing    GET /v1/queues/{name}/messages?as_of=<position>&status=available&limit=50

and prints p50/p99/max per kind. The contract's target (issue 10): an as-of read of a queue
with 100k events behind it under 200 ms.

Usage: scripts/bench_as_of.py [--events 100000] [--reads 200] [--database-url URL]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.bench import cairn  # the same server launcher as bench.py

_BATCH = 100


def build_history(http: httpx.Client, queue: str, events: int) -> list[tuple[int, str, str]]:
    """Publish, receive and ack in batches until the queue has ``events`` events; answers a
    sample of (position, time, message id) along the way."""
    marks: list[tuple[int, str, str]] = []
    written = 0
    while written < events:
        published = http.post(
            f"/v1/queues/{queue}/messages/batch",
            json={
                "messages": [
                    {"body": {"n": written + i, "pad": "x" * 200}, "priority": i % 10}
                    for i in range(_BATCH)
                ]
            },
        )
        published.raise_for_status()
        written += _BATCH
        # Ack about two thirds of what arrives, so the history has leases and acks too.
        received = http.post(f"/v1/queues/{queue}/receive", json={"max_messages": 67})
        received.raise_for_status()
        messages = received.json()["messages"]
        acked = http.post(
            f"/v1/queues/{queue}/ack",
            json={"acks": [{"id": m["id"], "receipt": m["receipt"]} for m in messages]},
        )
        acked.raise_for_status()
        written += 2 * len(messages)
        last = published.json()["results"][-1]
        message = http.get(
            f"/v1/queues/{queue}/messages/{last['id']}",
            params={"min_position": last["position"]},
        ).json()
        marks.append((last["position"], message["published_at"], last["id"]))
    return marks


def timed(read: Callable[[], httpx.Response], reads: int) -> list[float]:
    took: list[float] = []
    for _ in range(reads):
        started = time.perf_counter()
        response = read()
        took.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return took


def row(label: str, took: list[float]) -> str:
    took.sort()
    p99 = took[min(len(took) - 1, int(len(took) * 0.99))]
    return (
        f"{label:<11} p50 {statistics.median(took):7.2f} ms   p99 {p99:7.2f} ms"
        f"   max {took[-1]:7.2f} ms   ({len(took)} reads)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    rng = random.Random(7)

    with cairn(1, database_url=args.database_url) as server:
        http = httpx.Client(base_url=server.url, timeout=60)
        started = time.perf_counter()
        marks = build_history(http, "bench", args.events)
        head = http.get("/v1/projections").headers["X-Cairn-Position"]
        print(f"history: {head} events in the log, built in {time.perf_counter() - started:.0f} s")

        def pick() -> tuple[int, str, str]:
            return marks[rng.randrange(len(marks))]

        results = {
            "now": timed(lambda: http.get("/v1/queues/bench"), args.reads),
            "as-of": timed(
                lambda: http.get("/v1/queues/bench", params={"as_of": pick()[0]}), args.reads
            ),
            "as-of time": timed(
                lambda: http.get("/v1/queues/bench", params={"as_of": pick()[1]}), args.reads
            ),
            "message": timed(
                lambda: http.get(
                    f"/v1/queues/bench/messages/{(m := pick())[2]}", params={"as_of": m[0]}
                ),
                args.reads,
            ),
            "listing": timed(
                lambda: http.get(
                    "/v1/queues/bench/messages",
                    params={"as_of": pick()[0], "status": "available", "limit": 50},
                ),
                args.reads,
            ),
        }
        # The last position of all: the read that has the most history behind it.
        last = marks[-1][0]
        results["as-of head"] = timed(
            lambda: http.get("/v1/queues/bench", params={"as_of": last}), args.reads
        )
    store = args.database_url.split(":", 1)[0] if args.database_url else "sqlite"
    print(f"store: {store}; target: as-of read of the queue under 200 ms")
    for label, took in results.items():
        print(row(label, took))


if __name__ == "__main__":
    main()
