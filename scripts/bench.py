#!/usr/bin/env python
"""Cairn against the bare-Starlette ceiling, measured in one run on this machine.

  1  durable single-message publish, 64 connections, 1 and 2 workers: ratio to the baseline
  2  durable batched publish (100 messages per request): messages/s
  3  receive + batch-ack cycle (max_messages 10): messages/s, ratio to the publish rate of 1
  4  with --redis-url: the Redis Streams projector's lag while 1 runs

The baseline (scripts/baseline_app.py) is the same publish route with nothing behind it, run
by the same uvicorn with the same settings. Runs alternate baseline, Cairn, baseline, Cairn.
Load comes from wrk. Afterwards the log is counted: every publish wrk saw answered 201 must be
stored, and at most one in flight per connection may be stored without an answer.

  P1-P4  publish (1 node, 2 nodes of one broker), batch, receive + ack on PostgreSQL

Usage: scripts/bench.py [--seconds 5] [--rounds 2] [--connections 64]
                        [--only sqlite,redis,postgres] [--postgres ADMIN_URL]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "scripts" / "wrk"
PYTHON = sys.executable
BODY = {"body": {"order": 12345, "items": ["a", "b", "c"]}, "attributes": {"source": "bench"}}


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is not installed; installing it from Debian's packages ...", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("could not install wrk")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    database: Path | None
    database_url: str | None = None


def _wait(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise SystemExit("server did not start")


@contextlib.contextmanager
def _running(args: list[str], database: Path | None = None, **popen: Any) -> Iterator[Server]:
    """Start a server process (its port is the value after ``--port`` in ``args``), wait
    until it answers, and stop it afterwards."""
    port = args[args.index("--port") + 1]
    process = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen
    )
    server = Server(process, f"http://127.0.0.1:{port}", database)
    try:
        _wait(server.url, process)
        yield server
    finally:
        _stop(process)


@contextlib.contextmanager
def baseline(workers: int, app: str = "scripts.baseline_app:app") -> Iterator[Server]:
    args = [
        PYTHON,
        "-m",
        "uvicorn",
        app,
        "--port",
        str(free_port()),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    with _running(args) as server:
        yield server


@contextlib.contextmanager
def cairn(
    workers: int,
    *extra: str,
    database_url: str | None = None,
    settings: dict[str, str] | None = None,
) -> Iterator[Server]:
    """``cairn serve`` on a fresh SQLite store, or on ``database_url`` (PostgreSQL; several
    launches on one URL are the nodes of one broker). ``settings``: ``CAIRN_*`` variables for
    it (the caller's own are not passed on)."""
    directory = Path(tempfile.mkdtemp(prefix="cairn-bench-"))
    database = directory / "bench.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env.update(settings or {})
    args = [
        PYTHON,
        "-m",
        "api.cli",
        "serve",
        "--port",
        str(free_port()),
        "--workers",
        str(workers),
        "--database-url",
        database_url or f"sqlite:///{database}",
        "--log-file",
        str(directory / "cairn.log"),
        *extra,
    ]
    try:
        with _running(args, None if database_url else database, env=env) as server:
            server.database_url = database_url
            created = httpx.post(f"{server.url}/v1/queues", json={"name": "bench"})
            if created.status_code != 409:  # a second node of the same broker finds it there
                created.raise_for_status()
            yield server
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server of ``admin_url``, dropped afterwards."""
    import psycopg

    name = f"cairn_bench_{os.urandom(4).hex()}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Run:
    requests: int
    per_s: float
    errors: int
    p50_ms: float
    p99_ms: float
    extra: dict[str, float]


def wrk(
    url: str, script: str, seconds: float, connections: int, env: dict[str, str] | None = None
) -> Run:
    result = subprocess.run(
        [
            ensure_wrk(),
            "-t2",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "--latency",
            "-s",
            str(LUA / script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "CAIRN_WRK_DIR": str(LUA), **(env or {})},
    )
    out = result.stdout
    requests = int(_found(r"(\d+) requests in", out))
    per_s = float(_found(r"Requests/sec:\s+([\d.]+)", out))
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    p50 = _latency(out, "50%")
    p99 = _latency(out, "99%")
    extra = {k: float(v) for k, v in re.findall(r"^CAIRN (\w+) ([\d.]+)$", out, re.M)}
    return Run(requests, per_s, errors, p50, p99, extra)


def _found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise SystemExit(f"wrk printed no {pattern!r}:\n{text}")
    return match.group(1)


def _latency(out: str, percentile: str) -> float:
    match = re.search(rf"^\s+{re.escape(percentile)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


_COUNT_PUBLISHED = (
    "SELECT COUNT(*) FROM events WHERE type = 'message.published' AND queue = 'bench'"
)


def stored_publishes(server: Server) -> int:
    if server.database_url is not None:
        import psycopg

        with psycopg.connect(server.database_url) as pg:
            found = pg.execute(_COUNT_PUBLISHED).fetchone()
        return int(found[0]) if found else 0
    assert server.database is not None
    with contextlib.closing(sqlite3.connect(server.database)) as conn:
        row = conn.execute(_COUNT_PUBLISHED).fetchone()
    return int(row[0])


def check_stored(server: Server, answered: int, connections: int, per_request: int) -> str:
    stored = stored_publishes(server)
    slack = connections * per_request
    if not answered * per_request <= stored <= answered * per_request + slack:
        raise SystemExit(
            f"LOST OR INVENTED WRITES: {answered * per_request} answered, {stored} stored"
        )
    return f"stored {stored:,} >= answered {answered * per_request:,}"


def watch_lag(url: str, stop: threading.Event, lags: list[int]) -> None:
    with httpx.Client(base_url=url, timeout=5) as client:
        while not stop.is_set():
            projections = client.get("/v1/projections").json()
            lags.append({p["name"]: p["lag"] for p in projections["projections"]}.get("redis", -1))
            stop.wait(0.2)


def postgres_rows(
    admin_url: str, seconds: int, connections: int, publish_path: str
) -> list[tuple[str, str, str, str, str]]:
    """Targets 1 to 3 again with the store on PostgreSQL, on one node and on two nodes of one
    broker (two ``cairn serve`` on one database, each loaded by half of the connections)."""
    rows: list[tuple[str, str, str, str, str]] = []
    with postgres_database(admin_url) as url, cairn(1, database_url=url) as node:
        one = wrk(node.url + publish_path, "publish.lua", seconds, connections)
        check = check_stored(node, one.requests - one.errors, connections, 1)
        rows.append(
            (
                "P1. publish on PostgreSQL, 1 node",
                f"{one.per_s:,.0f} req/s (p50 {one.p50_ms:.1f} ms, p99 {one.p99_ms:.1f} ms)",
                "",
                "",
                check,
            )
        )
        print(*rows[-1], sep=" | ", flush=True)
    with (
        postgres_database(admin_url) as url,
        cairn(1, database_url=url) as a,
        cairn(1, database_url=url) as b,
    ):
        runs: list[Run] = []
        loads = [
            threading.Thread(
                target=lambda n=n: runs.append(
                    wrk(n.url + publish_path, "publish.lua", seconds, connections // 2)
                )
            )
            for n in (a, b)
        ]
        for load in loads:
            load.start()
        for load in loads:
            load.join()
        answered = sum(r.requests - r.errors for r in runs)
        check = check_stored(a, answered, connections, 1)
        rate = sum(r.per_s for r in runs)
        rows.append(
            (
                "P2. publish on PostgreSQL, 2 nodes",
                f"{rate:,.0f} req/s (p99 {max(r.p99_ms for r in runs):.1f} ms)",
                f"1 node {one.per_s:,.0f} req/s",
                f"{rate / one.per_s:.2f}x",
                check,
            )
        )
        print(*rows[-1], sep=" | ", flush=True)
    with postgres_database(admin_url) as url, cairn(1, database_url=url) as node:
        batch = wrk(node.url + publish_path + "/batch", "batch.lua", seconds, connections)
        check = check_stored(node, batch.requests - batch.errors, connections, 100)
        cycle = wrk(node.url + "/v1/queues/bench/receive", "consume.lua", seconds, connections)
        rows.append(
            ("P3. batch publish on PostgreSQL", f"{100 * batch.per_s:,.0f} msg/s", "", "", check)
        )
        print(*rows[-1], sep=" | ", flush=True)
        acked = cycle.extra.get("acked", 0.0) / seconds
        rows.append(("P4. receive + ack on PostgreSQL", f"{acked:,.0f} msg/s", "", "", ""))
        print(*rows[-1], sep=" | ", flush=True)
    return rows


def sqlite_rows(
    seconds: int, rounds: int, c: int, publish_path: str
) -> list[tuple[str, str, str, str, str]]:
    """Targets 1 to 3 on the embedded SQLite store, against the bare-Starlette baseline."""
    rows: list[tuple[str, str, str, str, str]] = []
    publish_rate: dict[int, float] = {}
    for workers in (1, 2):
        base_runs, cairn_runs = [], []
        for _ in range(rounds):
            with baseline(workers) as b:
                base_runs.append(wrk(b.url + publish_path, "publish.lua", seconds, c))
            with cairn(workers) as s:
                run = wrk(s.url + publish_path, "publish.lua", seconds, c)
                check = check_stored(s, run.requests - run.errors, c, 1)
                if run.errors:
                    raise SystemExit(f"{run.errors} publishes failed")
                cairn_runs.append(run)
        b_rate = statistics.mean(r.per_s for r in base_runs)
        s_rate = statistics.mean(r.per_s for r in cairn_runs)
        publish_rate[workers] = s_rate
        p50 = statistics.mean(r.p50_ms for r in cairn_runs)
        p99 = statistics.mean(r.p99_ms for r in cairn_runs)
        rows.append(
            (
                f"1. publish, {workers} worker{'s' * (workers > 1)}",
                f"{s_rate:,.0f} req/s (p50 {p50:.1f} ms, p99 {p99:.1f} ms)",
                f"{b_rate:,.0f} req/s",
                f"{s_rate / b_rate:.2f}x",
                f">= 0.5x  {check}",
            )
        )
        print(*rows[-1], sep=" | ", flush=True)

    batch_base, batch_cairn = [], []
    for _ in range(rounds):
        with baseline(1) as b:
            batch_base.append(wrk(b.url + publish_path + "/batch", "batch.lua", seconds, c))
        with cairn(1) as s:
            run = wrk(s.url + publish_path + "/batch", "batch.lua", seconds, c)
            check = check_stored(s, run.requests - run.errors, c, 100)
            batch_cairn.append(run)
            # 3: consume what was just published, with receive + batch ack.
            cycle = wrk(s.url + "/v1/queues/bench/receive", "consume.lua", seconds, c)
    b_rate = 100 * statistics.mean(r.per_s for r in batch_base)
    s_rate = 100 * statistics.mean(r.per_s for r in batch_cairn)
    rows.append(
        (
            "2. batch publish (100/request)",
            f"{s_rate:,.0f} msg/s",
            f"{b_rate:,.0f} msg/s",
            f"{s_rate / b_rate:.2f}x",
            f">= 50,000 msg/s  {check}",
        )
    )
    print(*rows[-1], sep=" | ", flush=True)
    acked = cycle.extra.get("acked", 0.0) / seconds
    rows.append(
        (
            "3. receive + ack (max 10)",
            f"{acked:,.0f} msg/s",
            f"publish {publish_rate[1]:,.0f}/s",
            f"{acked / publish_rate[1]:.2f}x",
            ">= 0.5x the publish rate",
        )
    )
    print(*rows[-1], sep=" | ", flush=True)

    return rows


def redis_row(
    redis_url: str, seconds: int, c: int, publish_path: str
) -> tuple[str, str, str, str, str]:
    """Target 4: publishing with the Redis Streams projector on; its lag must stay bounded."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    with cairn(1, "--redis-url", redis_url) as s:
        stop, lags = threading.Event(), []
        watcher = threading.Thread(target=watch_lag, args=(s.url, stop, lags))
        watcher.start()
        run = wrk(s.url + publish_path, "publish.lua", seconds, c)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not lags or lags[-1] != 0):
            time.sleep(0.1)
        stop.set()
        watcher.join()
    row = (
        "4. publish with Redis Streams",
        f"{run.per_s:,.0f} req/s",
        f"max lag {max(lags):,} events",
        f"final lag {lags[-1]}",
        "lag stays bounded",
    )
    print(*row, sep=" | ", flush=True)
    return row


def sqs_rows(
    seconds: int, rounds: int, c: int, publish_path: str
) -> list[tuple[str, str, str, str, str]]:
    """The SQS door in both protocols (JSON 1.0, query) against the native routes, same
    messages, same server, same run."""
    runs: dict[str, list[Run]] = {
        k: [] for k in ("native", "sqs", "query", "native10", "sqs10", "query10")
    }
    for _ in range(rounds):
        with cairn(1) as s:
            runs["native"].append(wrk(s.url + publish_path, "publish.lua", seconds, c))
            runs["sqs"].append(wrk(s.url + "/", "sqs_send.lua", seconds, c))
            runs["query"].append(wrk(s.url + "/", "sqs_query_send.lua", seconds, c))
            runs["native10"].append(wrk(s.url + publish_path + "/batch", "batch10.lua", seconds, c))
            runs["sqs10"].append(wrk(s.url + "/", "sqs_batch.lua", seconds, c))
            runs["query10"].append(wrk(s.url + "/", "sqs_query_batch.lua", seconds, c))
            answered = sum(
                r.requests - r.errors for k in ("native", "sqs", "query") for r in runs[k][-1:]
            )
            answered += 10 * sum(
                r.requests - r.errors
                for k in ("native10", "sqs10", "query10")
                for r in runs[k][-1:]
            )
            # Slack: what the last requests of each run (c each; 10 messages a batch) stored
            # after wrk stopped counting.
            check = check_stored(s, answered, 33 * c, 1)
        if any(r.errors for rs in runs.values() for r in rs[-1:]):
            raise SystemExit("some SQS or native publishes failed")
    rate = {k: statistics.mean(r.per_s for r in v) for k, v in runs.items()}
    p99 = statistics.mean(r.p99_ms for r in runs["sqs"])
    query_p99 = statistics.mean(r.p99_ms for r in runs["query"])
    rows = [
        (
            "S1. SendMessage vs native publish",
            f"{rate['sqs']:,.0f} req/s (p99 {p99:.1f} ms)",
            f"{rate['native']:,.0f} req/s",
            f"{rate['sqs'] / rate['native']:.2f}x",
            f">= 0.85x  {check}",
        ),
        (
            "S2. SendMessageBatch (10) vs native batch (10)",
            f"{10 * rate['sqs10']:,.0f} msg/s",
            f"{10 * rate['native10']:,.0f} msg/s",
            f"{rate['sqs10'] / rate['native10']:.2f}x",
            ">= 0.85x",
        ),
        (
            "S3. SendMessage (query protocol) vs native publish",
            f"{rate['query']:,.0f} req/s (p99 {query_p99:.1f} ms)",
            f"{rate['native']:,.0f} req/s",
            f"{rate['query'] / rate['native']:.2f}x",
            ">= 0.85x",
        ),
        (
            "S4. SendMessageBatch (10, query protocol) vs native batch (10)",
            f"{10 * rate['query10']:,.0f} msg/s",
            f"{10 * rate['native10']:,.0f} msg/s",
            f"{rate['query10'] / rate['native10']:.2f}x",
            ">= 0.85x",
        ),
    ]
    for row in rows:
        print(*row, sep=" | ", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL server to create the benchmark's databases on (its admin URL)",
    )
    parser.add_argument(
        "--only",
        default="sqlite,sqs,redis,postgres",
        help="sections: sqlite, sqs, redis, postgres",
    )
    args = parser.parse_args()
    ensure_wrk()
    c = args.connections
    publish_path = "/v1/queues/bench/messages"
    rows: list[tuple[str, str, str, str, str]] = []

    sections = args.only.split(",")
    if "sqlite" in sections:
        rows += sqlite_rows(args.seconds, args.rounds, c, publish_path)
    if "sqs" in sections:
        rows += sqs_rows(args.seconds, args.rounds, c, publish_path)
    if "postgres" in sections:
        rows += postgres_rows(args.postgres, args.seconds, c, publish_path)

    if "redis" in sections:
        rows.append(redis_row(args.redis_url, args.seconds, c, publish_path))

    print("\n| target | Cairn | baseline / reference | ratio | goal |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(json.dumps({"machine": os.cpu_count(), "seconds": args.seconds, "rounds": args.rounds}))


if __name__ == "__main__":
    main()
