"""cairn backup while the broker runs, and cairn restore: the copy is a consistent snapshot."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from tests.api.conftest import make_server
from tests.api.test_cli import cairn


def test_a_backup_taken_under_load_restores_to_a_working_broker(tmp_path: Path) -> None:
    live, restored_dir = tmp_path / "live", tmp_path / "restored"
    live.mkdir()
    restored_dir.mkdir()
    server = make_server(live).start()
    backup = tmp_path / "backups" / "cairn-1.db"
    try:
        with httpx.Client(base_url=server.url) as client:
            client.post("/v1/queues", json={"name": "b"})
            stop = threading.Event()

            def keep_publishing() -> None:
                with httpx.Client(base_url=server.url) as other:
                    while not stop.is_set():
                        other.post(
                            "/v1/queues/b/messages/batch",
                            json={"messages": [{"body": i} for i in range(20)]},
                        )

            producer = threading.Thread(target=keep_publishing)
            producer.start()
            try:
                result = cairn(
                    "backup", str(backup), "--database-url", f"sqlite:///{server.database}"
                )
            finally:
                stop.set()
                producer.join()
            assert result.returncode == 0, result.stderr
            position = int(result.stdout.strip().rsplit(" ", 1)[1])
            assert position > 1
            again = cairn("backup", str(backup), "--database-url", f"sqlite:///{server.database}")
            assert again.returncode != 0 and "exists" in again.stderr
    finally:
        server.stop()

    target = restored_dir / "cairn.db"
    result = cairn("restore", str(backup), "--database-url", f"sqlite:///{target}")
    assert result.returncode == 0, result.stderr
    restored = make_server(restored_dir).start()
    try:
        with httpx.Client(base_url=restored.url) as client:
            head = client.get("/v1/projections").json()["head"]
            assert head == position
            events = client.get("/v1/events", params={"limit": 1000}).json()["events"]
            assert [e["position"] for e in events] == list(range(1, min(head, 1000) + 1))
            queue = client.get("/v1/queues/b", params={"min_position": head}).json()
            published = head - 1  # everything after the queue's creation is a publish
            assert queue["stats"]["published_total"] == published
            assert queue["stats"]["available"] == published
            after = client.post("/v1/queues/b/messages", json={"body": "after"}).json()
            assert after["position"] == head + 1
    finally:
        restored.stop()
    bad = cairn("restore", str(tmp_path / "nothing.db"), "--database-url", f"sqlite:///{target}")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1


def test_restore_refuses_while_a_server_has_the_store_open(tmp_path: Path) -> None:
    server = make_server(tmp_path).start()
    url = f"sqlite:///{server.database}"
    backup = tmp_path / "backup.db"
    try:
        with httpx.Client(base_url=server.url) as client:
            client.post("/v1/queues", json={"name": "r"})
            assert cairn("backup", str(backup), "--database-url", url).returncode == 0
            later = client.post("/v1/queues/r/messages", json={"body": "after the backup"})
            assert later.status_code == 201
            refused = cairn("restore", str(backup), "--database-url", url)
            lines = refused.stderr.strip().splitlines()
            assert refused.returncode != 0 and len(lines) == 1, refused.stderr
            assert server.process is not None
            assert "stop" in lines[0] and str(server.process.pid) in lines[0]
            # Nothing was replaced: the write answered after the backup is still there.
            again = client.post("/v1/queues/r/messages", json={"body": "still serving"})
            assert again.json()["position"] == later.json()["position"] + 1
    finally:
        server.stop()
    # Stopped now, but the store holds events the backup does not: that needs --rewind.
    rewind = cairn("restore", str(backup), "--database-url", url)
    assert rewind.returncode != 0 and "--rewind" in rewind.stderr
    assert len(rewind.stderr.strip().splitlines()) == 1
    done = cairn("restore", str(backup), "--database-url", url, "--rewind")
    assert done.returncode == 0, done.stderr
    restored = make_server(tmp_path).start()
    try:
        with httpx.Client(base_url=restored.url) as client:
            assert client.get("/v1/projections").json()["head"] == 1  # the queue's creation
    finally:
        restored.stop()
