#!/usr/bin/env python
"""CPU of each process of ``cairn serve`` (the HTTP server, its projector process) while idle
and under a light load: what the broker costs when there is little to do.

  idle   nothing connected, for ``--seconds``
  light  ``--rate`` publishes/s, each received and acked by two long-polling consumers, with
         ``--subscribers`` SSE feeds following the log from position 0

CPU is read from the kernel (psutil ``cpu_times``: user + system) over the same interval, as a
share of one core. The clients run in this process, not the server's.

Usage: scripts/bench_cpu.py [--seconds 30] [--rate 100] [--subscribers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.bench import cairn  # the same server launcher as bench.py

BODY = {"body": {"order": 12345, "customer": "c-000042", "note": "x" * 200}}


def processes(pid: int) -> dict[str, psutil.Process]:
    root = psutil.Process(pid)
    found = {"server": root}
    for child in root.children(recursive=True):
        found["projector" if "api.projector" in " ".join(child.cmdline()) else "other"] = child
    return found


def cpu(watched: dict[str, psutil.Process]) -> dict[str, float]:
    return {name: sum(p.cpu_times()[:2]) for name, p in watched.items()}


async def follow(url: str) -> None:
    async with (
        httpx.AsyncClient(timeout=None) as client,
        client.stream("GET", f"{url}/v1/events/stream?after=0") as feed,
    ):
        async for _ in feed.aiter_bytes():
            pass


async def consume(client: httpx.AsyncClient) -> None:
    while True:
        answer = await client.post(
            "/v1/queues/bench/receive", json={"max_messages": 10, "wait_s": 1}
        )
        acks = [{"id": m["id"], "receipt": m["receipt"]} for m in answer.json()["messages"]]
        if acks:
            (await client.post("/v1/queues/bench/ack", json={"acks": acks})).raise_for_status()


async def light(url: str, watched: dict[str, psutil.Process], args: argparse.Namespace) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        tasks = [asyncio.create_task(follow(url)) for _ in range(args.subscribers)]
        tasks += [asyncio.create_task(consume(client)) for _ in range(2)]
        before, start, n = cpu(watched), time.perf_counter(), 0
        pending: set[asyncio.Task[httpx.Response]] = set()
        while (now := time.perf_counter()) - start < args.seconds:
            due = start + n / args.rate
            if due > now:
                await asyncio.sleep(due - now)
            task = asyncio.create_task(client.post("/v1/queues/bench/messages", json=BODY))
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
        await asyncio.gather(*pending)
        report(f"light ({args.rate:g} msg/s, {args.subscribers} feeds)", watched, before, start)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await task


def report(
    label: str, watched: dict[str, psutil.Process], before: dict[str, float], start: float
) -> None:
    elapsed = time.perf_counter() - start
    after = cpu(watched)
    shares = ", ".join(f"{n} {(after[n] - before[n]) / elapsed:.2%}" for n in watched)
    print(f"{label}, {elapsed:.0f} s: {shares} of a core", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--subscribers", type=int, default=4)
    args = parser.parse_args()
    with cairn(1) as server:
        watched = processes(server.process.pid)
        await asyncio.sleep(3)  # past start-up
        before, start = cpu(watched), time.perf_counter()
        await asyncio.sleep(args.seconds)
        report("idle", watched, before, start)
        await light(server.url, watched, args)


if __name__ == "__main__":
    asyncio.run(main())
