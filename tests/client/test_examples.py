"""The examples run as written against a real broker (``CAIRN_URL``), and stop cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from cairn_client import Client

from tests.api.conftest import Server

EXAMPLES = Path(__file__).parents[2] / "examples"


def run_until(
    server: Server, args: list[str], done: Callable[[list[str]], bool], sig: signal.Signals
) -> tuple[int, list[str]]:
    """Run an example until ``done(its output lines)``, then send it ``sig``."""
    process = subprocess.Popen(
        [sys.executable, *args],
        env=os.environ | {"CAIRN_URL": server.url},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        while not done(lines):
            line = process.stdout.readline()
            assert line, f"the example exited early: {lines}"
            lines.append(line.strip())
        process.send_signal(sig)
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, lines + out.splitlines()


@pytest.mark.parametrize(
    ("example", "sig"), [("worker.py", signal.SIGTERM), ("async_worker.py", signal.SIGINT)]
)
def test_the_workers_handle_orders_and_stop_cleanly(
    sqlite_server: Server, example: str, sig: signal.Signals
) -> None:
    queue = f"orders-{uuid.uuid4().hex[:8]}"
    with Client(sqlite_server.url) as client:
        client.create_queue(queue)
        for n in range(3):
            client.publish(queue, {"order": n})

        def handled(lines: list[str]) -> bool:
            return sum(" handled " in line for line in lines) == 3

        code, lines = run_until(sqlite_server, [str(EXAMPLES / example), queue], handled, sig)
        assert code == 0 and lines[-1].endswith(" worker stopped")
        last = client.events(after=0, queue=queue).next_after
        stats = client.get_queue(queue, min_position=last).stats
        assert (stats.acked_total, stats.available, stats.in_flight) == (3, 0, 0)


def test_the_feed_follower_prints_every_event(sqlite_server: Server) -> None:
    queue = f"orders-{uuid.uuid4().hex[:8]}"
    with Client(sqlite_server.url) as client:
        client.create_queue(queue)
        published = [client.publish(queue, n) for n in range(3)]
    code, lines = run_until(
        sqlite_server,
        [str(EXAMPLES / "follow_feed.py"), queue, "--after", "0"],
        lambda lines: len(lines) == 4,
        signal.SIGINT,
    )
    assert code == 0
    assert [line.split()[1] for line in lines] == ["queue.created"] + ["message.published"] * 3
    assert [line.split()[3] for line in lines[1:]] == [p.id for p in published]
