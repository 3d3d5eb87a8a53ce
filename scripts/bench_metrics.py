#!/usr/bin/env python
"""What a ``/metrics`` scrape costs with many queues: ``cairn serve`` on a fresh SQLite store,
``--queues`` queues created, then the median of five scrapes (time and size), with the
per-queue series and with ``--no-metrics-per-queue``.

Usage: scripts/bench_metrics.py [--queues 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.bench import cairn  # the same server launcher as bench.py

_CREATORS = 8


def scrape(url: str, queues: int) -> tuple[float, int]:
    def create(first: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            for n in range(first, queues, _CREATORS):
                client.post("/v1/queues", json={"name": f"q{n:06d}"}).raise_for_status()

    with ThreadPoolExecutor(_CREATORS) as pool:
        list(pool.map(create, range(_CREATORS)))
    with httpx.Client(base_url=url, timeout=120) as client:
        client.get("/metrics").raise_for_status()  # warm
        times, size = [], 0
        for _ in range(5):
            started = time.perf_counter()
            answer = client.get("/metrics")
            times.append(time.perf_counter() - started)
            size = len(answer.content)
    return statistics.median(times), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", type=int, default=2000)
    args = parser.parse_args()
    print(f"| /metrics with {args.queues:,} queues | scrape (median of 5) | size |")
    print("|---|---|---|")
    for label, flags in (
        ("per-queue series", ()),
        ("--no-metrics-per-queue", ("--no-metrics-per-queue",)),
    ):
        with cairn(1, *flags) as server:
            seconds, size = scrape(server.url, args.queues)
        print(f"| {label} | {seconds * 1000:.1f} ms | {size / 1024:,.0f} KiB |", flush=True)


if __name__ == "__main__":
    main()
