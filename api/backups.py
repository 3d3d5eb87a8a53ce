"""Automatic backups: ``cairn serve --backup-dir DIR --backup-every DURATION``, and the backup
folder they fill (``cairn backups`` lists it).

A backup is named ``cairn-<UTC YYYYmmddTHHMMSSZ>-<head position>``: on SQLite a folder holding
the store's two files (the log and its read models, copied as ``cairn backup`` copies them), on
PostgreSQL the file ``<name>.dump`` (``pg_dump -Fc`` of a snapshot exported by a transaction
that read the head in that same snapshot). Each is written under a temporary name
(``….tmp``), verified once complete, and only then renamed: whatever stops a backup half way
(a crash, a full disk, a failed check) leaves at most a temporary name, and a backup's name
always means a verified backup. Only a verified backup lets older ones beyond the newest N go,
so a failing disk never costs a good backup. The copy runs off the event loop, at the lowest
CPU priority (a thread for SQLite's backup API, which leaves the GIL while it copies pages;
``pg_dump`` and ``pg_restore`` are processes), so commands go on while it runs.

What the metrics need is kept in a small state file that every worker reads at scrape time
(``state_path``): only the process that leads the ``backup`` job takes backups.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shlex
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec
import psycopg
import structlog

from api.backup import BackupError, backup
from api.settings import Settings
from broker.store.postgres import conninfo, describe
from projections.models import views_file

log = structlog.get_logger(component="cairn.backups")
T = TypeVar("T")

TIME_FORMAT: Final = "%Y%m%dT%H%M%SZ"
DUMP: Final = ".dump"
TEMPORARY: Final = ".tmp"
_NAME: Final = re.compile(r"cairn-(?P<time>\d{8}T\d{6}Z)-(?P<head>\d+)(?P<dump>\.dump)?")
_TEMPORARY: Final = re.compile(r"cairn-\d{8}T\d{6}Z(\.dump)?\.tmp")
_PG_TOOL_S: Final = 3600.0
"""The longest pg_dump or pg_restore may take before the attempt counts as failed."""


@dataclass(frozen=True)
class Backup:
    path: Path
    taken: datetime
    head: int

    @property
    def size(self) -> int:
        """Bytes on disk (a folder's files together)."""
        if self.path.is_dir():
            return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())
        return self.path.stat().st_size


def parse(path: Path) -> Backup | None:
    """The backup ``path`` names, or None when it is not a backup's name."""
    match = _NAME.fullmatch(path.name)
    if match is None:
        return None
    taken = datetime.strptime(match["time"], TIME_FORMAT).replace(tzinfo=UTC)
    return Backup(path, taken, int(match["head"]))


def listing(folder: Path) -> list[Backup]:
    """The backups in ``folder``, newest first (by time, then head). Raises ``OSError`` when
    the folder cannot be read."""
    found = [b for b in (parse(entry) for entry in folder.iterdir()) if b is not None]
    return sorted(found, key=lambda b: (b.taken, b.head), reverse=True)


def _stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime(TIME_FORMAT)


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        where = f" ({error.filename})" if error.filename else ""
        return f"{error.strerror}{where}"
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def clean_temporaries(folder: Path) -> list[str]:
    """Remove what interrupted backups left (temporary names); returns their names."""
    removed = []
    for entry in folder.iterdir():
        if _TEMPORARY.fullmatch(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry.name)
    return removed


def _finish(temporary: Path, final: Path) -> None:
    if final.exists():  # never replace a backup (os.rename would, for a file)
        raise BackupError(f"{final} exists already")
    os.rename(temporary, final)
    _fsync(final.parent)


# SQLite ------------------------------------------------------------------------------------


def take_sqlite(store: str, folder: Path, now: datetime) -> Backup:
    """A backup of the SQLite store at ``store`` in ``folder``, verified. Blocking: run it on
    a thread."""
    temporary = folder / f"cairn-{_stamp(now)}{TEMPORARY}"
    temporary.mkdir()  # the folder gone, a file, or not writable: OSError, nothing written
    try:
        log_copy = temporary / Path(store).name
        head = backup(store, str(log_copy))
        for copy in (log_copy, Path(views_file(str(log_copy)))):
            if copy.exists():
                # A self-contained file: opening it read-only later then creates no -wal/-shm
                # beside it, and a verified backup is exactly the files that were verified.
                with contextlib.closing(sqlite3.connect(copy)) as conn:
                    conn.execute("PRAGMA journal_mode=DELETE")
                _fsync(copy)
        _fsync(temporary)
        verify_sqlite(Backup(temporary, now, head))
        final = folder / f"cairn-{_stamp(now)}-{head}"
        _finish(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return Backup(final, now, head)


def verify_sqlite(taken: Backup) -> None:
    """Each file opens read-only and passes ``PRAGMA integrity_check``, and the log's head is
    the one in the name."""
    files = sorted(taken.path.iterdir())
    logs = [f for f in files if not f.name.endswith(".views.db")]
    if len(logs) != 1:
        raise BackupError(f"{taken.path} holds {len(logs)} log files, not one")
    for file in files:
        with contextlib.closing(sqlite3.connect(f"{file.as_uri()}?mode=ro", uri=True)) as conn:
            result = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
            if result != ["ok"]:
                raise BackupError(f"{file} fails the integrity check: {'; '.join(result[:3])}")
            if file == logs[0]:
                head = int(conn.execute("SELECT MAX(position) FROM events").fetchone()[0] or 0)
                if head != taken.head:
                    raise BackupError(f"{file} is at position {head}, not {taken.head}")


def log_file_in(folder: Path) -> Path:
    """The log file of a SQLite backup folder."""
    logs = [
        f
        for f in folder.iterdir()
        if f.is_file() and f.suffix == ".db" and not f.name.endswith(".views.db")
    ]
    if len(logs) != 1:
        raise BackupError(f"{folder} is not a Cairn backup: it holds no single log file")
    return logs[0]


# PostgreSQL --------------------------------------------------------------------------------


_NICE: Final = ["nice", "-n", "19"] if shutil.which("nice") else []
"""PostgreSQL's tools run at the lowest CPU priority, as the SQLite copy does
(``_lower_priority``): the broker's own work comes first."""


async def _tool(*args: str, shell: str | None = None, nice: bool = True) -> tuple[int, str, str]:
    """Run a PostgreSQL tool (or a pipeline of them in ``shell``); killed if cancelled."""
    if shell is not None:
        process = await asyncio.create_subprocess_shell(
            shell, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    else:
        process = await asyncio.create_subprocess_exec(
            *(_NICE if nice else []),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    try:
        out, err = await asyncio.wait_for(process.communicate(), _PG_TOOL_S)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no reason given"


async def take_postgres(url: str, folder: Path, now: datetime) -> Backup:
    """A backup of the PostgreSQL database at ``url`` in ``folder``, verified: ``pg_dump -Fc``
    of the snapshot of a transaction that read the head, held open until the dump is done."""
    temporary = folder / f"cairn-{_stamp(now)}{DUMP}{TEMPORARY}"
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        async with await psycopg.AsyncConnection.connect(
            conninfo(url), autocommit=True, connect_timeout=10
        ) as conn:
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cursor = await conn.execute(
                "SELECT pg_export_snapshot(), (SELECT COALESCE(MAX(position), 0) FROM events)"
            )
            row = await cursor.fetchone()
            assert row is not None
            snapshot, head = str(row[0]), int(row[1])
            code, _, err = await _tool(
                "pg_dump", "-Fc", f"--snapshot={snapshot}", "-f", str(temporary), conninfo(url)
            )
            await conn.execute("ROLLBACK")
        if code != 0:
            raise BackupError(f"pg_dump failed: {_last_line(err)}")
        await verify_postgres(Backup(temporary, now, head))
        final = folder / f"cairn-{_stamp(now)}-{head}{DUMP}"
        _finish(temporary, final)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return Backup(final, now, head)


_MAX_POSITION: Final = r"""
/^COPY / && !copy {
    s = $0; sub(/^[^(]*\(/, "", s); sub(/\).*$/, "", s)
    n = split(s, cols, ", "); for (i = 1; i <= n; i++) if (cols[i] == "position") c = i
    copy = 1; next
}
copy && $0 == "\\." { exit }
copy { v = $c + 0; if (v > max) max = v }
END { print max + 0 }
"""


async def verify_postgres(taken: Backup) -> None:
    """``pg_restore --list`` reads the dump, and the events in it end at the head in the name
    (read by streaming the events table's data out of the dump, not by restoring it)."""
    code, _, err = await _tool("pg_restore", "--list", str(taken.path))
    if code != 0:
        raise BackupError(f"pg_restore --list {taken.path} failed: {_last_line(err)}")
    events = shlex.join(
        [*_NICE, "pg_restore", "--data-only", "--table=events", "-f", "-", str(taken.path)]
    )
    highest = shlex.join([*_NICE, "awk", "-F", "\t", _MAX_POSITION])
    code, out, err = await _tool(shell=f"{events} | {highest}")
    head = int(out.strip() or -1) if code == 0 and out.strip().isdigit() else -1
    if head != taken.head:
        raise BackupError(f"{taken.path} holds events up to position {head}, not {taken.head}")


async def restore_postgres(dump: Path, url: str) -> int:
    """Restore ``dump`` into the empty database at ``url``; returns the head restored."""
    shown = describe(url)
    try:
        async with await psycopg.AsyncConnection.connect(
            conninfo(url), autocommit=True, connect_timeout=10
        ) as conn:
            cursor = await conn.execute(
                "SELECT COUNT(*) FROM pg_tables"
                " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
            )
            row = await cursor.fetchone()
    except psycopg.Error as error:
        raise BackupError(f"--database-url {shown}: {_last_line(str(error))}") from None
    if row is None or row[0]:
        raise BackupError(
            f"refusing to restore into {shown}: it is not empty ({row and row[0]} tables);"
            " create an empty database for it (createdb) and name that one"
        )
    code, _, err = await _tool(
        "pg_restore", "--exit-on-error", "--single-transaction", "--no-owner",
        "-d", conninfo(url), str(dump), nice=False,
    )  # fmt: skip
    if code != 0:
        raise BackupError(f"pg_restore {dump} failed: {_last_line(err)}")
    async with await psycopg.AsyncConnection.connect(conninfo(url), autocommit=True) as conn:
        cursor = await conn.execute("SELECT COALESCE(MAX(position), 0) FROM events")
        found = await cursor.fetchone()
    return int(found[0]) if found else 0


# The schedule ------------------------------------------------------------------------------


class State(msgspec.Struct):
    """What the metrics show, shared by every worker through ``state_path``."""

    last_success_s: float = 0.0
    last_position: int = 0
    failed_total: int = 0


def state_path(settings: Settings) -> Path:
    """Beside the SQLite store (whose folder is the operator's and writable); for PostgreSQL in
    the temporary folder, one per database and backup folder. Never in the backup folder: its
    failing is what the state must record."""
    if not settings.postgres:
        return Path(settings.sqlite_file + ".backups.json")
    assert settings.backup_dir is not None
    key = f"{describe(settings.database_url)}\0{Path(settings.backup_dir).resolve()}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"cairn-backups-{digest}.json"


def read_state(path: Path) -> State:
    try:
        return msgspec.json.decode(path.read_bytes(), type=State)
    except (OSError, msgspec.DecodeError):
        return State()


def _write_state(path: Path, state: State) -> None:
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        partial.write_bytes(msgspec.json.encode(state))
        os.replace(partial, path)
    except OSError as error:  # the metrics lag; the backups themselves do not depend on it
        log.warning("backup_state_unwritable", path=str(path), reason=_reason(error))


def _lower_priority() -> None:
    """The backup thread runs at the lowest CPU priority (nice 19, Linux's nice is per
    thread): on a busy machine the writer's threads and the event loop come first, and the
    copy takes the CPU they leave (docs/performance.md: publish p99 while a backup runs)."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def _settle(future: asyncio.Future[T], result: T | None, error: BaseException | None) -> None:
    if future.done():  # the attempt was cancelled meanwhile (the lead lost, the server stopping)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]


async def in_thread(work: Callable[..., T], *args: Any) -> T:
    """``work(*args)`` on a daemon thread of its own at the lowest priority. A daemon: a server
    that stops does not wait for a long copy to end (what it leaves under a temporary name is
    removed at the next backup), as it would for a thread of an executor."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        _lower_priority()
        result: T | None = None
        error: BaseException | None = None
        try:
            result = work(*args)
        except BaseException as raised:
            error = raised
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(_settle, future, result, error)

    threading.Thread(target=run, name="cairn-backup", daemon=True).start()
    return await future


@dataclass
class Backups:
    """One attempt per ``every_s`` seconds, when the head moved since the newest backup."""

    settings: Settings
    head: Callable[[], Awaitable[int]]

    @property
    def folder(self) -> Path:
        assert self.settings.backup_dir is not None
        return Path(self.settings.backup_dir)

    async def run(self) -> None:
        every = self.settings.backup_every
        assert every is not None
        path = state_path(self.settings)
        state = read_state(path)
        if not state.last_success_s:  # a first start, or a new state file: the folder knows
            with contextlib.suppress(OSError):
                newest = await in_thread(self._newest)
                if newest is not None:
                    state.last_success_s, state.last_position = (
                        newest.taken.timestamp(),
                        newest.head,
                    )
                    _write_state(path, state)
        while True:
            await asyncio.sleep(every)
            if await self.attempt(state):
                _write_state(path, state)

    async def attempt(self, state: State) -> bool:
        """One look, and a backup if the head moved; True when something was recorded."""
        started = time.monotonic()
        try:
            newest = await in_thread(self._newest)
            head = await self.head()
            if head == (newest.head if newest is not None else 0):
                return False
            removed = await in_thread(clean_temporaries, self.folder)
            if removed:
                log.info("backup_leftovers_removed", backup_dir=str(self.folder), removed=removed)
            taken = await self._take(datetime.now(UTC))
            pruned = await in_thread(self._prune)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # any reason: logged, counted, tried again next time
            state.failed_total += 1
            log.error(
                "backup_failed",
                backup_dir=str(self.folder),
                reason=_reason(error),
                failures=state.failed_total,
            )
            return True
        state.last_success_s = taken.taken.timestamp()
        state.last_position = taken.head
        log.info(
            "backup_taken",
            path=str(taken.path),
            head=taken.head,
            bytes=taken.size,
            seconds=round(time.monotonic() - started, 3),
            deleted=pruned,
        )
        return True

    def _newest(self) -> Backup | None:
        found = listing(self.folder)
        return found[0] if found else None

    async def _take(self, now: datetime) -> Backup:
        if self.settings.postgres:
            return await take_postgres(self.settings.database_url, self.folder, now)
        return await in_thread(take_sqlite, self.settings.sqlite_file, self.folder, now)

    def _prune(self) -> list[str]:
        """Delete the backups beyond the newest ``--backup-keep``."""
        deleted = []
        for old in listing(self.folder)[self.settings.backup_keep :]:
            if old.path.is_dir():
                shutil.rmtree(old.path)
            else:
                old.path.unlink()
            deleted.append(old.path.name)
        return deleted
