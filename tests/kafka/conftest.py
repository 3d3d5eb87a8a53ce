"""Real Kafka clients (kcat, confluent-kafka, aiokafka) against real ``cairn serve`` processes
with the Kafka door on."""

from __future__ import annotations

import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Server, free_port, make_server
from tests.postgres import drop
from tests.postgres import fresh_database as fresh_postgres


@dataclass
class Node:
    """A broker with its Kafka door: ``server`` for HTTP, ``bootstrap`` for Kafka clients."""

    server: Server
    kafka_port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def url(self) -> str:
        return self.server.url

    def http(self, **kwargs: Any) -> httpx.Client:
        return self.server.client(**kwargs)

    def start(self) -> Node:
        self.server.start()
        wait_for_port(self.kafka_port)
        return self

    def stop(self) -> None:
        self.server.stop()


def kafka_node(
    directory: Path, *extra: str, database_url: str | None = None, node_id: int = 0
) -> Node:
    port = free_port()
    server = make_server(
        directory,
        "--kafka-port",
        str(port),
        "--kafka-node-id",
        str(node_id),
        *extra,
        database_url=database_url,
    )
    return Node(server, port)


def wait_for_port(port: int, within: float = 30.0) -> None:
    """Until the Kafka door answers an ApiVersions (it binds once the app has started)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            api_versions(port)
            return
        except OSError:
            time.sleep(0.05)  # polling a readiness condition, with a deadline
    raise RuntimeError(f"nothing answers Kafka on port {port}")


def api_versions(port: int, correlation: int = 7) -> tuple[int, int]:
    """An ApiVersions v0 on a new connection: its correlation id and error code."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        body = struct.pack(">hhih", 18, 0, correlation, 4) + b"test"
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", read_exactly(sock, 4))[0]
        answer = read_exactly(sock, size)
    found, error = struct.unpack_from(">ih", answer)
    return found, error


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    """A broker with its Kafka door, on each store, shared by the modules that need nothing
    else of it (each test makes queues of its own)."""
    url = fresh_postgres() if request.param == "postgres" else None
    running = kafka_node(tmp_path_factory.mktemp("cairn"), database_url=url).start()
    yield running
    running.stop()
    if url is not None:
        drop(url)


@pytest.fixture
def http(node: Node) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=node.url, timeout=30.0) as client:
        yield client


def new_queue(http: httpx.Client, **settings: Any) -> str:
    name = settings.pop("name", None) or f"q-{uuid.uuid4().hex[:12]}"
    response = http.post("/v1/queues", json={"name": name, **settings})
    assert response.status_code == 201, response.text
    return name


@pytest.fixture
def queue(http: httpx.Client) -> str:
    return new_queue(http)


def kcat(node: Node, *args: str, stdin: bytes | None = None, timeout: float = 60.0) -> bytes:
    """Run kcat against the node; its standard output (it must exit 0)."""
    done = subprocess.run(
        ["kcat", "-b", node.bootstrap, "-q", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout
