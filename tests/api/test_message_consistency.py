"""A message resource's status and its history describe one position, the one in
``X-Cairn-Position`` (API.md v1.2), however far the read model is behind the log (issue 20:
27 of 40 reads right after an ack showed ``in_flight`` beside a history ending in
``message.acked``)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.api.conftest import Server

LAST_EVENT = {
    "available": "message.published",
    "in_flight": "message.leased",
    "acked": "message.acked",
}


def projector_pid(server: Server) -> int:
    """The projector process ``cairn serve`` started beside its HTTP worker."""
    assert server.process is not None
    pid = server.process.pid
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        if b"api.projector" in Path(f"/proc/{child}/cmdline").read_bytes():
            return int(child)
    raise AssertionError("no projector process")


@contextmanager
def paused(pid: int) -> Iterator[None]:
    """SIGSTOP the process: the read model stays where it is while the log moves on."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def read(http: httpx.Client, path: str, **params: Any) -> tuple[dict[str, Any], int]:
    """A message resource, checked to be one position's: no history item after the position
    it says it reflects, and the status its last history item leaves."""
    response = http.get(path, params=params)
    assert response.status_code == 200, response.text
    message, position = response.json(), int(response.headers["X-Cairn-Position"])
    history = message["history"]
    assert all(item["position"] <= position for item in history), (position, history)
    assert LAST_EVENT[message["status"]] == history[-1]["type"], message
    return message, position


def test_status_and_history_agree_while_the_read_model_is_behind(
    server: Server, http: httpx.Client, queue: str
) -> None:
    published = http.post(f"/v1/queues/{queue}/messages", json={"body": "x"}).json()
    path = f"/v1/queues/{queue}/messages/{published['id']}"
    by_id = f"/v1/messages/{published['id']}"
    [leased] = http.post(f"/v1/queues/{queue}/receive", json={}).json()["messages"]
    head = http.get("/v1/projections").json()["head"]
    message, _ = read(http, path, min_position=head)
    assert message["status"] == "in_flight"

    with paused(projector_pid(server)):
        acked = http.post(f"{path}/ack", json={"receipt": leased["receipt"]})
        assert acked.status_code == 204
        for each in (path, by_id):
            message, position = read(http, each)
            assert message["status"] == "in_flight"  # the read model has not seen the ack
            assert position < int(acked.headers["X-Cairn-Position"])

    for each in (path, by_id):
        message, position = read(http, each, min_position=acked.headers["X-Cairn-Position"])
        assert message["status"] == "acked"


def test_status_and_history_agree_right_after_each_command(http: httpx.Client, queue: str) -> None:
    """The walk-through's last step, in rounds: no pause, whatever the projector's pace."""
    for _ in range(40):
        published = http.post(f"/v1/queues/{queue}/messages", json={"body": "x"}).json()
        path = f"/v1/queues/{queue}/messages/{published['id']}"
        [leased] = http.post(f"/v1/queues/{queue}/receive", json={}).json()["messages"]
        http.post(f"{path}/ack", json={"receipt": leased["receipt"]})
        read(http, path, min_position=published["position"])
        read(http, f"/v1/messages/{published['id']}")
