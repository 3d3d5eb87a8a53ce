#!/usr/bin/env python
"""Soak: publish + receive + ack at 80% of the measured peak for N minutes, with SSE subscribers
following the whole log and a dead-letter queue in use, and check that nothing drifts.

It starts its own ``cairn serve`` on a fresh SQLite store (with its projector process, as
``cairn serve`` runs by default), creates ``soak`` (``max_receive_count`` 3 into ``soak-dlq``)
and connects the subscribers (``GET /v1/events/stream?after=0``), read by processes of their
own (``--reader``), never by the server's. Then:

  1. the peak: as many publish + receive + ack as the server completes in ``--peak-s``,
     closed loop, with the subscribers attached (or ``--rate``);
  2. the soak: open-loop publishes at 80% of that, consumers that ack, nack 5% of the
     messages once, and always nack 2% ("poison"), which go to the dead-letter queue after 3
     receives, where another consumer acks them;
  3. the drain: every message acked, every subscriber at the head.

Checks (exit 1 when one fails): no errors; every message acked exactly once (none lost, none
delivered again after its ack); every subscriber saw every event in order, gap-free; the RSS of
every server process (the HTTP server, the projector) grows < 10% after the first window; the
p99 publish latency and publish -> delivery latency of the last window are <= 1.5x the first's.
A window is a minute, or a quarter of the run when it is shorter than 4 minutes (a 1-minute
run compares its first 15 s with its last 15 s, not a minute with itself). It also prints the
disk the store takes per message, the log's file and the read models' separately, and the
CPU each server process used.

Usage: scripts/soak.py [--minutes 10] [--rate MSG_PER_S] [--subscribers 200]
                       [--reader-processes 4] [--consumers 8] [--peak-s 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import sqlite3
import sys
import time
from asyncio.subprocess import Process
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.bench import cairn  # the same server launcher as bench.py

QUEUE, DLQ = "soak", "soak-dlq"
MAX_RECEIVES = 3
NACK_ONCE, POISON = 0.05, 0.02
_ID = re.compile(rb"(?:^|\n)id: (\d+)\n")
_PAD = "x" * 200  # ~300 bytes of JSON per message, as issue 13's workload


# ---- the SSE readers (processes of their own) -----------------------------------------------


async def _follow(
    port: int, state: dict[str, Any], ready: asyncio.Event, progressed: asyncio.Event
) -> None:
    """One subscriber from position 0: a raw socket and a regex over whole frames (the client
    should cost little next to the server). Every id must be the one after the last."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**22)
    writer.write(
        b"GET /v1/events/stream?after=0 HTTP/1.1\r\nHost: soak\r\nAccept: text/event-stream\r\n\r\n"
    )
    await writer.drain()
    buffer = b""
    try:
        while True:
            chunk = await reader.read(2**20)
            if not chunk:
                state["errors"].append("the feed ended")
                return
            buffer += chunk
            if not ready.is_set():
                head, sep, rest = buffer.partition(b"\r\n\r\n")
                if not sep:
                    continue
                if not head.startswith(b"HTTP/1.1 200"):
                    state["errors"].append(head.split(b"\r\n", 1)[0].decode())
                    return
                buffer = rest
                ready.set()
            cut = buffer.rfind(b"\n\n")
            if cut < 0:
                continue
            complete, buffer = buffer[: cut + 2], buffer[cut + 2 :]
            last = state["last"]
            for match in _ID.finditer(complete):
                position = int(match.group(1))
                if position != last + 1:
                    state["gaps"] += 1
                    if len(state["errors"]) < 5:
                        state["errors"].append(f"after {last} came {position}")
                last = position
            state["last"] = last
            progressed.set()
    finally:
        writer.close()


async def reader_main(port: int, count: int) -> None:
    """Follow ``count`` feeds; say ``ready`` once all are connected. On ``reach <position>``
    from stdin, wait (bounded) until each has reached it and say ``reached``; on ``stop
    <head>``, the same, then print what each saw as JSON and stop."""
    states = [{"last": 0, "gaps": 0, "errors": []} for _ in range(count)]
    readies = [asyncio.Event() for _ in range(count)]
    progressed = asyncio.Event()
    tasks = [
        asyncio.create_task(_follow(port, s, r, progressed))
        for s, r in zip(states, readies, strict=True)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        command, position = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        deadline = loop.time() + 300
        while any(s["last"] < int(position) for s in states):
            if (left := deadline - loop.time()) <= 0:
                break
            progressed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(progressed.wait(), left)
        if command == "reach":
            print(f"reached {min(s['last'] for s in states)}", flush=True)
            continue
        for task in tasks:
            task.cancel()
        print(json.dumps({"head": int(position), "feeds": states}), flush=True)
        return


# ---- the load ---------------------------------------------------------------------------------

HttpError = (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError)
_IDLE_S = 2.0
"""How long a connection may have been idle to be used again: uvicorn closes keep-alive
connections idle for 5 s, and a request sent as it does would be lost."""


class Answer:
    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return msgspec.json.decode(self.content)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"{self.status_code}: {self.text[:200]}")


class Http:
    """A minimal HTTP/1.1 client over keep-alive connections to the server: the driver must
    cost little next to the server it measures (httpx took a whole core of this machine for
    ~200 requests/s, and the driver, not the broker, set the pace)."""

    def __init__(self, port: int, connections: int = 64) -> None:
        self._port = port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self._slots = asyncio.Semaphore(connections)

    async def get(self, path: str) -> Answer:
        return await self._request(b"GET", path, b"")

    async def post(self, path: str, json: Any = None) -> Answer:
        return await self._request(b"POST", path, msgspec.json.encode(json))

    async def _request(self, method: bytes, path: str, body: bytes) -> Answer:
        async with self._slots:
            now = time.monotonic()
            while self._idle and self._idle[-1][2] < now - _IDLE_S:
                self._idle.pop()[1].close()  # the server may be closing it: never reuse it
            if self._idle:
                reader, writer, _ = self._idle.pop()
            else:
                reader, writer = await asyncio.open_connection("127.0.0.1", self._port)
            try:
                exchange = self._exchange(reader, writer, method, path, body)
                answer = await asyncio.wait_for(exchange, 30)
            except BaseException:
                writer.close()
                raise
            self._idle.append((reader, writer, time.monotonic()))
            return answer

    @staticmethod
    async def _exchange(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: bytes,
        path: str,
        body: bytes,
    ) -> Answer:
        writer.write(
            b"%s %s HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (method, path.encode(), len(body), body)
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return Answer(status, await reader.readexactly(length) if length else b"")

    def close(self) -> None:
        for _, writer, _ in self._idle:
            writer.close()
        self._idle.clear()


def window_of(seconds: float) -> float:
    return min(60.0, seconds / 4)


@dataclass
class Ledger:
    """What the producers and consumers did, by the producer's sequence number (a body field,
    which a dead-letter copy keeps)."""

    sent_at: dict[int, float] = field(default_factory=dict)
    kind: dict[int, str] = field(default_factory=dict)
    acked: Counter[int] = field(default_factory=Counter)
    nacked: Counter[int] = field(default_factory=Counter)
    publish_ms: list[tuple[float, float]] = field(default_factory=list)
    """(when sent, latency) of each publish."""
    delivery_ms: list[tuple[float, float]] = field(default_factory=list)
    """(when published, publish -> first delivery) of each message."""
    delivered: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    after_ack: int = 0
    dead_lettered: int = 0
    next_seq: int = 0

    def error(self, what: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(what)
        else:
            self.errors[-1] = f"... and more ({what})"


async def publish(client: Http, ledger: Ledger, rng: random.Random) -> None:
    seq = ledger.next_seq
    ledger.next_seq += 1
    roll = rng.random()
    kind = "poison" if roll < POISON else "once" if roll < POISON + NACK_ONCE else "ack"
    ledger.kind[seq] = kind
    sent = time.monotonic()
    ledger.sent_at[seq] = sent
    body = {"body": {"seq": seq, "kind": kind, "pad": _PAD}}
    try:
        answer = await client.post(f"/v1/queues/{QUEUE}/messages", json=body)
    except HttpError as error:
        ledger.error(f"publish {seq}: {error!r}")
        return
    if answer.status_code != 201:
        ledger.error(f"publish {seq}: {answer.status_code} {answer.text[:200]}")
    ledger.publish_ms.append((sent, (time.monotonic() - sent) * 1000))


async def consume(client: Http, queue: str, ledger: Ledger, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            answer = await client.post(
                f"/v1/queues/{queue}/receive", json={"max_messages": 10, "wait_s": 1}
            )
            if answer.status_code != 200:
                ledger.error(f"receive {queue}: {answer.status_code} {answer.text[:200]}")
                continue
            now = time.monotonic()
            acks: list[tuple[dict[str, str], int]] = []
            for message in answer.json()["messages"]:
                seq, kind = message["body"]["seq"], message["body"]["kind"]
                if ledger.acked[seq]:
                    ledger.after_ack += 1
                    ledger.error(f"message {seq} delivered after its ack")
                if seq not in ledger.delivered:
                    ledger.delivered.add(seq)
                    sent = ledger.sent_at[seq]
                    ledger.delivery_ms.append((sent, (now - sent) * 1000))
                nack = queue == QUEUE and (
                    kind == "poison" or (kind == "once" and message["receive_count"] == 1)
                )
                if not nack:
                    acks.append(({"id": message["id"], "receipt": message["receipt"]}, seq))
                    continue
                ledger.nacked[seq] += 1
                path = f"/v1/queues/{queue}/messages/{message['id']}/nack"
                nacked = await client.post(path, json={"receipt": message["receipt"]})
                if nacked.status_code != 204:
                    ledger.error(f"nack {seq}: {nacked.status_code} {nacked.text[:200]}")
            if not acks:
                continue
            entries = [entry for entry, _ in acks]
            done = await client.post(f"/v1/queues/{queue}/ack", json={"acks": entries})
            if done.status_code != 200:
                ledger.error(f"ack: {done.status_code} {done.text[:200]}")
                continue
            for result, (entry, seq) in zip(done.json()["results"], acks, strict=True):
                if result["status"] != 204:
                    ledger.error(f"ack {entry['id']}: {result['status']}")
                    continue
                ledger.acked[seq] += 1
                if queue == DLQ:
                    ledger.dead_lettered += 1
        except HttpError as error:
            ledger.error(f"consume {queue}: {error!r}")


async def open_loop(client: Http, ledger: Ledger, rate: float, seconds: float, tick: Any) -> None:
    """Publish at ``rate`` for ``seconds``, on schedule whatever the answers' latency."""
    rng = random.Random(13)
    pending: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    n = 0
    while (now := time.monotonic()) - start < seconds:
        due = start + n / rate
        if due > now:
            await asyncio.sleep(due - now)
        task = asyncio.create_task(publish(client, ledger, rng))
        pending.add(task)
        task.add_done_callback(pending.discard)
        n += 1
        tick(now - start)
    await asyncio.gather(*pending)


async def closed_loop(client: Http, ledger: Ledger, seconds: float) -> None:
    rng = random.Random(7)
    end = time.monotonic() + seconds

    async def producer() -> None:
        while time.monotonic() < end:
            await publish(client, ledger, rng)

    await asyncio.gather(*(producer() for _ in range(16)))


# ---- watching the server ---------------------------------------------------------------------


def server_processes(pid: int) -> dict[str, psutil.Process]:
    root = psutil.Process(pid)
    found = {"server": root}
    for child in root.children(recursive=True):
        command = " ".join(child.cmdline())
        found["projector" if "api.projector" in command else f"child {child.pid}"] = child
    return found


def disk(database: Path) -> dict[str, int]:
    """Bytes of each file of the store (the log's file holds the write-side tables too), and
    of the log's events table and its indexes alone where SQLite can say (dbstat)."""
    files = {
        "log file (events + write side)": database,
        "read models": database.with_name(f"{database.stem}.views{database.suffix}"),
    }
    found = {
        name: sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
        for name, path in files.items()
    }
    with (
        contextlib.suppress(sqlite3.Error),
        sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn,
    ):
        rows = conn.execute(
            "SELECT SUM(pgsize) FROM dbstat WHERE name = 'events'"
            " OR name IN (SELECT name FROM sqlite_master WHERE tbl_name = 'events')"
        ).fetchone()
        if rows and rows[0]:
            found["events table and indexes"] = int(rows[0])
    return found


def p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def in_window(samples: list[tuple[float, float]], start: float, end: float) -> list[float]:
    return [value for at, value in samples if start <= at < end]


async def soak(args: argparse.Namespace) -> int:
    failures: list[str] = []
    with cairn(1) as server:
        assert server.database is not None
        port = int(server.url.rsplit(":", 1)[1])
        client = Http(port)
        try:
            for body in (
                {"name": DLQ},
                {
                    "name": QUEUE,
                    "visibility_timeout_s": 30,
                    "max_receive_count": MAX_RECEIVES,
                    "dead_letter_queue": DLQ,
                },
            ):
                (await client.post("/v1/queues", json=body)).raise_for_status()
            readers = await start_readers(port, args.subscribers, args.reader_processes)
            print(
                f"{args.subscribers} subscribers connected in {len(readers)} processes", flush=True
            )
            processes = server_processes(server.process.pid)
            ledger = Ledger()
            stop = asyncio.Event()
            consumers = [
                asyncio.create_task(consume(client, QUEUE, ledger, stop))
                for _ in range(args.consumers)
            ] + [asyncio.create_task(consume(client, DLQ, ledger, stop)) for _ in range(2)]

            rate = args.rate
            if rate is None:
                before = sum(ledger.acked.values())
                started = time.monotonic()
                await closed_loop(client, ledger, args.peak_s)
                peak = (sum(ledger.acked.values()) - before) / (time.monotonic() - started)
                rate = 0.8 * peak
                print(f"peak: {peak:,.0f} messages/s acked; soaking at {rate:,.0f}/s", flush=True)
                # The soak starts from a steady state: the peak's backlog acked, and every
                # feed caught up (the peak leaves them behind, and that is not the soak's).
                settling = time.monotonic()
                await drained(ledger, 300)
                reached = await reach(readers, (await client.get("/v1/projections")).json()["head"])
                print(
                    f"settled in {time.monotonic() - settling:.0f} s (feeds at {reached:,})",
                    flush=True,
                )
            peak_messages = ledger.next_seq
            ledger.publish_ms.clear()
            ledger.delivery_ms.clear()

            seconds = args.minutes * 60
            window = window_of(seconds)
            rss: dict[str, list[tuple[float, int]]] = {name: [] for name in processes}
            cpu_before = {name: p.cpu_times() for name, p in processes.items()}
            start = time.monotonic()
            next_sample = [0.0]

            def tick(elapsed: float) -> None:
                if elapsed >= next_sample[0]:
                    next_sample[0] += 5
                    for name, process in processes.items():
                        rss[name].append((elapsed, process.memory_info().rss))
                    if int(elapsed) % 60 < 5 and elapsed >= 5:
                        print(
                            f"  {elapsed / 60:4.1f} min: {ledger.next_seq:,} published,"
                            f" {sum(ledger.acked.values()):,} acked",
                            flush=True,
                        )

            await open_loop(client, ledger, rate, seconds, tick)
            elapsed = time.monotonic() - start
            cpu = {
                name: (sum(p.cpu_times()[:2]) - sum(cpu_before[name][:2])) / elapsed
                for name, p in processes.items()
            }
            for name, process in processes.items():
                rss[name].append((elapsed, process.memory_info().rss))
            await drained(ledger, 120)
            stop.set()
            await asyncio.gather(*consumers)
            head = (await client.get("/v1/projections")).json()["head"]
            metrics = (await client.get("/metrics")).text
            overflows = sum(
                float(line.split()[-1])
                for line in metrics.splitlines()
                if line.startswith("cairn_feed_overflows_total")
            )
            stats = {}
            for name in (QUEUE, DLQ):
                stats[name] = (await client.get(f"/v1/queues/{name}?min_position={head}")).json()[
                    "stats"
                ]
        finally:
            client.close()
        feeds = await stop_readers(readers, head)
        # Stopped, the server checkpoints its write-ahead logs into the files: measure those.
        server.process.terminate()
        await asyncio.to_thread(server.process.wait, 30)
        sizes = disk(server.database)
    # ---- the report (the server has stopped: its files are whole) --------------------------
    total = ledger.next_seq
    soaked = total - peak_messages
    lost = [s for s in range(total) if ledger.acked[s] == 0]
    twice = [s for s in range(total) if ledger.acked[s] > 1]
    poison = sum(1 for k in ledger.kind.values() if k == "poison")
    print()
    print(
        f"soak: {args.minutes:g} min at {rate:,.0f} messages/s, {args.subscribers} subscribers"
        f" from position 0, windows of {window:.0f} s"
    )
    print("| check | result | |")
    print("|---|---|---|")

    def row(name: str, ok: bool, detail: str) -> None:
        print(f"| {name} | {detail} | {'ok' if ok else 'FAILED'} |")
        if not ok:
            failures.append(name)

    row("errors", not ledger.errors, f"{len(ledger.errors)} {ledger.errors[:3]}")
    row(
        "every message acked exactly once",
        not lost and not twice,
        f"{total:,} published ({soaked:,} in the soak), {len(lost)} never acked,"
        f" {len(twice)} acked twice",
    )
    row("nothing delivered after its ack", ledger.after_ack == 0, f"{ledger.after_ack}")
    row(
        "dead-letter queue in use",
        ledger.dead_lettered == poison and poison > 0,
        f"{ledger.dead_lettered} of {poison} poison messages acked from {DLQ}; "
        f"{sum(1 for s, n in ledger.nacked.items() if ledger.kind[s] == 'once' and n)} nacked once",
    )
    row(
        "queues empty at the end",
        all(s["available"] == s["in_flight"] == s["delayed"] == 0 for s in stats.values()),
        json.dumps(
            {n: {k: s[k] for k in ("available", "in_flight", "delayed")} for n, s in stats.items()}
        ),
    )
    complete = sum(1 for f in feeds if f["last"] == head and f["gaps"] == 0 and not f["errors"])
    errors = [e for f in feeds for e in f["errors"]][:3]
    row(
        "every subscriber saw every event in order",
        complete == args.subscribers,
        f"{complete} of {args.subscribers} reached {head:,} gap-free {errors}",
    )
    for name, samples in rss.items():
        first = [v for at, v in samples if at <= window]
        last = [v for at, v in samples if at >= elapsed - window]
        if not first or not last:
            continue
        growth = max(last) / first[-1] - 1
        row(
            f"RSS of {name}",
            growth < 0.10,
            f"{first[-1] / 2**20:.0f} MiB after {window:.0f} s ->"
            f" {max(last) / 2**20:.0f} MiB at the end ({growth:+.1%})",
        )
    for name, samples in (
        ("publish", ledger.publish_ms),
        ("publish -> delivery", ledger.delivery_ms),
    ):
        starts = [at for at, _ in samples]
        if not starts:
            row(f"p99 {name}", False, "no samples")
            continue
        t0 = min(starts)
        head_p99 = p99(in_window(samples, t0, t0 + window))
        tail_p99 = p99(in_window(samples, t0 + elapsed - window, t0 + elapsed))
        row(
            f"p99 {name}, last window / first",
            tail_p99 <= 1.5 * head_p99,
            f"{head_p99:.1f} ms -> {tail_p99:.1f} ms ({tail_p99 / head_p99:.2f}x)",
        )
    print()
    print(f"feeds cut off from the live tail (fell behind, read the store): {overflows:.0f}")
    print(
        "CPU, share of one core during the soak: "
        + ", ".join(f"{n} {c:.0%}" for n, c in cpu.items())
    )
    print(f"disk after {total:,} messages ({head:,} events):")
    for name, size in sizes.items():
        print(f"  {name}: {size / 2**20:,.1f} MiB, {size / total:,.0f} bytes per message")
    print("PASSED" if not failures else f"FAILED: {', '.join(failures)}")
    return 0 if not failures else 1


async def drained(ledger: Ledger, within_s: float) -> None:
    """Wait until every message published so far is acked (the consumers keep running)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if all(ledger.acked[s] for s in range(ledger.next_seq)):
            return
        await asyncio.sleep(0.2)


async def start_readers(port: int, subscribers: int, processes: int) -> list[Process]:
    share = [subscribers // processes + (i < subscribers % processes) for i in range(processes)]
    readers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--reader",
            str(port),
            str(n),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for n in share
        if n
    ]
    for reader in readers:
        assert reader.stdout is not None
        line = await asyncio.wait_for(reader.stdout.readline(), 180)
        if line.strip() != b"ready":
            raise SystemExit(f"a reader did not connect: {line!r}")
    return readers


async def reach(readers: list[Process], position: int) -> int:
    """Wait until every feed has reached ``position``; the lowest position a feed is at."""
    for reader in readers:
        assert reader.stdin is not None
        reader.stdin.write(f"reach {position}\n".encode())
        await reader.stdin.drain()
    lowest = position
    for reader in readers:
        assert reader.stdout is not None
        line = await asyncio.wait_for(reader.stdout.readline(), 360)
        lowest = min(lowest, int(line.split()[1]))
    return lowest


async def stop_readers(readers: list[Process], head: int) -> list[dict[str, Any]]:
    feeds: list[dict[str, Any]] = []
    for reader in readers:
        assert reader.stdin is not None
        reader.stdin.write(f"stop {head}\n".encode())
        await reader.stdin.drain()
    for reader in readers:
        assert reader.stdout is not None
        line = await asyncio.wait_for(reader.stdout.readline(), 180)
        feeds += json.loads(line)["feeds"]
        await reader.wait()
    return feeds


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--reader":
        asyncio.run(reader_main(int(sys.argv[2]), int(sys.argv[3])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, help="messages/s (default: 80%% of the peak)")
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--reader-processes", type=int, default=4)
    parser.add_argument("--consumers", type=int, default=8)
    parser.add_argument("--peak-s", type=float, default=20)
    return asyncio.run(soak(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
