"""The read side through real processes (issue 20): a queue deleted and restored no longer breaks
rebuilds or the running server's projector, a backup restored without its read models comes
back whole, and a projection that cannot apply an event makes ``/readyz`` say which and where,
on every process, until it can again."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from projections.failures import STUCK_AFTER_S
from projections.models import views_file
from tests.api.conftest import Server, make_server
from tests.api.test_cli import cairn
from tests.postgres import drop
from tests.postgres import fresh_database as fresh_postgres

QUEUE = "orders-restored"


@pytest.fixture(params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """A broker of its own for each test (they damage and rebuild its read models), on both
    stores; its projector runs in a process of its own, as ``cairn serve`` starts it."""
    url = fresh_postgres() if request.param == "postgres" else None
    server = make_server(tmp_path, database_url=url).start()
    yield server
    server.stop()
    if url is not None:
        drop(url)


def on_read_models(server: Server, statement: str) -> None:
    """Run ``statement`` on the server's read models, as an operator's hand would."""
    if server.database_url.startswith("postgresql://"):
        with psycopg.connect(server.database_url, autocommit=True) as conn:
            conn.execute(statement.encode())
        return
    with contextlib.closing(sqlite3.connect(views_file(str(server.database)), timeout=10)) as db:
        db.execute(statement)
        db.commit()


def rebuild_views(server: Server) -> None:
    result = cairn("projections", "rebuild", "views", "--database-url", server.database_url)
    assert result.returncode == 0, result.stderr
    # Each batch applied as it came, not only once split into smaller ones.
    assert "projection_batch_split" not in result.stdout + result.stderr


def names(client: httpx.Client, head: int) -> list[str]:
    listed = client.get("/v1/queues", params={"min_position": head})
    assert listed.status_code == 200, listed.text
    return [queue["name"] for queue in listed.json()["queues"]]


def readyz_until(client: httpx.Client, status: int, within: float) -> httpx.Response:
    deadline = time.monotonic() + within
    while (ready := client.get("/readyz")).status_code != status:
        assert time.monotonic() < deadline, f"/readyz not {status} within {within} s: {ready.text}"
        time.sleep(0.2)  # polling the probe, with a deadline
    return ready


def projector_log(server: Server, event: str) -> list[dict[str, Any]]:
    path = server.log.with_name("cairn.projector.log")
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if f'"event":"{event}"' in line]


def test_a_queue_deleted_and_restored_is_rebuilt_and_followed_by_the_running_server(
    served: Server,
) -> None:
    client = served.client()
    assert client.post("/v1/queues", json={"name": QUEUE}).status_code == 201
    assert client.delete(f"/v1/queues/{QUEUE}").status_code == 204
    assert client.post(f"/v1/queues/{QUEUE}/restore").status_code == 200
    published = client.post(f"/v1/queues/{QUEUE}/messages", json={"body": 1})
    assert published.status_code == 201
    assert names(client, published.json()["position"]) == [QUEUE]

    rebuild_views(served)  # one batch from the start: the delete and the restore together
    # The running server's projector follows the rebuilt checkpoint and keeps up.
    later = client.post(f"/v1/queues/{QUEUE}/messages", json={"body": 2}).json()["position"]
    assert names(client, later) == [QUEUE]
    queue = client.get(f"/v1/queues/{QUEUE}", params={"min_position": later}).json()
    assert queue["stats"]["published_total"] == queue["stats"]["available"] == 2
    assert client.get("/readyz").status_code == 200
    assert projector_log(served, "projection_failing") == []
    assert projector_log(served, "projection_batch_split") == []


def test_a_backup_restored_without_its_read_models_rebuilds_them(tmp_path: Path) -> None:
    (tmp_path / "live").mkdir()
    live = make_server(tmp_path / "live").start()
    backup = tmp_path / "backups" / "cairn.db"
    try:
        client = live.client()
        client.post("/v1/queues", json={"name": QUEUE})
        client.delete(f"/v1/queues/{QUEUE}")
        client.post(f"/v1/queues/{QUEUE}/restore")
        message = client.post(f"/v1/queues/{QUEUE}/messages", json={"body": 1}).json()
        result = cairn("backup", str(backup), "--database-url", live.database_url)
        assert result.returncode == 0, result.stderr
    finally:
        live.stop()
    Path(views_file(str(backup))).unlink()  # a backup copied without its read models

    target = tmp_path / "restored"
    target.mkdir()
    result = cairn("restore", str(backup), "--database-url", f"sqlite:///{target / 'cairn.db'}")
    assert result.returncode == 0, result.stderr
    restored = make_server(target).start()
    try:
        client = restored.client()
        assert names(client, message["position"]) == [QUEUE]
        got = client.get(f"/v1/queues/{QUEUE}/messages/{message['id']}")
        assert got.json()["status"] == "available"
        assert client.get("/readyz").status_code == 200
        assert projector_log(restored, "projection_batch_split") == []
    finally:
        restored.stop()


def test_readyz_names_a_stuck_projection_until_it_moves_again(served: Server) -> None:
    client = served.client()
    client.post("/v1/queues", json={"name": QUEUE})
    first = client.post(f"/v1/queues/{QUEUE}/messages", json={"body": 1}).json()["position"]
    assert names(client, first) == [QUEUE]
    assert client.get("/readyz").json()["checks"]["projections"] == "ok"

    # A read-model row lost by hand: the views projector cannot apply the queue's next event.
    on_read_models(served, f"DELETE FROM queue_views WHERE name = '{QUEUE}'")
    stuck_at = client.post(f"/v1/queues/{QUEUE}/messages", json={"body": 2}).json()["position"]
    published = time.monotonic()
    ready = readyz_until(client, 503, within=STUCK_AFTER_S + 20)
    assert time.monotonic() - published > STUCK_AFTER_S  # failing, but not for 10 s: ready
    assert ready.json()["status"] == "unavailable"
    checks = ready.json()["checks"]
    assert checks["store"] == "ok"
    assert re.fullmatch(rf"views stuck at position {stuck_at} for \d+ s", checks["projections"])
    assert QUEUE not in ready.text  # /readyz is open to anyone: no queue names
    # The other projections go on; the views one applied everything before the event.
    positions = {
        p["name"]: p["position"] for p in client.get("/v1/projections").json()["projections"]
    }
    assert positions == {"views": stuck_at - 1, "analytics": stuck_at}

    # Logged once (with the error), not once per retry.
    [failing] = projector_log(served, "projection_failing")
    assert failing["projection"] == "views" and failing["position"] == stuck_at
    assert "LookupError" in failing["error"] and QUEUE in failing["error"]

    rebuild_views(served)  # the operator's fix: the read model from the log again
    readyz_until(client, 200, within=10)
    queue = client.get(f"/v1/queues/{QUEUE}", params={"min_position": stuck_at}).json()
    assert queue["stats"]["published_total"] == 2
    assert client.get("/readyz").json()["checks"]["projections"] == "ok"
    deadline = time.monotonic() + 5
    while not projector_log(served, "projection_recovered"):
        assert time.monotonic() < deadline, "no projection_recovered in the projector's log"
        time.sleep(0.1)  # polling the log file, with a deadline
