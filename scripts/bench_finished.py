#!/usr/bin/env python
"""Finished messages must not slow the broker: publish, receive and ack latency on a queue with
a million finished (acked) messages behind it, against an empty queue of the same server, in
the same run.

  1. ``cairn serve`` on a fresh SQLite store (projector process, as ``cairn serve`` runs), with
     ``CAIRN_FINISHED_KEPT_S`` set to ``--kept-s``.
  2. Fill queue ``bench`` with ``--messages`` messages, each published (batches of 100),
     received (100 at a time) and acked (batch ack): all of them finished.
  3. Measure, alternating the two queues round by round: one client, one request at a time,
     a publish, then a receive of one message and its ack. The write side still holds every
     finished row (they are younger than ``--kept-s``).
  4. Wait until the sweeper has pruned them (the row count of ``broker_messages``), and
     measure again.

Usage: scripts/bench_finished.py [--messages 1000000] [--samples 600] [--rounds 3]
                                 [--kept-s 600] [--no-prune]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.bench import cairn  # the same server launcher as bench.py

BODY = {"order": 12345, "customer": "c-000042", "items": [{"sku": "abc-1", "qty": 2}] * 4}


def rows(database: Path) -> int:
    """Rows of the write side's message table, read beside the running server (WAL)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM broker_messages").fetchone()[0])


async def fill(url: str, queue: str, total: int, workers: int = 8) -> float:
    """Publish, receive and ack ``total`` messages; returns messages/s."""
    done = 0
    started = time.perf_counter()

    async def worker(count: int) -> None:
        nonlocal done
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            while count > 0:
                n = min(100, count)
                batch = {"messages": [{"body": BODY}] * n}
                (
                    await client.post(f"/v1/queues/{queue}/messages/batch", json=batch)
                ).raise_for_status()
                got = 0
                while got < n:
                    answer = await client.post(
                        f"/v1/queues/{queue}/receive", json={"max_messages": n - got}
                    )
                    answer.raise_for_status()
                    messages = answer.json()["messages"]
                    if not messages:
                        continue  # another worker took them; ours are next
                    acks = [{"id": m["id"], "receipt": m["receipt"]} for m in messages]
                    result = await client.post(f"/v1/queues/{queue}/ack", json={"acks": acks})
                    result.raise_for_status()
                    assert all(r["status"] == 204 for r in result.json()["results"])
                    got += len(messages)
                count -= n
                done += n
                if done % 100_000 < n:
                    rate = done / (time.perf_counter() - started)
                    print(f"  {done:>9,} finished ({rate:,.0f}/s)", flush=True)

    share = [total // workers + (1 if i < total % workers else 0) for i in range(workers)]
    await asyncio.gather(*(worker(n) for n in share if n))
    return total / (time.perf_counter() - started)


async def latencies(url: str, queue: str, samples: int) -> dict[str, list[float]]:
    """One request at a time: publish, then receive that message and ack it (ms)."""
    found: dict[str, list[float]] = {"publish": [], "receive": [], "ack": []}
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for _ in range(samples):
            t0 = time.perf_counter()
            published = await client.post(f"/v1/queues/{queue}/messages", json={"body": BODY})
            t1 = time.perf_counter()
            received = await client.post(f"/v1/queues/{queue}/receive", json={"max_messages": 1})
            t2 = time.perf_counter()
            [message] = received.json()["messages"]
            acked = await client.post(
                f"/v1/queues/{queue}/messages/{message['id']}/ack",
                json={"receipt": message["receipt"]},
            )
            t3 = time.perf_counter()
            assert (published.status_code, acked.status_code) == (201, 204)
            found["publish"].append((t1 - t0) * 1000)
            found["receive"].append((t2 - t1) * 1000)
            found["ack"].append((t3 - t2) * 1000)
    return found


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def compare(url: str, samples: int, rounds: int, label: str, database: Path) -> None:
    measured: dict[str, dict[str, list[float]]] = {
        q: {"publish": [], "receive": [], "ack": []} for q in ("empty", "bench")
    }
    for _ in range(rounds):  # alternating, so that the machine's moods hit both alike
        for queue in ("empty", "bench"):
            for kind, values in (await latencies(url, queue, samples // rounds)).items():
                measured[queue][kind] += values
    print(f"\n{label}: {rows(database):,} rows in broker_messages")
    print("| request | empty queue p50 / p99 | 1M finished behind p50 / p99 | ratio of p50 |")
    print("|---|---|---|---|")
    for kind in ("publish", "receive", "ack"):
        empty, full = measured["empty"][kind], measured["bench"][kind]
        print(
            f"| {kind} | {statistics.median(empty):.2f} / {p(empty, 0.99):.2f} ms"
            f" | {statistics.median(full):.2f} / {p(full, 0.99):.2f} ms"
            f" | {statistics.median(full) / statistics.median(empty):.2f}x |"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kept-s", type=float, default=600)
    parser.add_argument("--no-prune", action="store_true", help="skip step 4")
    args = parser.parse_args()
    settings = {"CAIRN_FINISHED_KEPT_S": str(args.kept_s)}
    with cairn(1, settings=settings) as server:
        assert server.database is not None
        async with httpx.AsyncClient() as client:
            (
                await client.post(f"{server.url}/v1/queues", json={"name": "empty"})
            ).raise_for_status()
        print(f"finishing {args.messages:,} messages on queue 'bench' ...", flush=True)
        started = time.monotonic()
        rate = await fill(server.url, "bench", args.messages)
        print(f"filled in {time.monotonic() - started:.0f} s ({rate:,.0f} messages/s)")
        await compare(server.url, args.samples, args.rounds, "finished rows kept", server.database)
        if args.no_prune:
            return
        deadline = started + args.kept_s + 600
        while (left := rows(server.database)) > args.messages // 100:
            if time.monotonic() > deadline:
                raise SystemExit(f"the sweeper did not prune: {left:,} rows left")
            await asyncio.sleep(5)
        await compare(server.url, args.samples, args.rounds, "after pruning", server.database)


if __name__ == "__main__":
    asyncio.run(main())
