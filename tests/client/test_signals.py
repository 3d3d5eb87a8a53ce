"""SIGTERM and SIGINT stop a consumer running in a process's main thread cleanly: running
handlers finish and settle their messages, no receive starts after the signal, nothing is
lost, and the process exits 0."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from cairn_client import Client

from tests.api.conftest import Server
from tests.client.conftest import new_queue

SCRIPT = Path(__file__).with_name("consumer_script.py")


@pytest.mark.parametrize(("mode", "sig"), [("sync", signal.SIGTERM), ("async", signal.SIGINT)])
def test_a_signal_stops_the_consumer_after_its_running_handlers(
    sqlite_server: Server, mode: str, sig: signal.Signals
) -> None:
    with Client(sqlite_server.url) as client:
        queue = new_queue(client)
        published = [p.id for p in client.publish_batch(queue, [{"body": n} for n in range(6)])]
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), sqlite_server.url, queue, mode, "1.5"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        try:
            lines: list[str] = []
            while sum(line.startswith("started") for line in lines) < 2:
                line = process.stdout.readline()
                assert line, f"the consumer exited early: {lines}"
                lines.append(line)
            process.send_signal(sig)  # both handlers are running
            out, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == 0
        said = [line.split() for line in [*lines, *out.splitlines()]]
        started = [m for what, m in said if what == "started"]
        assert len(started) == 2 and set(started) <= set(published)
        assert sorted(m for what, m in said if what == "finished") == sorted(started)
        assert said[-1][0] == "stopped"
        events = client.events(after=0, queue=queue, types=["message.*"])
        kinds = Counter(e.type for e in events.events)
        assert kinds["message.leased"] == 2  # no receive after the signal
        assert kinds["message.acked"] == 2 and kinds["message.nacked"] == 0
        stats = client.get_queue(queue, min_position=events.next_after).stats
        assert (stats.available, stats.in_flight, stats.acked_total) == (4, 0, 2)
