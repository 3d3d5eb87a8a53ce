#!/usr/bin/env python
"""CPU of each process of ``cairn serve`` (the HTTP server, its projector process) while idle
and under a light load: what the broker costs when there is little to do.

  idle   nothing connected, for ``--seconds``
  light  ``--rate`` publishes/s, each received and acked by two long-polling consumers, with
         ``--subscribers`` SSE feeds following the log from position 0

With ``--queues N`` it measures instead what many idle queues cost: two servers side by side,
one on a store with 10 queues and one with N (created through the writer before they start),
on SQLite or, with ``--postgres``, on two fresh databases of that server. Both idle over the
same ``--seconds`` once their read side caught up (nothing scraping); then the latency (p50,
p99 of ``--samples`` requests, taking turns between the servers) of create, get, a page of
the list (``GET /v1/queues?limit=100``), publish and receive, printed as a table.

CPU is read from the kernel (psutil ``cpu_times``: user + system) over the same interval, as a
share of one core. The clients run in this process, not the server's.

Usage: scripts/bench_cpu.py [--seconds 30] [--rate 100] [--subscribers 4]
       scripts/bench_cpu.py --queues 100000 [--seconds 20] [--samples 200]
                            [--postgres postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from broker.commands import CreateQueue, QueueSettings
from scripts.bench import cairn, postgres_database  # the same server launcher as bench.py

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
) -> float:
    """Print each process's share of a core since ``before``; return their sum."""
    elapsed = time.perf_counter() - start
    after = cpu(watched)
    used = {n: (after[n] - before[n]) / elapsed for n in watched}
    shares = ", ".join(f"{n} {share:.2%}" for n, share in used.items())
    print(f"{label}, {elapsed:.0f} s: {shares} of a core", flush=True)
    return sum(used.values())


# ---- many queues ----------------------------------------------------------------------------

OPERATIONS = ("create", "get", "list page", "publish", "receive")
_SAMPLING_S = 60.0
"""At most this long per operation (a slow list page is sampled fewer times)."""


async def fill(database_url: str, names: list[str]) -> None:
    """Create the queues through the broker's own writer before any server runs: 100,000
    creates over HTTP would take half an hour (each create waits for the read model), and
    what is measured is the broker beside them, not their creation."""
    from broker.store.postgres import PostgresEventStore, is_postgres
    from broker.store.sqlite import SqliteEventStore
    from broker.store.tortoise import migrate, sqlite_path
    from broker.writer import Writer
    from projections.models import APPS

    await migrate(database_url, APPS)
    path = sqlite_path(database_url)
    store = (
        PostgresEventStore(database_url)
        if is_postgres(database_url)
        else SqliteEventStore(str(path), durability="normal")
    )
    await store.open()
    writer = Writer(store)
    await writer.start()
    try:
        for first in range(0, len(names), 1000):  # many at once: group-committed
            await asyncio.gather(
                *(
                    writer.execute(CreateQueue(queue=name, settings=QueueSettings()))
                    for name in names[first : first + 1000]
                )
            )
    finally:
        await writer.stop()
        await store.close()


async def caught_up(client: httpx.AsyncClient) -> None:
    """Wait until every projection has applied the whole log."""
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        answer = (await client.get("/v1/projections")).json()
        if all(p["lag"] == 0 for p in answer["projections"]):
            return
        await asyncio.sleep(0.5)  # polling the read side's progress, with a deadline
    raise SystemExit("the projections did not catch up in 15 minutes")


class Target:
    """One server under measurement, and what its operations took (ms)."""

    def __init__(self, client: httpx.AsyncClient, tag: str) -> None:
        self.client = client
        self.tag = tag
        self.took: dict[str, list[float]] = {op: [] for op in OPERATIONS}
        self.receipts: list[dict[str, str]] = []

    async def once(self, op: str, i: int) -> None:
        client = self.client
        start = time.perf_counter()
        match op:
            case "create":
                answer = await client.post("/v1/queues", json={"name": f"latency-{i:05d}"})
            case "get":
                answer = await client.get("/v1/queues/bench")
            case "list page":
                answer = await client.get("/v1/queues?limit=100")
            case "publish":
                answer = await client.post("/v1/queues/bench/messages", json=BODY)
            case _:
                answer = await client.post(
                    "/v1/queues/bench/receive", json={"max_messages": 1, "wait_s": 0}
                )
        self.took[op].append((time.perf_counter() - start) * 1000)
        answer.raise_for_status()
        if op == "receive":
            found = answer.json()["messages"]
            self.receipts += [{"id": m["id"], "receipt": m["receipt"]} for m in found]

    async def tidy(self) -> None:
        """Delete the queues the creates made, ack what the receives took."""
        for i in range(len(self.took["create"])):
            (await self.client.delete(f"/v1/queues/latency-{i:05d}")).raise_for_status()
        for first in range(0, len(self.receipts), 100):
            acks = {"acks": self.receipts[first : first + 100]}
            (await self.client.post("/v1/queues/bench/ack", json=acks)).raise_for_status()


async def interleaved(targets: list[Target], samples: int) -> None:
    """Each operation ``samples`` times on each server, taking turns request by request, so
    that both see the same moments of a noisy machine."""
    for op in OPERATIONS:
        started = time.perf_counter()
        for i in range(samples):
            for target in targets:
                await target.once(op, i)
            if time.perf_counter() - started > _SAMPLING_S and i >= 4:
                break
    for target in targets:
        await target.tidy()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@contextlib.contextmanager
def database(admin_url: str | None, directory: Path, name: str) -> Iterator[str]:
    if admin_url is None:
        yield f"sqlite:///{directory / name}.db"
    else:
        with postgres_database(admin_url) as url:
            yield url


async def many_queues(args: argparse.Namespace) -> None:
    few, many = 10, args.queues
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cairn-many-")))
        urls = [stack.enter_context(database(args.postgres, directory, n)) for n in ("few", "many")]
        start = time.perf_counter()
        for url, count in zip(urls, (few, many), strict=True):
            # "bench" too: the launcher's create of it is then refused at once, instead of
            # waiting for a read model that is still folding 100,000 creates.
            await fill(url, [f"idle-{i:06d}" for i in range(count - 1)] + ["bench"])
        print(f"created {few + many - 2:,} queues in {time.perf_counter() - start:.0f} s")
        servers = [stack.enter_context(cairn(1, database_url=url)) for url in urls]
        # Idle connections are dropped before the server would close them (uvicorn: after 5 s),
        # so that none is reused just as the server closes it.
        limits = httpx.Limits(keepalive_expiry=1)
        clients = [
            httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) for server in servers
        ]
        try:
            for client in clients:
                await caught_up(client)
            await asyncio.sleep(3)  # past start-up, into the quiet
            watched = [processes(server.process.pid) for server in servers]
            before, begun = [cpu(w) for w in watched], time.perf_counter()
            await asyncio.sleep(args.seconds)  # both idle, over the same seconds
            idle = [
                report(f"idle, {n:,} queues", w, b, begun)
                for n, w, b in zip((few, many), watched, before, strict=True)
            ]
            targets = [
                Target(client, tag) for client, tag in zip(clients, ("few", "many"), strict=True)
            ]
            await interleaved(targets, args.samples)
        finally:
            for client in clients:
                await client.aclose()
    store = "PostgreSQL" if args.postgres else "SQLite"
    print(f"\n{store}, {few} vs {many:,} queues: idle CPU (server + projector, share of a core)")
    print("and latency in ms, p50 / p99 (samples), requests taking turns between the two")
    print(f"| | {few} queues | {many:,} queues | ratio p50 | ratio p99 |")
    print("|---|---|---|---|---|")
    print(f"| idle CPU, {args.seconds:g} s | {idle[0]:.2%} | {idle[1]:.2%} | | |")
    for op in OPERATIONS:
        a, b = targets[0].took[op], targets[1].took[op]
        cells = [f"{percentile(x, 0.5):.2f} / {percentile(x, 0.99):.2f} ({len(x)})" for x in (a, b)]
        ratio50 = statistics.median(b) / statistics.median(a)
        ratio99 = percentile(b, 0.99) / percentile(a, 0.99)
        print(f"| {op} | {cells[0]} | {cells[1]} | {ratio50:.2f}x | {ratio99:.2f}x |")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--subscribers", type=int, default=4)
    parser.add_argument("--queues", type=int, default=0, help="measure N idle queues instead")
    parser.add_argument("--samples", type=int, default=200, help="requests per operation")
    parser.add_argument(
        "--postgres", metavar="ADMIN_URL", help="on fresh databases of this server (not SQLite)"
    )
    args = parser.parse_args()
    if args.queues:
        await many_queues(args)
        return
    with cairn(1) as server:
        watched = processes(server.process.pid)
        await asyncio.sleep(3)  # past start-up
        before, start = cpu(watched), time.perf_counter()
        await asyncio.sleep(args.seconds)
        report("idle", watched, before, start)
        await light(server.url, watched, args)


if __name__ == "__main__":
    asyncio.run(main())
