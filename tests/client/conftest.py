"""The Python client against real ``cairn serve`` processes (``tests/api/conftest.py`` starts
them), on both stores where the broker's storage is involved."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Unpack

import pytest
from cairn_client import Client, QueueSettings

from tests.api.conftest import Server, make_server

# The brokers of tests/api, on both stores: one per module, SQLite and PostgreSQL.
from tests.api.conftest import server as server


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """For what does not depend on the store: one SQLite broker per module."""
    running = make_server(tmp_path_factory.mktemp("cairn")).start()
    yield running
    running.stop()


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with Client(server.url, retries=2) as running:
        yield running


def new_queue(client: Client, **settings: Unpack[QueueSettings]) -> str:
    name = f"q-{uuid.uuid4().hex[:12]}"
    client.create_queue(name, **settings)
    return name


@pytest.fixture
def queue(client: Client) -> str:
    return new_queue(client)
