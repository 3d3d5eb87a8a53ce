"""What an operator's mistake at start-up gets (API.md v1.2, "Clarifications of v1.1"): one line
on stderr that names the option and says the real reason, a non-zero exit, and nothing done
before it (no store created or migrated). Real ``cairn`` processes."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.api.conftest import free_port
from tests.api.test_cli import cairn, one_line
from tests.postgres import drop, empty_database


@pytest.mark.parametrize(
    "variable",
    ["CAIRN_SWEEP_INTERVAL_S", "CAIRN_READ_WAIT_S", "CAIRN_SSE_HEARTBEAT_S", "CAIRN_BODY_IDLE_S"],
)
@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1", "1e999"])
def test_an_interval_that_is_not_finite_and_positive_is_refused(
    tmp_path: Path, variable: str, value: str
) -> None:
    result = cairn("serve", "--database-url", f"sqlite:///{tmp_path}/c.db", env={variable: value})
    line = one_line(result, variable, code=2)
    assert "is not a duration" in line
    assert not (tmp_path / "c.db").exists()


def test_a_store_on_a_pseudo_file_system_says_so() -> None:
    line = one_line(
        cairn("serve", "--database-url", "sqlite:///proc/cairn-test.db"), "--database-url"
    )
    assert "proc file system" in line and "no space" not in line


@pytest.fixture
def port_in_use() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_a_duration_takes_a_unit(tmp_path: Path, port_in_use: int) -> None:
    # The settings are read before the port is tried: refused for its port, not its duration.
    result = cairn(
        "serve",
        "--port",
        str(port_in_use),
        "--database-url",
        f"sqlite:///{tmp_path}/c.db",
        env={"CAIRN_SWEEP_INTERVAL_S": "1.5h", "CAIRN_READ_WAIT_S": "90s"},
    )
    one_line(result, f"--port {port_in_use}")


def test_a_port_in_use_is_one_line_and_touches_no_sqlite_store(
    tmp_path: Path, port_in_use: int
) -> None:
    store = tmp_path / "data" / "cairn.db"
    result = cairn("serve", "--port", str(port_in_use), "--database-url", f"sqlite:///{store}")
    line = one_line(result, f"--port {port_in_use}")
    assert "in use" in line
    assert not store.parent.exists()


def test_a_port_in_use_migrates_no_postgresql_database(port_in_use: int) -> None:
    url = empty_database()
    try:
        result = cairn("serve", "--port", str(port_in_use), "--database-url", url)
        one_line(result, f"--port {port_in_use}")
        with psycopg.connect(url) as conn:
            tables = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchone()
        assert tables == (0,)
    finally:
        drop(url)


def test_an_unreachable_postgresql_is_one_clean_line_with_the_drivers_reason() -> None:
    url = f"postgresql://cairn:s3cret-pw@127.0.0.1:{free_port()}/cairn"
    line = one_line(cairn("serve", "--database-url", url), "--database-url")
    assert "Connection refused" in line
    assert "\t" not in line and not line.split(": ", 1)[1].startswith((" ", "\t"))
    assert "s3cret-pw" not in line


def test_a_backup_that_cannot_be_written_names_the_path_and_the_reason(tmp_path: Path) -> None:
    store = tmp_path / "cairn.db"
    with contextlib.closing(sqlite3.connect(store)) as conn:
        conn.execute("CREATE TABLE events (position INTEGER)")
    for target, reason in (
        ("/proc/cairn-backup.db", "proc file system"),
        (str(tmp_path / "cairn.db"), "exists already"),
    ):
        line = one_line(
            cairn("backup", target, "--database-url", f"sqlite:///{store}"), target, code=1
        )
        assert reason in line


def test_serve_help_names_both_stores() -> None:
    shown = cairn("serve", "--help")
    assert shown.returncode == 0
    text = " ".join(shown.stdout.split())
    assert "sqlite:///ABSOLUTE" in text and "postgresql://" in text
