#!/usr/bin/env python
"""What an automatic backup costs publishes: ``cairn serve --backup-dir … --backup-every …`` on a
store filled with ``--fill`` messages, while ``--publishers`` closed-loop publishers send single
durable publishes for ``--seconds``. The head moves all the time, so a backup starts every
interval; the server's log says when each ran (``backup_taken``: its end and its seconds). Each
publish is put on one side by its own start and end: it overlapped a backup, or it did not.
Both sides come from the same run on the same store, so the comparison has its baseline built
in; the script prints p50/p99 of each side and their ratio (the contract: p99 within 20%).

Usage: scripts/bench_backup.py [--fill 300000] [--seconds 30] [--publishers 8]
                               [--every 3s] [--postgres ADMIN_URL]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.bench import BODY, Server, cairn, postgres_database  # the same server launcher


def fill(url: str, messages: int) -> None:
    """``messages`` publishes in batches of 100, from 4 clients."""
    batch = {"messages": [BODY] * 100}

    def send(share: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            for _ in range(share):
                client.post("/v1/queues/bench/messages/batch", json=batch).raise_for_status()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(send, [messages // 400] * 4))


def publish(url: str, seconds: float, publishers: int) -> list[tuple[float, float]]:
    """(start, end) wall-clock times of every publish answered 201."""
    stop = time.time() + seconds
    done: list[tuple[float, float]] = []
    lock = threading.Lock()

    def publisher() -> None:
        mine = []
        with httpx.Client(base_url=url, timeout=60) as client:
            while time.time() < stop:
                started = time.time()
                answer = client.post("/v1/queues/bench/messages", json=BODY)
                if answer.status_code != 201:
                    raise SystemExit(f"a publish answered {answer.status_code}: {answer.text}")
                mine.append((started, time.time()))
        with lock:
            done.extend(mine)

    threads = [threading.Thread(target=publisher) for _ in range(publishers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done


def backups_run(log: Path) -> list[tuple[float, float, int]]:
    """(start, end, bytes) of every backup the server's log reports taken."""
    spans = []
    for line in log.read_text().splitlines():
        if '"backup_taken"' not in line:
            continue
        entry = json.loads(line)
        end = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
        spans.append((end - entry["seconds"], end, entry["bytes"]))
    return spans


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else 0.0


def log_file(running: Server) -> Path:
    given = running.process.args
    assert isinstance(given, list)
    return Path(given[given.index("--log-file") + 1])


@contextlib.contextmanager
def server(args: argparse.Namespace, folder: Path) -> Iterator[Server]:
    flags = ("--backup-dir", str(folder), "--backup-every", args.every, "--backup-keep", "2")
    with contextlib.ExitStack() as stack:
        url = (
            None if args.postgres is None else stack.enter_context(postgres_database(args.postgres))
        )
        yield stack.enter_context(cairn(1, *flags, database_url=url))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fill", type=int, default=300_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--publishers", type=int, default=8)
    parser.add_argument("--every", default="3s")
    parser.add_argument("--postgres", help="admin URL: run on a new PostgreSQL database")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cairn-bench-backups-"))
    try:
        with server(args, folder) as running:
            started = time.monotonic()
            fill(running.url, args.fill)
            print(f"filled {args.fill:,} messages in {time.monotonic() - started:.1f} s")
            done = publish(running.url, args.seconds, args.publishers)
            spans = [s for s in backups_run(log_file(running)) if s[1] >= done[0][0]]
            if running.database_url is not None:
                import psycopg

                with psycopg.connect(running.database_url) as pg:
                    row = pg.execute("SELECT pg_database_size(current_database())").fetchone()
                    print(f"the database: {row[0] / 2**20 if row else 0:,.0f} MiB")
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    def overlaps(start: float, end: float) -> bool:
        return any(start < b_end and end > b_start for b_start, b_end, _ in spans)

    during = [(e - s) * 1000 for s, e in done if overlaps(s, e)]
    outside = [(e - s) * 1000 for s, e in done if not overlaps(s, e)]
    if not spans or not during or not outside:
        raise SystemExit(f"no comparison: {len(spans)} backups, {len(during)} publishes during")
    store = "PostgreSQL" if args.postgres else "SQLite"
    size = statistics.mean(b for _, _, b in spans) / 2**20
    took = statistics.mean(e - s for s, e, _ in spans)
    busy = sum(e - s for s, e, _ in spans) / args.seconds
    print(
        f"{store}: {len(spans)} backups of {size:,.0f} MiB, {took:.2f} s each"
        f" (a backup ran {busy:.0%} of the time); {args.publishers} publishers"
    )
    print("| publishes | count | p50 | p99 |")
    print("|---|---|---|---|")
    for label, values in (("no backup running", outside), ("a backup running", during)):
        print(
            f"| {label} | {len(values):,} | {statistics.median(values):.1f} ms"
            f" | {p(values, 0.99):.1f} ms |"
        )
    print(f"p99 while a backup runs / p99 without: {p(during, 0.99) / p(outside, 0.99):.2f}x")


if __name__ == "__main__":
    main()
