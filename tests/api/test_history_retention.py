"""``--history-retention`` through real servers (API.md v1.2): a finished message leaves the
read models once it has been finished that long (then `404`), an as-of read from before
``as_of_from`` is a `410` naming it, and what is still live stays whole, on both stores."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import make_server, problem
from tests.postgres import drop
from tests.postgres import fresh_database as fresh_postgres


@pytest.fixture(params=["sqlite", "postgres"])
def http(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[httpx.Client]:
    url = fresh_postgres() if request.param == "postgres" else None
    server = make_server(tmp_path, "--history-retention", "2s", database_url=url).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client
    finally:
        server.stop()
        if url is not None:
            drop(url)


def test_a_finished_message_leaves_after_the_retention_and_the_past_before_it_is_410(
    http: httpx.Client,
) -> None:
    for name in ("orders", "ticks"):
        assert http.post("/v1/queues", json={"name": name}).status_code == 201
    waiting = http.post("/v1/queues/orders/messages", json={"body": "stays"}).json()
    done = http.post("/v1/queues/orders/messages", json={"body": "goes"}).json()
    leased = http.post("/v1/queues/orders/receive", json={"max_messages": 2}).json()["messages"]
    receipt = next(m["receipt"] for m in leased if m["id"] == done["id"])
    acked = http.post(f"/v1/queues/orders/messages/{done['id']}/ack", json={"receipt": receipt})
    assert acked.status_code == 204
    acked_at = int(acked.headers["x-cairn-position"])
    url = f"/v1/queues/orders/messages/{done['id']}"
    assert http.get(url, params={"min_position": acked_at}).json()["status"] == "acked"

    # Time passes only with events: the projector prunes by the time of what it applies.
    deadline = time.monotonic() + 30
    while True:
        tick = http.post("/v1/queues/ticks/messages", json={"body": 1}).json()
        answer = http.get(url, params={"min_position": tick["position"]})
        if answer.status_code == 404:
            break
        assert answer.status_code == 200
        assert time.monotonic() < deadline, "the acked message never left the read models"
        time.sleep(0.2)
    assert problem(answer, 404)["type"].endswith("/message-not-found")

    gone = problem(http.get("/v1/queues/orders", params={"as_of": str(acked_at)}), 410)
    kept_from = gone["as_of_from"]
    assert acked_at < kept_from <= tick["position"]
    then = http.get("/v1/queues/orders", params={"as_of": str(kept_from)})
    assert then.status_code == 200
    assert then.json()["stats"]["acked_total"] == 1  # the totals survive the pruning
    assert then.json()["stats"]["published_total"] == 2
    now = http.get("/v1/queues/orders").json()
    assert now["stats"]["acked_total"] == 1 and now["stats"]["published_total"] == 2

    # The message still in the queue (its lease runs) is whole: status, body and history.
    live = http.get(f"/v1/queues/orders/messages/{waiting['id']}").json()
    assert live["status"] == "in_flight" and live["body"] == "stays"
    assert [h["type"] for h in live["history"]] == ["message.published", "message.leased"]
