"""Several ``cairn serve`` nodes on one PostgreSQL database are one broker: real processes,
real PostgreSQL, and the faults a cluster meets (a node killed, the database restarted)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.api.conftest import Server, free_port, make_server
from tests.api.feeds import frames
from tests.api.test_cli import cairn, one_line
from tests.postgres import drop, empty_database, fresh_database, url_of


@pytest.fixture
def database() -> Iterator[str]:
    url = fresh_database()
    yield url
    drop(url)


def node(directory: Path, url: str, *extra: str) -> Server:
    directory.mkdir(parents=True, exist_ok=True)
    return make_server(directory, *extra, database_url=url)


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def kill_node(server: Server) -> None:
    """kill -9 of a whole node: the serve process and the projector process it started."""
    assert server.process is not None
    pids = [server.process.pid, *children(server.process.pid)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.kill()


def leader_events(server: Server, job: str) -> list[dict[str, Any]]:
    found = []
    for log in (server.log, server.log.with_name("cairn.projector.log")):
        if log.exists():
            for line in log.read_text().splitlines():
                if '"leadership_taken"' in line and f'"job":"{job}"' in line:
                    found.append(json.loads(line))
    return found


def wait_until(condition: Any, within: float, what: str) -> float:
    """Poll ``condition`` (with a deadline); how long it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within, f"{what}: not within {within} s"
        time.sleep(0.02)
    return time.monotonic() - started


def test_a_command_on_one_node_wakes_long_polls_and_feeds_on_the_other(
    tmp_path: Path, database: str
) -> None:
    a = node(tmp_path / "a", database).start()
    b = node(tmp_path / "b", database).start()
    try:
        with (
            httpx.Client(base_url=a.url, timeout=30) as on_a,
            httpx.Client(base_url=b.url, timeout=30) as on_b,
        ):
            assert on_a.post("/v1/queues", json={"name": "x"}).status_code == 201
            start = on_b.get("/v1/projections").json()["head"]
            answer: dict[str, Any] = {}

            def long_poll() -> None:
                sent = time.monotonic()
                got = on_b.post("/v1/queues/x/receive", json={"wait_s": 10})
                answer["response"], answer["at"] = got, time.monotonic()
                answer["sent"] = sent

            poller = threading.Thread(target=long_poll)
            poller.start()
            wait_until(
                lambda: "cairn_receive_long_polls_waiting 1.0" in on_b.get("/metrics").text,
                10,
                "the long poll waiting on B",
            )
            with (
                httpx.Client(base_url=b.url, timeout=30) as feed_client,
                feed_client.stream("GET", "/v1/events/stream", params={"after": start}) as feed,
            ):
                published = on_a.post("/v1/queues/x/messages", json={"body": "hello"})
                answered = time.monotonic()
                assert published.status_code == 201
                for frame in frames(feed):
                    if frame.id is not None:
                        assert frame.id == published.json()["position"]
                        assert time.monotonic() - answered < 1.0
                        break
            poller.join(15)
            response = answer["response"]
            assert [m["body"] for m in response.json()["messages"]] == ["hello"]
            assert answer["at"] - answered < 1.0, "B's long poll woke more than 1 s after A's 201"
            # Read-your-writes across nodes, and one dedup window for the cluster.
            read = on_b.get("/v1/queues/x", params={"min_position": published.json()["position"]})
            assert read.json()["stats"]["published_total"] == 1
            first = on_a.post("/v1/queues/x/messages", json={"body": 1, "dedup_id": "d"}).json()
            again = on_b.post("/v1/queues/x/messages", json={"body": 2, "dedup_id": "d"})
            assert again.status_code == 200 and again.json()["id"] == first["id"]
    finally:
        a.stop()
        b.stop()


def test_one_projector_and_one_sweeper_and_a_takeover_when_the_leader_dies(
    tmp_path: Path, database: str
) -> None:
    a = node(tmp_path / "a", database).start()
    b = node(tmp_path / "b", database).start()
    try:
        wait_until(
            lambda: len(leader_events(a, "projector")) + len(leader_events(b, "projector")) == 1,
            10,
            "one projector leading",
        )
        wait_until(
            lambda: len(leader_events(a, "sweeper")) + len(leader_events(b, "sweeper")) == 1,
            10,
            "one sweeper leading",
        )
        leader, other = (a, b) if leader_events(a, "projector") else (b, a)
        with httpx.Client(base_url=other.url, timeout=30) as client:
            client.post("/v1/queues", json={"name": "t", "visibility_timeout_s": 1})
            kill_node(leader)
            killed = time.monotonic()
            took = wait_until(
                lambda: bool(leader_events(other, "projector")), 15, "the projector taking over"
            )
            # The read models move again, and a lease expiry is recorded (by the new sweeper).
            published = client.post("/v1/queues/t/messages", json={"body": 1}).json()
            got = client.post("/v1/queues/t/receive").json()["messages"]
            assert len(got) == 1
            read = client.get("/v1/queues/t", params={"min_position": published["position"]})
            assert read.status_code == 200 and read.json()["stats"]["published_total"] == 1
            wait_until(
                lambda: (
                    bool(leader_events(other, "sweeper")) or bool(leader_events(leader, "sweeper"))
                ),
                15,
                "a sweeper",
            )
            wait_until(
                lambda: client.get(
                    "/v1/events", params={"types": "message.lease_expired", "queue": "t"}
                ).json()["events"],
                15,
                "the lease expiry recorded without a receive",
            )
        print(f"\nprojector takeover after kill -9 of its node: {took:.2f} s")
        assert took < 5.0
        assert time.monotonic() - killed < 30
    finally:
        other.stop()
        with contextlib.suppress(AssertionError):
            leader.stop()


def test_nodes_starting_at_once_on_an_empty_database_migrate_it_once(tmp_path: Path) -> None:
    url = empty_database()
    servers = [node(tmp_path / f"n{i}", url) for i in range(3)]
    try:
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda s: s.start(ready_within=60), servers))
        with psycopg.connect(url) as conn:
            applied = conn.execute("SELECT app, name FROM tortoise_migrations").fetchall()
        assert len(applied) == len(set(applied)) >= 4
        with httpx.Client(base_url=servers[2].url) as client:
            assert client.post("/v1/queues", json={"name": "m"}).status_code == 201
    finally:
        for server in servers:
            server.stop()
        drop(url)


def test_kill_9_of_one_node_in_a_burst_loses_nothing_and_leases_nothing_twice(
    tmp_path: Path, database: str
) -> None:
    a = node(tmp_path / "a", database).start()
    b = node(tmp_path / "b", database).start()
    answered: list[str] = []
    acked: list[str] = []
    leases: list[tuple[str, str]] = []
    stop = threading.Event()
    lock = threading.Lock()
    with httpx.Client(base_url=b.url) as setup:
        setup.post("/v1/queues", json={"name": "k", "visibility_timeout_s": 30})

    def produce(server: Server, index: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    got = client.post("/v1/queues/k/messages", json={"body": [index, n]})
                except httpx.TransportError:
                    return  # its node died
                if got.status_code == 201:
                    with lock:
                        answered.append(got.json()["id"])

    def consume(server: Server) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            while not stop.is_set():
                try:
                    got = client.post("/v1/queues/k/receive", json={"max_messages": 10})
                    for message in got.json()["messages"]:
                        with lock:
                            leases.append((message["id"], message["receipt"]))
                        ack = client.post(
                            f"/v1/queues/k/messages/{message['id']}/ack",
                            json={"receipt": message["receipt"]},
                        )
                        if ack.status_code == 204:
                            with lock:
                                acked.append(message["id"])
                except httpx.TransportError:
                    return

    workers = [
        threading.Thread(target=produce, args=(server, i)) for i, server in enumerate((a, a, b, b))
    ] + [threading.Thread(target=consume, args=(server,)) for server in (a, b)]
    for worker in workers:
        worker.start()
    try:
        wait_until(lambda: len(answered) > 150, 30, "a burst under way")
        kill_node(a)
        count = len(answered)
        wait_until(lambda: len(answered) > count + 100, 30, "the survivor serving on")
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    try:
        with httpx.Client(base_url=b.url, timeout=30) as client:
            published: list[str] = []
            after = 0
            while page := client.get(
                "/v1/events",
                params={"after": after, "limit": 1000, "types": "message.published"},
            ).json()["events"]:
                published += [e["message_id"] for e in page]
                after = page[-1]["position"]
        assert set(answered) <= set(published)  # every 201 is stored
        assert len(published) == len(set(published))  # and stored once
        assert len(acked) == len(set(acked))  # nothing acked twice (so never leased twice)
        assert len({mid for mid, _ in leases}) == len(leases)  # visibility 30 s: one lease each
    finally:
        b.stop()


class PostgresProcess:
    """A PostgreSQL server of the test's own (initdb in a temporary folder, another port), so
    that it can be stopped and started again; the shared one is never touched."""

    def __init__(self, *, password: str | None = None) -> None:
        # Not under pytest's temporary folder: the server runs as the postgres user, which may
        # not enter root's private folders.
        self.directory = Path(tempfile.mkdtemp(prefix="cairn-pg-"))
        self.data = self.directory / "pgdata"
        self.port = free_port()
        self.password = password
        binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        assert binaries, "PostgreSQL's server binaries are not installed"
        self.bin = binaries[-1]

    def _as_postgres(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, check=True
        )

    def init(self) -> None:
        shutil.chown(self.directory, "postgres", "postgres")
        args = [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--no-sync"]
        if self.password is not None:
            pwfile = self.directory / "pw"
            pwfile.write_text(self.password)
            shutil.chown(pwfile, "postgres", "postgres")
            args += ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
        else:
            args += ["--auth=trust"]
        self._as_postgres(*args)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "-l",
            str(self.directory / "log"),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "stop")

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        auth = f"postgres:{self.password}" if self.password is not None else "postgres"
        return url_of(database, f"postgresql://{auth}@127.0.0.1:{self.port}/postgres")


@pytest.fixture
def private_postgres() -> Iterator[PostgresProcess]:
    server = PostgresProcess()
    server.init()
    server.start()
    yield server
    server.remove()


def test_postgresql_restarted_in_a_burst_is_503_then_recovered_without_a_restart(
    tmp_path: Path, private_postgres: PostgresProcess
) -> None:
    url = private_postgres.url()
    broker = node(tmp_path / "n", url).start()
    answered: list[str] = []
    statuses: list[tuple[int, float]] = []
    stop = threading.Event()
    try:
        with httpx.Client(base_url=broker.url, timeout=30) as client:
            client.post("/v1/queues", json={"name": "r"})

            def produce() -> None:
                with httpx.Client(base_url=broker.url, timeout=30) as own:
                    n = 0
                    while not stop.is_set():
                        n += 1
                        sent = time.monotonic()
                        got = own.post("/v1/queues/r/messages", json={"body": n})
                        statuses.append((got.status_code, time.monotonic() - sent))
                        if got.status_code == 201:
                            answered.append(got.json()["id"])

            producers = [threading.Thread(target=produce) for _ in range(4)]
            for producer in producers:
                producer.start()
            wait_until(lambda: len(answered) > 100, 30, "a burst under way")
            private_postgres.stop("immediate")
            down = len(statuses)
            wait_until(
                lambda: sum(1 for s, _ in statuses[down:] if s == 503) >= 4, 30, "503s while down"
            )
            assert client.get("/readyz").status_code == 503
            private_postgres.start()
            back = len(answered)
            wait_until(lambda: len(answered) > back + 50, 30, "201s again, with no restart")
            stop.set()
            for producer in producers:
                producer.join(30)
            while_down = statuses[down:]
            assert {s for s, _ in while_down} <= {201, 503}
            assert max(seconds for _, seconds in while_down) < 11  # never a hang past 10 s
            wait_until(lambda: client.get("/readyz").status_code == 200, 15, "ready again")
            published: list[str] = []
            after = 0
            while page := client.get(
                "/v1/events",
                params={"after": after, "limit": 1000, "types": "message.published"},
            ).json()["events"]:
                published += [e["message_id"] for e in page]
                after = page[-1]["position"]
        assert set(answered) <= set(published) and len(published) == len(set(published))
    finally:
        stop.set()
        broker.stop()


def test_readiness_follows_postgresql_down_and_back_within_a_second(
    tmp_path: Path, private_postgres: PostgresProcess
) -> None:
    """/readyz says what the store is now: 503 once PostgreSQL is gone, 200 again as soon as it
    is back, though commands (and the sweeper's) failed while it was gone. (It lagged by
    seconds: the writer remembered those failures as it remembers a full disk's.)"""
    broker = node(tmp_path / "n", private_postgres.url()).start()
    try:
        with httpx.Client(base_url=broker.url, timeout=30) as client:
            assert client.post("/v1/queues", json={"name": "r"}).status_code == 201
            for _ in range(2):
                private_postgres.stop("immediate")
                wait_until(lambda: client.get("/readyz").status_code == 503, 5, "503 when gone")
                assert client.post("/v1/queues/r/messages", json={"body": 1}).status_code == 503
                private_postgres.start()  # returns once it accepts connections (pg_ctl -w)
                took = wait_until(lambda: client.get("/readyz").status_code == 200, 10, "ready")
                assert took < 1.0, f"/readyz lagged PostgreSQL's return by {took:.2f} s"
                assert client.post("/v1/queues/r/messages", json={"body": 2}).status_code == 201
    finally:
        broker.stop()


def test_a_wrong_database_url_or_password_is_one_line_naming_it(tmp_path: Path) -> None:
    secured = PostgresProcess(password="right-password")
    secured.init()
    secured.start()
    try:
        wrong = secured.url().replace("right-password", "wrong-password")
        for url in (
            wrong,
            url_of("no_such_database", secured.url()),
            f"postgresql://postgres@127.0.0.1:{free_port()}/postgres",
        ):
            started = time.monotonic()
            line = one_line(cairn("serve", "--database-url", url), "--database-url")
            assert "wrong-password" not in line and "right-password" not in line
            assert time.monotonic() - started < 20
        assert "password" in cairn("serve", "--database-url", wrong).stderr
    finally:
        secured.remove()


def test_backup_and_restore_point_to_the_postgresql_tools(database: str) -> None:
    # By hand, `cairn backup` copies SQLite files; on PostgreSQL it names pg_dump.
    line = one_line(cairn("backup", "/tmp/x.dump", "--database-url", database), "pg_")
    assert "SQLite" in line
    # `cairn restore` takes a dump of `cairn backups`' list, and says what it needs otherwise.
    missing = cairn("restore", "/tmp/no-such-backup.dump", "--database-url", database)
    assert "/tmp/no-such-backup.dump" in one_line(missing, "is not a PostgreSQL backup")


def test_a_rebuild_on_postgresql_gives_the_same_read_models(tmp_path: Path, database: str) -> None:
    server = node(tmp_path / "n", database).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            client.post("/v1/queues", json={"name": "b"})
            client.post(
                "/v1/queues/b/messages/batch", json={"messages": [{"body": i} for i in range(30)]}
            )
            got = client.post("/v1/queues/b/receive", json={"max_messages": 5}).json()["messages"]
            for message in got[:3]:
                client.post(
                    f"/v1/queues/b/messages/{message['id']}/ack",
                    json={"receipt": message["receipt"]},
                )
            head = client.get("/v1/projections").json()["head"]
            before = client.get("/v1/queues/b", params={"min_position": head}).json()
            result = cairn("projections", "rebuild", "--database-url", database)
            assert result.returncode == 0, result.stderr
            after = client.get("/v1/queues/b", params={"min_position": head}).json()
            for resource in (before, after):
                resource["stats"].pop("oldest_available_age_s")
            assert after == before
    finally:
        server.stop()
