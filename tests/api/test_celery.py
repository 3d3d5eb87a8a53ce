"""A real Celery worker on the SQS door: kombu's SQS transport (``sqs://`` pointed at Cairn)
runs a few hundred tasks to completion, retries a failing task with a countdown, and after the
worker is killed with -9 in the middle, its unacknowledged tasks are delivered again once their
visibility timeout passes, and every task completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import Server, make_server

TASKS = """
import os
import time

from celery import Celery

app = Celery("tasks", broker=os.environ["BROKER"])
app.conf.update(
    broker_transport_options={
        "region": "us-east-1",
        "visibility_timeout": 4,
        "wait_time_seconds": 1,
        "polling_interval": 0.1,
        "queue_name_prefix": os.environ["PREFIX"],
    },
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)
RESULTS = os.environ["RESULTS"]


def record(line):
    with open(RESULTS, "a") as out:  # one write per line: O_APPEND keeps lines whole
        out.write(line + "\\n")


@app.task
def add(i, j):
    record(f"add {i} {i + j}")


@app.task(bind=True, max_retries=3)
def flaky(self, key):
    marker = RESULTS + "." + key
    if not os.path.exists(marker):
        open(marker, "w").close()
        record(f"flaky {key} failed")
        raise self.retry(countdown=1)
    record(f"flaky {key} done")


@app.task
def slow(i):
    record(f"slow {i} started")
    time.sleep(0.4)
    record(f"slow {i} done")
"""


@pytest.fixture(scope="module")
def cairn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = make_server(tmp_path_factory.mktemp("celery")).start()
    yield running
    running.stop()


class Celery:
    def __init__(self, server: Server, directory: Path) -> None:
        (directory / "tasks.py").write_text(TASKS)
        self.directory = directory
        self.results = directory / "results.txt"
        self.results.touch()
        port = server.url.rsplit(":", 1)[1]
        self.env = {
            **os.environ,
            "BROKER": f"sqs://test:test@127.0.0.1:{port}",
            "PREFIX": f"t{uuid.uuid4().hex[:8]}-",
            "RESULTS": str(self.results),
            "PYTHONPATH": str(directory),
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def send(self, script: str) -> None:
        code = "from tasks import add, flaky, slow\n" + textwrap.dedent(script)
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr

    def worker(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tasks",
                "worker",
                "--pool",
                "solo",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "WARNING",
            ],
            cwd=self.directory,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def lines(self) -> list[str]:
        return self.results.read_text().splitlines()

    def wait_for(self, done: int, prefix: str, within_s: float) -> list[str]:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            found = [line for line in self.lines() if line.startswith(prefix)]
            if len(found) >= done:
                return found
            time.sleep(0.1)  # polling a file the worker writes, with a deadline
        raise AssertionError(f"only {self.lines()} after {within_s} s")


def stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()


def test_a_worker_runs_hundreds_of_tasks_and_a_retry(cairn: Server, tmp_path: Path) -> None:
    celery = Celery(cairn, tmp_path)
    celery.send(
        """
        for i in range(300):
            add.delay(i, 1)
        flaky.delay("k")
        """
    )
    worker = celery.worker()
    try:
        done = celery.wait_for(300, "add ", within_s=180)
        flaky = celery.wait_for(2, "flaky k", within_s=60)
    finally:
        stop(worker)
    assert sorted(done) == sorted(f"add {i} {i + 1}" for i in range(300))
    assert flaky == ["flaky k failed", "flaky k done"]


def test_tasks_of_a_killed_worker_are_delivered_again(cairn: Server, tmp_path: Path) -> None:
    celery = Celery(cairn, tmp_path)
    celery.send(
        """
        for i in range(20):
            slow.delay(i)
        """
    )
    first = celery.worker()
    try:
        celery.wait_for(3, "slow", within_s=60)
    finally:
        stop(first)  # kill -9, mid-task: acks_late leaves its task unacknowledged
    started = {line.split()[1] for line in celery.lines() if line.endswith("started")}
    second = celery.worker()
    try:
        done = celery.wait_for(20, "slow", within_s=120)
        deadline = time.monotonic() + 120
        while len({line.split()[1] for line in celery.lines() if line.endswith("done")}) < 20:
            assert time.monotonic() < deadline, celery.lines()
            time.sleep(0.1)
    finally:
        stop(second)
    completions = Counter(line.split()[1] for line in celery.lines() if line.endswith("done"))
    assert set(completions) == {str(i) for i in range(20)}, done
    # Only a task the killed worker had started can have completed twice.
    twice = {task for task, count in completions.items() if count > 1}
    assert twice <= started
