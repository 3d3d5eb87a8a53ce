"""Automatic backups (``cairn serve --backup-dir --backup-every``), ``cairn backups`` and
``cairn restore`` of what they made: real servers, on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.api.conftest import Server, make_server
from tests.api.test_cli import cairn
from tests.postgres import drop, empty_database, fresh_database

T = TypeVar("T")
EVERY = "0.2s"
WITHIN_S = 30.0


def until(what: str, check: Callable[[], T | None], within: float = WITHIN_S) -> T:
    """Poll ``check`` until it answers something (not None/False), or fail naming ``what``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)  # polling a condition, with a deadline
    raise AssertionError(f"not within {within:g} s: {what}")


def backups_in(folder: Path) -> list[tuple[str, int]]:
    """(name, head) of the backups in ``folder`` (temporary names left out), newest first."""
    found = []
    for entry in folder.iterdir():
        stem = entry.name.removesuffix(".dump")
        parts = stem.split("-")
        if len(parts) == 3 and parts[0] == "cairn" and parts[2].isdigit():
            found.append((parts[1], int(parts[2]), entry.name))
    return [(name, head) for _, head, name in sorted(found, reverse=True)]


def metric(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"/metrics has no {name}")


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for SQLite (a store in the test's folder), or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    url = fresh_database()
    yield url
    drop(url)


def serving(tmp_path: Path, url: str | None, folder: Path, *extra: str, keep: int = 2) -> Server:
    live = tmp_path / "live"
    live.mkdir(exist_ok=True)
    flags = ["--backup-dir", str(folder), "--backup-every", EVERY, "--backup-keep", str(keep)]
    return make_server(live, *flags, *extra, database_url=url).start()


def test_backups_follow_the_head_keep_n_list_and_restore(tmp_path: Path, store: str | None) -> None:
    folder = tmp_path / "backups"
    server = serving(tmp_path, store, folder, "--workers", "2")
    published: dict[int, str] = {}
    try:
        client = server.client()
        assert backups_in(folder) == []  # nothing happened yet: nothing to back up
        assert client.post("/v1/queues", json={"name": "kept"}).status_code == 201
        until("a backup at head 1", lambda: metric(client, "cairn_backup_last_position") == 1)
        assert [h for _, h in backups_in(folder)] == [1]
        for n in range(3):
            answer = client.post("/v1/queues/kept/messages", json={"body": {"n": n}}).json()
            published[answer["position"]] = answer["id"]
            until(  # the metric moves once the backup is verified and old ones deleted
                f"a backup at head {answer['position']}",
                lambda p=answer["position"]: metric(client, "cairn_backup_last_position") == p,
            )
        # The head stands still now: a dozen intervals add nothing.
        settled = backups_in(folder)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            assert backups_in(folder) == settled
            time.sleep(0.05)
        heads = [head for _, head in settled]
        assert heads == [4, 3], settled  # the newest two of heads 1..4, one per head
        assert not [e for e in folder.iterdir() if e.name.endswith(".tmp")]
        assert metric(client, "cairn_backup_last_position") == 4
        # Whichever worker answers the scrape (a new connection each time) says the same.
        for _ in range(8):
            with httpx.Client(base_url=server.url) as fresh:
                assert metric(fresh, "cairn_backup_last_position") == 4
        assert metric(client, "cairn_backups_failed_total") == 0
        assert abs(metric(client, "cairn_backup_last_success_timestamp_seconds") - time.time()) < 60
    finally:
        server.stop()

    listed = cairn("backups", "--backup-dir", str(folder))
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.strip().splitlines()[1:]
    assert [int(row.split()[2]) for row in rows] == [4, 3]  # newest first: time, position, size
    assert all(str(folder / name) in row for row, (name, _) in zip(rows, settled, strict=True))

    older = folder / settled[1][0]  # any listed backup, not just the newest: head 3
    restored_url = empty_database() if store is not None else None
    target = tmp_path / "restored"
    target.mkdir()
    url = restored_url or f"sqlite:///{target / 'cairn.db'}"
    try:
        result = cairn("restore", str(older), "--database-url", url)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().endswith("at position 3")
        restored = make_server(target, database_url=restored_url).start()
        try:
            client = restored.client()
            assert client.get("/v1/projections").json()["head"] == 3
            for position, message_id in published.items():
                found = client.get(
                    f"/v1/queues/kept/messages/{message_id}", params={"min_position": 3}
                )
                assert found.status_code == (200 if position <= 3 else 404), (position, found)
            after = client.post("/v1/queues/kept/messages", json={"body": "after"}).json()
            assert after["position"] == 4
        finally:
            restored.stop()
    finally:
        if restored_url is not None:
            drop(restored_url)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--backup-every", "0"], "--backup-every"),
        (["--backup-every", "inf"], "--backup-every"),
        (["--backup-every", "1h"], "--backup-every needs --backup-dir"),
        (["--backup-keep", "0"], "--backup-keep"),
        (["--backup-dir", "{file}"], "is a file"),
    ],
)
def test_backup_options_are_refused_in_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    given = [a.replace("{file}", str(blocker)) for a in args]
    if "--backup-dir" in given:
        given += ["--backup-every", "1h"]
    elif given[0] != "--backup-every" or "needs" not in says:
        given += ["--backup-dir", str(tmp_path / "b")]
    result = cairn(
        "serve", "--database-url", f"sqlite:///{tmp_path / 'c.db'}", "--port", "1", *given
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert says in lines[0]
    assert not (tmp_path / "c.db").exists()  # refused before the store was touched


def test_restore_names_what_it_cannot_take(tmp_path: Path) -> None:
    folder = tmp_path / "cairn-20260101T000000Z-5"
    folder.mkdir()
    url = f"sqlite:///{tmp_path / 'c.db'}"
    empty = cairn("restore", str(folder), "--database-url", url)
    assert empty.returncode == 1 and "no single log file" in empty.stderr
    dump = tmp_path / "cairn-20260101T000000Z-5.dump"
    dump.write_bytes(b"x")
    wrong_store = cairn("restore", str(dump), "--database-url", url)
    assert wrong_store.returncode == 1 and "PostgreSQL" in wrong_store.stderr
    database = fresh_database()  # migrated: not empty
    try:
        busy = cairn("restore", str(dump), "--database-url", database)
        lines = busy.stderr.strip().splitlines()
        assert busy.returncode == 1 and len(lines) == 1 and "not empty" in lines[0]
        not_a_dump = cairn("restore", str(folder), "--database-url", database)
        assert not_a_dump.returncode == 1 and ".dump" in not_a_dump.stderr
    finally:
        drop(database)
    missing = cairn("backups", "--backup-dir", str(tmp_path / "none"))
    assert missing.returncode == 1 and "--backup-dir" in missing.stderr
    shutil.rmtree(folder)


def logged(nodes: list[Server]) -> list[dict[str, Any]]:
    """The backup_taken and backup_failed lines of the nodes' logs."""
    return [
        json.loads(line)
        for node in nodes
        for line in node.log.read_text().splitlines()
        if '"backup_taken"' in line or '"backup_failed"' in line
    ]


def test_on_a_cluster_one_node_takes_the_backups(tmp_path: Path) -> None:
    url = fresh_database()
    folder = tmp_path / "backups"
    flags = ["--backup-dir", str(folder), "--backup-every", EVERY, "--backup-keep", "10"]
    nodes = [make_server(tmp_path / name, *flags, database_url=url) for name in ("a", "b")]
    try:
        for node in nodes:
            node.database.parent.mkdir()
            node.start()
        clients = [node.client() for node in nodes]
        assert clients[0].post("/v1/queues", json={"name": "c"}).status_code == 201
        for n in range(4):  # commands through either node
            head = clients[n % 2].post("/v1/queues/c/messages", json={"body": n}).json()
            until(
                f"a backup at head {head['position']}",
                lambda p=head["position"]: p in [e.get("head") for e in logged(nodes)],
            )
    finally:
        for node in nodes:
            node.stop()
        drop(url)
    taken = logged(nodes)
    assert all(entry["event"] == "backup_taken" for entry in taken), taken
    heads = sorted(entry["head"] for entry in taken)
    assert heads == sorted(set(heads)) == sorted(h for _, h in backups_in(folder))
    # One node took them all (the one leading the backup job; the other stood by).
    assert len([node for node in nodes if '"backup_taken"' in node.log.read_text()]) == 1


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (grown by the test with a remount), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_failing_backup_is_counted_and_never_costs_a_good_backup(
    tmp_path: Path, store: str | None, small_disk: Path
) -> None:
    folder = small_disk / "backups"
    server = serving(tmp_path, store, folder, keep=1)
    try:
        client = server.client()
        assert client.post("/v1/queues", json={"name": "f"}).status_code == 201
        until("a first backup", lambda: metric(client, "cairn_backup_last_position") == 1)
        good = backups_in(folder)

        # 1. The backup folder replaced by a file. Commands go on meanwhile: incompressible
        # bodies, more than the disk holds (even as a compressed dump), for step 2.
        aside = small_disk / "aside"
        folder.rename(aside)
        folder.write_text("not a folder")
        for _ in range(10):
            body = base64.b64encode(os.urandom(150_000)).decode()
            sent = client.post("/v1/queues/f/messages", json={"body": body})
            assert sent.status_code == 201, sent.text
        until("a failure counted", lambda: metric(client, "cairn_backups_failed_total") >= 1)
        failed = [e for e in logged([server]) if e["event"] == "backup_failed"]
        assert failed[0]["level"] == "error" and "Not a directory" in failed[0]["reason"]
        assert backups_in(aside) == good
        assert metric(client, "cairn_backup_last_position") == 1

        # 2. The folder back, with what an interrupted backup left; the disk fills up.
        folder.unlink()
        aside.rename(folder)
        leftover = folder / ("cairn-20200101T000000Z" + (".dump.tmp" if store else ".tmp"))
        if store:
            leftover.write_bytes(b"half a dump")
        else:
            leftover.mkdir()
            (leftover / "cairn.db").write_bytes(b"half a copy")
        failures = metric(client, "cairn_backups_failed_total")
        until(
            "a full disk counted",
            lambda: metric(client, "cairn_backups_failed_total") > failures,
        )
        reasons = [e["reason"] for e in logged([server]) if e["event"] == "backup_failed"]
        assert any("full" in r or "no space" in r.lower() for r in reasons), reasons
        assert not leftover.exists()  # removed before the attempt
        assert [e.name for e in folder.iterdir()] == [good[0][0]]  # nothing of the failed one

        # 3. Room again: the next attempt succeeds, and only now does the old one go.
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
        head = client.post("/v1/queues/f/messages", json={"body": "last"}).json()["position"]
        until(
            f"a backup at head {head}",
            lambda: metric(client, "cairn_backup_last_position") == head,
        )
        assert [h for _, h in backups_in(folder)] == [head]
        assert metric(client, "cairn_backups_failed_total") >= 2
    finally:
        server.stop()
