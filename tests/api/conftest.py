"""Real servers for end-to-end tests: ``cairn serve`` in its own process, over real HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.postgres import drop
from tests.postgres import fresh_database as fresh_postgres


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    database: Path
    log: Path
    args: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        return self.args[self.args.index("--database-url") + 1]

    def start(self, ready_within: float = 30.0) -> Server:
        self.process = subprocess.Popen(
            self.args, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + ready_within
        with httpx.Client(base_url=self.url, timeout=1.0) as probe:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    stderr = self.process.stderr.read().decode() if self.process.stderr else ""
                    raise RuntimeError(f"cairn exited with {self.process.returncode}: {stderr}")
                try:
                    if probe.get("/readyz").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.05)  # polling a readiness condition, with a deadline
        self.stop()
        raise RuntimeError("cairn did not become ready in time")

    def client(self, **kwargs: Any) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=30.0, **kwargs)
        self.clients.append(client)
        return client

    def stop(self, sig: int = signal.SIGTERM, within: float = 15.0) -> int:
        for client in self.clients:
            client.close()
        self.clients.clear()
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(within)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None
        return code

    def kill(self) -> None:
        """kill -9: no shutdown of any kind."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None


def make_server(
    directory: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    database_url: str | None = None,
) -> Server:
    """``cairn serve`` on a SQLite store in ``directory``, or on ``database_url``."""
    port = free_port()
    database = directory / "cairn.db"
    log = directory / "cairn.log"
    args = [
        sys.executable,
        "-m",
        "api.cli",
        "serve",
        "--port",
        str(port),
        "--database-url",
        database_url or f"sqlite:///{database}",
        "--log-file",
        str(log),
        *extra,
    ]
    environment = (
        {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
        | {"CAIRN_READ_WAIT_S": "2"}
        | (env or {})
    )
    return Server(f"http://127.0.0.1:{port}", database, log, args, environment)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A broker for a module's tests: on the embedded SQLite store, and again on PostgreSQL
    (a database of its own), so every test that takes it runs against both stores."""
    url = fresh_postgres() if request.param == "postgres" else None
    running = make_server(tmp_path_factory.mktemp("cairn"), database_url=url).start()
    yield running
    running.stop()
    if url is not None:
        drop(url)


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        yield client


@pytest.fixture
def queue(http: httpx.Client) -> str:
    """A fresh queue for one test."""
    name = f"q-{uuid.uuid4().hex[:12]}"
    assert http.post("/v1/queues", json={"name": name}).status_code == 201
    return name


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert ``response`` is a problem+json with ``status``; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"] and body["type"]
    return body
