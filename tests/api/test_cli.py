"""``cairn serve`` as an operator runs it: configuration, environment, shutdown, log files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import free_port, make_server


def cairn(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment | (env or {}),
    )


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--port", "70000"], {}, "--port"),
        (["--database-url", "mysql://x"], {}, "--database-url"),
        ([], {"CAIRN_PORT": "eighty"}, "--port"),
        ([], {"CAIRN_WORKERS": "0"}, "--workers"),
    ],
)
def test_bad_configuration_exits_non_zero_with_one_line(
    args: list[str], env: dict[str, str], says: str
) -> None:
    result = cairn("serve", *args, env=env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in result.stderr


def test_an_unusable_store_exits_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = cairn("serve", "--database-url", f"sqlite:///{blocker}/cairn.db")
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1


def test_options_come_from_the_environment_and_flags_win(tmp_path: Path) -> None:
    port = free_port()
    server = make_server(
        tmp_path, env={"CAIRN_PORT": "1", "CAIRN_DURABILITY": "normal", "CAIRN_LOG_LEVEL": "debug"}
    )
    server.args[server.args.index("--port") + 1] = str(port)  # the flag beats CAIRN_PORT
    server.url = f"http://127.0.0.1:{port}"
    server.start()
    try:
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        assert "durability" in server.log.read_text()
        assert '"durability":"normal"' in server.log.read_text()
    finally:
        server.stop()


def test_sigterm_answers_a_waiting_long_poll_and_stops_cleanly(tmp_path: Path) -> None:
    server = make_server(tmp_path).start()
    client = server.client()
    client.post("/v1/queues", json={"name": "q"})
    answer: dict[str, object] = {}

    def poll() -> None:
        answer["response"] = httpx.post(
            f"{server.url}/v1/queues/q/receive", json={"wait_s": 20}, timeout=30
        )

    poller = threading.Thread(target=poll)
    poller.start()
    deadline = time.monotonic() + 10
    while "cairn_receive_long_polls_waiting 1.0" not in client.get("/metrics").text:
        assert time.monotonic() < deadline
    started = time.monotonic()
    code = server.stop(signal.SIGTERM)
    poller.join(15)
    assert code == 0
    assert time.monotonic() - started < 10
    response = answer["response"]
    assert isinstance(response, httpx.Response)
    assert response.status_code == 200 and response.json() == {"messages": []}
    assert '"event":"broker_stopped"' in server.log.read_text()


def test_the_log_file_rotates_by_size(tmp_path: Path) -> None:
    server = make_server(
        tmp_path, env={"CAIRN_LOG_FILE_MAX_BYTES": "4000", "CAIRN_LOG_FILE_BACKUPS": "2"}
    ).start()
    try:
        with httpx.Client(base_url=server.url) as client:
            for _ in range(100):
                client.get("/healthz")
    finally:
        server.stop()
    rotated = sorted(p.name for p in tmp_path.glob("cairn.log*"))
    assert rotated == ["cairn.log", "cairn.log.1", "cairn.log.2"]
    assert all(p.stat().st_size <= 4000 for p in tmp_path.glob("cairn.log*"))


def _read_models(client: httpx.Client, head: int) -> dict[str, object]:
    queues = client.get("/v1/queues", params={"min_position": head}).json()["queues"]
    for queue in queues:
        queue["stats"].pop("oldest_available_age_s")  # depends on when it is read
    messages = {
        q["name"]: client.get(f"/v1/queues/{q['name']}/messages", params={"limit": 500}).json()
        for q in queues
    }
    return {"queues": queues, "messages": messages}


def test_rebuild_while_serving_gives_the_same_read_models(tmp_path: Path) -> None:
    server = make_server(tmp_path).start()
    try:
        client = server.client()
        for name in ("a", "b"):
            client.post("/v1/queues", json={"name": name})
            client.post(
                f"/v1/queues/{name}/messages/batch",
                json={"messages": [{"body": i} for i in range(50)]},
            )
        got = client.post("/v1/queues/a/receive", json={"max_messages": 10}).json()["messages"]
        for message in got[:5]:
            client.post(
                f"/v1/queues/a/messages/{message['id']}/ack", json={"receipt": message["receipt"]}
            )
        client.post("/v1/queues/b/purge")
        before = _read_models(client, client.get("/v1/projections").json()["head"])

        stop = threading.Event()

        def keep_publishing() -> None:  # the server keeps taking commands during the rebuild
            with httpx.Client(base_url=server.url) as other:
                while not stop.is_set():
                    other.post("/v1/queues/c/messages", json={"body": 1})

        client.post("/v1/queues", json={"name": "c"})
        producer = threading.Thread(target=keep_publishing)
        producer.start()
        try:
            result = cairn(
                "projections", "rebuild", "--database-url", f"sqlite:///{server.database}"
            )
        finally:
            stop.set()
            producer.join()
        assert result.returncode == 0, result.stderr
        assert "views:" in result.stderr and "events in" in result.stderr
        head = client.get("/v1/projections").json()["head"]
        after = _read_models(client, head)
        after["queues"] = [q for q in after["queues"] if q["name"] != "c"]
        del after["messages"]["c"]
        assert after == before
        # What was published during the rebuild is counted once, neither lost nor doubled.
        published, after_position = 0, 0
        while page := client.get(
            "/v1/events",
            params={
                "after": after_position,
                "queue": "c",
                "types": "message.published",
                "limit": 1000,
            },
        ).json()["events"]:
            published += len(page)
            after_position = page[-1]["position"]
        c = client.get("/v1/queues/c", params={"min_position": head}).json()
        assert c["stats"]["published_total"] == published > 0
        assert (
            cairn(
                "projections", "rebuild", "nope", "--database-url", f"sqlite:///{server.database}"
            ).returncode
            != 0
        )
    finally:
        server.stop()


def _projector_pids(database: Path) -> list[int]:
    """The projector processes started for this database (by their CAIRN_DATABASE_URL)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            b"projector" in cmdline
            and f"CAIRN_DATABASE_URL=sqlite:///{database}".encode() in environ
        ):
            found.append(int(proc.name))
    return found


def test_a_killed_projector_process_is_started_again(tmp_path: Path) -> None:
    server = make_server(tmp_path).start()
    try:
        client = server.client()
        client.post("/v1/queues", json={"name": "p"})
        [pid] = _projector_pids(server.database)
        os.kill(pid, signal.SIGKILL)
        published = client.post("/v1/queues/p/messages", json={"body": 1}).json()
        read = client.get("/v1/queues/p", params={"min_position": published["position"]})
        deadline = time.monotonic() + 15
        while read.status_code == 503:  # the wait may outlast CAIRN_READ_WAIT_S once
            assert time.monotonic() < deadline
            read = client.get("/v1/queues/p", params={"min_position": published["position"]})
        assert read.json()["stats"]["published_total"] == 1
        [again] = _projector_pids(server.database)
        assert again != pid
    finally:
        server.stop()
    assert _projector_pids(server.database) == []  # stopped with the server


def test_projections_can_run_inside_the_serving_process(tmp_path: Path) -> None:
    server = make_server(tmp_path, "--projector", "embedded").start()
    try:
        client = server.client()
        client.post("/v1/queues", json={"name": "e"})
        published = client.post("/v1/queues/e/messages", json={"body": 1}).json()
        read = client.get("/v1/queues/e", params={"min_position": published["position"]})
        assert read.json()["stats"]["published_total"] == 1
        assert _projector_pids(server.database) == []
    finally:
        server.stop()
