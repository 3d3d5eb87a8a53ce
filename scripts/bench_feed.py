#!/usr/bin/env python
"""Feed benchmark: K SSE subscribers on a real server while a producer publishes at a fixed
rate; prints delivered events/s and publish -> received latency (p50/p99, counted from when
the publish request was sent).

Runs, in one go and on the same machine:
  baseline  a bare Starlette + sse-starlette broadcaster (no log, no durability): the ceiling
            of Python SSE fan-out here, for the same workload
  embedded  cairn serve on SQLite, feeds fed by the in-process tail
  redis     cairn serve with --redis-url (feeds also follow Redis Streams)

The subscribers run in ``--client-processes`` processes of their own (default 4), so that the
reading side is not one Python process that saturates before the server does; arrival times
are ``time.perf_counter()`` (CLOCK_MONOTONIC, one clock for every process of the machine).
Each run also checks that every subscriber got every published event, in order, no gap.

Usage: scripts/bench_feed.py [--subscribers 10,100,500] [--rate 200] [--seconds 5]
                             [--client-processes 4]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.bench import baseline, cairn  # the same server launchers as bench.py

_ID = re.compile(rb"(?:^|\n)id: (\d+)\n")


@dataclass
class Subscriber:
    arrivals: dict[int, float] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)
    """Positions in the order they arrived (duplicates included)."""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    last: int | None = None
    """The last position published, once the producer is done."""

    def check(self) -> None:
        if self.last is not None and self.last in self.arrivals:
            self.done.set()


async def subscribe(port: int, path: str, sub: Subscriber, until: asyncio.Event) -> None:
    """A deliberately thin SSE client (raw socket, regex over whole frames): the benchmark
    should measure the server, not the client's parsing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**22)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    buffer = b""
    try:
        while not until.is_set():
            try:
                chunk = await asyncio.wait_for(reader.read(2**20), 0.5)
            except TimeoutError:
                continue
            if not chunk:
                return
            now = time.perf_counter()
            buffer += chunk
            if not sub.ready.is_set() and b"\r\n\r\n" in buffer:
                sub.ready.set()
            cut = buffer.rfind(b"\n\n")
            if cut < 0:
                continue
            complete, buffer = buffer[: cut + 2], buffer[cut + 2 :]
            for match in _ID.finditer(complete):
                position = int(match.group(1))
                sub.order.append(position)
                sub.arrivals.setdefault(position, now)
            sub.check()
    finally:
        writer.close()


async def produce(
    url: str,
    publish_path: str,
    body: dict[str, object],
    rate: float,
    seconds: float,
    answered: dict[int, float],
) -> None:
    interval = 1.0 / rate
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        start = time.perf_counter()
        n = 0
        pending: set[asyncio.Task[None]] = set()

        async def one() -> None:
            # Latency is counted from when the publish was sent: an upper bound on the
            # time from its answer, that a busy client cannot make look negative.
            sent = time.perf_counter()
            response = await client.post(publish_path, json=body)
            answered[int(response.json()["position"])] = sent

        while (now := time.perf_counter()) - start < seconds:
            due = start + n * interval
            if due > now:
                await asyncio.sleep(due - now)
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
        await asyncio.gather(*pending)


def _clients(
    port: int, path: str, count: int, ready: Queue[Any], control: Queue[Any], results: Queue[Any]
) -> None:
    """One client process: ``count`` subscribers; says when all are connected, learns the last
    position published, and sends back what each received and when."""

    async def run() -> list[tuple[dict[int, float], list[int]]]:
        until = asyncio.Event()
        subs = [Subscriber() for _ in range(count)]
        tasks = [asyncio.create_task(subscribe(port, path, s, until)) for s in subs]
        await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in subs)), 60)
        ready.put(count)
        last = await asyncio.get_running_loop().run_in_executor(None, control.get)
        for sub in subs:
            sub.last = last
            sub.check()
        await asyncio.wait([asyncio.create_task(s.done.wait()) for s in subs], timeout=30)
        until.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        return [(s.arrivals, s.order) for s in subs]

    results.put(asyncio.run(run()))


def run_case(
    url: str,
    port: int,
    stream_path: str,
    publish_path: str,
    body: dict[str, object],
    subscribers: int,
    rate: float,
    seconds: float,
    processes: int,
) -> dict[str, float]:
    context = multiprocessing.get_context("fork")  # before any event loop of this process
    ready: Queue[Any] = context.Queue()
    control: Queue[Any] = context.Queue()
    results: Queue[Any] = context.Queue()
    shares = [subscribers // processes + (i < subscribers % processes) for i in range(processes)]
    workers = [
        context.Process(
            target=_clients, args=(port, stream_path, n, ready, control, results), daemon=True
        )
        for n in shares
        if n
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.get(timeout=90)
    answered: dict[int, float] = {}
    started = time.perf_counter()
    asyncio.run(produce(url, publish_path, body, rate, seconds, answered))
    for _ in workers:
        control.put(max(answered))
    received: list[tuple[dict[int, float], list[int]]] = []
    for _ in workers:
        received += results.get(timeout=120)
    for worker in workers:
        worker.join(10)
    elapsed = max(max(a.values(), default=started) for a, _ in received) - started
    published = sorted(answered)
    latencies = sorted(
        arrived - answered[p]
        for arrivals, _ in received
        for p, arrived in arrivals.items()
        if p in answered
    )
    delivered = sum(1 for arrivals, _ in received for p in arrivals if p in answered)
    in_order = sum(1 for _, order in received if [p for p in order if p in answered] == published)
    expected = len(answered) * subscribers
    return {
        "published": len(answered),
        "delivered": delivered,
        "complete": delivered / expected if expected else 0.0,
        "in_order": in_order / subscribers,
        "per_s": delivered / elapsed if elapsed > 0 else 0.0,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--subscribers", default="10,100,500")
    parser.add_argument("--rate", type=float, default=200.0, help="publishes per second")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--client-processes", type=int, default=4)
    args = parser.parse_args()
    counts = [int(k) for k in args.subscribers.split(",")]
    body = {"body": {"order": 12345, "items": ["a", "b", "c"], "note": "x" * 100}}
    print(
        f"{'setup':<10}{'K':>5}{'published':>11}{'delivered/s':>13}{'complete':>10}"
        f"{'in order':>10}{'p50 ms':>9}{'p99 ms':>9}{'vs baseline':>13}"
    )
    for k in counts:
        baseline_rate = None
        for setup in ("baseline", "embedded", "redis"):
            if setup == "baseline":
                server = baseline(1, "scripts.baseline_sse:app")
                stream, publish = "/stream", "/publish"
            else:
                extra: list[str] = []
                if setup == "redis":
                    redis.Redis.from_url(args.redis_url).flushdb()
                    extra = ["--redis-url", args.redis_url]
                server = cairn(1, *extra)
                stream, publish = "/v1/queues/bench/events/stream", "/v1/queues/bench/messages"
            with server as running:
                port = int(running.url.rsplit(":", 1)[1])
                result = run_case(
                    running.url,
                    port,
                    stream,
                    publish,
                    body,
                    k,
                    args.rate,
                    args.seconds,
                    args.client_processes,
                )
            if setup == "baseline":
                baseline_rate = result["per_s"]
            ratio = result["per_s"] / baseline_rate if baseline_rate else float("nan")
            print(
                f"{setup:<10}{k:>5}{result['published']:>11.0f}{result['per_s']:>13,.0f}"
                f"{result['complete']:>10.1%}{result['in_order']:>10.1%}"
                f"{result['p50_ms']:>9.1f}{result['p99_ms']:>9.1f}"
                f"{ratio:>12.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
