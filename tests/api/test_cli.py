"""``cairn serve`` as an operator runs it: configuration, environment, shutdown, log files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
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
            b"api.projector" in cmdline
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


def one_line(result: subprocess.CompletedProcess[str], says: str, code: int | None = None) -> str:
    """The command failed with one line on stderr that says ``says``, and no traceback."""
    assert result.returncode != 0, result.stdout
    if code is not None:
        assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--port", "not-a-port"], "--port"),
        (["--durability", "bogus"], "--durability"),
        (["--log-format", "xml"], "--log-format"),
        (["--workers", "two"], "--workers"),
        (["--no-such-option"], "--no-such-option"),
    ],
)
def test_values_the_parser_refuses_are_one_line_and_exit_2(args: list[str], says: str) -> None:
    line = one_line(cairn("serve", *args), says, code=2)
    assert "usage:" not in line


def test_help_lists_only_the_commands_an_operator_runs() -> None:
    result = cairn("--help")
    assert result.returncode == 0
    assert "projector" not in result.stdout and "SUPPRESS" not in result.stdout
    assert "serve" in result.stdout and "restore" in result.stdout


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"CAIRN_MAX_REQUEST_BYTES": "-5"}, "CAIRN_MAX_REQUEST_BYTES"),
        ({"CAIRN_MAX_JSON_DEPTH": "0"}, "CAIRN_MAX_JSON_DEPTH"),
        ({"CAIRN_SWEEP_INTERVAL_S": "-1"}, "CAIRN_SWEEP_INTERVAL_S"),
        ({"CAIRN_PORT": "eighty"}, "CAIRN_PORT"),
    ],
)
def test_a_bad_environment_variable_is_named(env: dict[str, str], says: str) -> None:
    one_line(cairn("serve", env=env), says)


def test_a_database_path_that_is_a_directory_exits_at_once(tmp_path: Path) -> None:
    folder = tmp_path / "cairn.db"
    folder.mkdir()
    for command in (["serve"], ["projections", "rebuild"]):
        started = time.monotonic()
        result = cairn(*command, "--database-url", f"sqlite:///{folder}")
        one_line(result, "--database-url")
        assert "directory" in result.stderr
        assert time.monotonic() - started < 20


def test_rebuild_of_a_mistyped_path_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "cairn.db"
    one_line(cairn("projections", "rebuild", "--database-url", f"sqlite:///{missing}"), "no store")
    assert not missing.parent.exists()


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder on a read-only file system (a tmpfs the test mounts: root may write anywhere
    else, so permissions alone would prove nothing)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)])
    assert mounted.returncode == 0, "this test mounts a tmpfs: it needs root"
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_store_on_a_read_only_file_system_exits_with_one_line(read_only_folder: Path) -> None:
    started = time.monotonic()
    result = cairn("serve", "--database-url", f"sqlite:///{read_only_folder}/cairn.db")
    one_line(result, "--database-url")
    assert "not writable" in result.stderr
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_log_file_in_a_missing_folder_is_one_line(tmp_path: Path, workers: str) -> None:
    result = cairn(
        "serve",
        "--workers",
        workers,
        "--database-url",
        f"sqlite:///{tmp_path}/cairn.db",
        "--log-file",
        str(tmp_path / "missing" / "cairn.log"),
    )
    one_line(result, "--log-file")


def test_a_console_log_file_has_no_colour_codes(tmp_path: Path) -> None:
    server = make_server(tmp_path, "--log-format", "console").start()
    try:
        server.client().get("/v1/queues")
    finally:
        server.stop()
    text = server.log.read_text()
    assert "broker_started" in text and "\x1b[" not in text


def test_a_token_for_nobody_is_refused() -> None:
    secret = "0123456789abcdef0123456789abcdef"
    one_line(cairn("token", "--sub", "", "--scope", "admin", "--jwt-secret", secret), "--sub")
    assert cairn("token", "--sub", "ci", "--scope", "admin", "--jwt-secret", secret).returncode == 0


@pytest.mark.parametrize("delay", [0.15, 0.4, 0.8, 1.2])
def test_sigterm_during_start_up_exits_cleanly(tmp_path: Path, delay: float) -> None:
    """From the moment the command's own code runs (the interpreter's first ~40 ms cannot be
    helped): while it imports, migrates, starts the projector, starts uvicorn."""
    server = make_server(tmp_path)
    with subprocess.Popen(
        server.args, env=server.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as process:
        time.sleep(delay)  # the point of the test: a signal at this moment of start-up
        process.send_signal(signal.SIGTERM)
        code = process.wait(15)
        stderr = process.stderr.read().decode() if process.stderr else ""
    assert code == 0, stderr
    assert "Traceback" not in stderr


def test_a_store_on_a_full_disk_exits_with_one_line(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    assert (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)]).returncode
        == 0
    )
    try:
        subprocess.run(["dd", "if=/dev/zero", f"of={disk}/filler", "bs=64k"], capture_output=True)
        started = time.monotonic()
        result = cairn("serve", "--database-url", f"sqlite:///{disk}/cairn.db")
        one_line(result, "--database-url")
        assert "no space" in result.stderr
        assert time.monotonic() - started < 20
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_sigterm_inside_a_class_being_created_still_exits_cleanly() -> None:
    """Python wraps an exception raised in a descriptor's ``__set_name__`` in a RuntimeError;
    a start-up SIGTERM landing there (an import creating a class, as a fresh clone's first run
    once met in Tortoise) must still be a clean exit 0, not a traceback."""
    program = textwrap.dedent(
        """
        import os, signal, sys
        from api import cli

        def command(args):
            class Trap:
                def __set_name__(self, owner, name):
                    os.kill(os.getpid(), signal.SIGTERM)

            class Holder:
                trap = Trap()

            return 3

        cli.token = command
        sys.exit(cli.main(["token", "--sub", "ci", "--scope", "admin"]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
