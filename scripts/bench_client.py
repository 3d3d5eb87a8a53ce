#!/usr/bin/env python
"""The Python client's overhead against raw httpx, on the same server in the same run, and
``consume`` throughput by concurrency.

  publish    one message a request, one thread: raw ``httpx.Client.post`` (the same request:
             JSON body and an Idempotency-Key) against ``Client.publish``
  consume    receive up to 10 (no wait) and ack each: raw httpx against ``Client.receive``
             and ``Delivery.ack``
  consume(N) ``Client.consume`` with a handler that does nothing, concurrency 1, 8 and 32:
             messages/s until a pre-published backlog is drained

Rounds alternate raw, client, raw, client; the best round of each counts. Client CPU is the
benchmark process's own CPU time per operation (the server runs in another process).

Usage: scripts/bench_client.py [--messages 2000] [--rounds 3] [--backlog 3000]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
from cairn_client import Client, Delivery

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.bench import cairn  # the same server launcher as bench.py

BODY = {"order": 12345, "items": ["a", "b", "c"]}
ATTRIBUTES = {"source": "bench"}


@dataclass
class Round:
    per_s: float
    cpu_us: float  # this process's CPU per operation


def timed(operations: int, run: Callable[[], None]) -> Round:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Round(operations / wall, cpu / operations * 1e6)


def raw_publish(http: httpx.Client, url: str, count: int) -> None:
    body = msgspec.json.encode({"body": BODY, "attributes": ATTRIBUTES})
    for _ in range(count):
        headers = {"content-type": "application/json", "idempotency-key": uuid.uuid4().hex}
        http.post(url, content=body, headers=headers).raise_for_status()


def client_publish(client: Client, queue: str, count: int) -> None:
    for _ in range(count):
        client.publish(queue, BODY, attributes=ATTRIBUTES)


def fill(http: httpx.Client, base: str, queue: str, count: int) -> None:
    """``count`` messages in ``queue``, published 100 a request."""
    for start in range(0, count, 100):
        batch = [{"body": BODY} for _ in range(min(100, count - start))]
        http.post(f"{base}/v1/queues/{queue}/messages/batch", json={"messages": batch})


def raw_consume(http: httpx.Client, base: str, queue: str, count: int) -> None:
    done = 0
    receive = msgspec.json.encode({"max_messages": 10, "wait_s": 0})
    json = {"content-type": "application/json"}
    while done < count:
        answer = http.post(f"{base}/v1/queues/{queue}/receive", content=receive, headers=json)
        for message in answer.raise_for_status().json()["messages"]:
            ack = msgspec.json.encode({"receipt": message["receipt"]})
            headers = json | {"idempotency-key": uuid.uuid4().hex}
            url = f"{base}/v1/queues/{queue}/messages/{message['id']}/ack"
            http.post(url, content=ack, headers=headers).raise_for_status()
            done += 1


def client_consume(client: Client, queue: str, count: int) -> None:
    done = 0
    while done < count:
        for delivery in client.receive(queue, max_messages=10, wait_s=0):
            delivery.ack()
            done += 1


def consume_throughput(client: Client, queue: str, count: int, concurrency: int) -> float:
    handled = 0
    lock = threading.Lock()
    all_done = threading.Event()

    def handler(delivery: Delivery) -> None:
        nonlocal handled
        with lock:
            handled += 1
            if handled == count:
                all_done.set()

    worker = threading.Thread(
        target=lambda: client.consume(queue, handler, concurrency=concurrency, wait_s=1)
    )
    started = time.perf_counter()
    worker.start()
    all_done.wait()
    elapsed = time.perf_counter() - started
    client.stop()
    worker.join()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="operations per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backlog", type=int, default=3000, help="messages per consume(N)")
    args = parser.parse_args()
    n = args.messages
    with (
        cairn(1) as server,
        httpx.Client(timeout=30) as http,
        Client(server.url) as client,
    ):
        publish_url = f"{server.url}/v1/queues/bench/messages"
        raw_publish(http, publish_url, 200)  # warm both up: connections, caches
        client_publish(client, "bench", 200)
        results: dict[str, list[Round]] = {}
        for _ in range(args.rounds):
            for name, run in (
                ("publish raw httpx", lambda: raw_publish(http, publish_url, n)),
                ("publish client", lambda: client_publish(client, "bench", n)),
            ):
                results.setdefault(name, []).append(timed(n, run))
        http.post(f"{server.url}/v1/queues", json={"name": "drain"}).raise_for_status()
        for _ in range(args.rounds):
            for name, run in (
                ("consume raw httpx", lambda: raw_consume(http, server.url, "drain", n)),
                ("consume client", lambda: client_consume(client, "drain", n)),
            ):
                fill(http, server.url, "drain", n)  # each round drains the same depth
                results.setdefault(name, []).append(timed(n, run))
        print(f"{'':<20}{'per s':>10}{'client CPU µs/op':>20}{'client/raw':>12}")
        for kind in ("publish", "consume"):
            raw = max(results[f"{kind} raw httpx"], key=lambda r: r.per_s)
            ours = max(results[f"{kind} client"], key=lambda r: r.per_s)
            print(f"{kind + ' raw httpx':<20}{raw.per_s:>10.0f}{raw.cpu_us:>20.0f}")
            ratio = ours.per_s / raw.per_s
            print(f"{kind + ' client':<20}{ours.per_s:>10.0f}{ours.cpu_us:>20.0f}{ratio:>12.2f}")
        for concurrency in (1, 8, 32):
            queue = f"bench-{concurrency}"
            http.post(f"{server.url}/v1/queues", json={"name": queue}).raise_for_status()
            fill(http, server.url, queue, args.backlog)
            rate = consume_throughput(client, queue, args.backlog, concurrency)
            print(f"{f'consume({concurrency})':<20}{rate:>10.0f}")


if __name__ == "__main__":
    main()
