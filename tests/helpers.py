"""Test doubles that are real code: a clock the test moves, and predictable identifiers."""

from __future__ import annotations

import contextlib
import itertools
import shutil
import sqlite3
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import msgspec

from broker.commands import NewMessage
from projections.models import views_file

START = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Counter:
    """Identifiers with a prefix and a running number: ``m-1``, ``m-2``, ..."""

    def __init__(self, prefix: str) -> None:
        self._numbers = itertools.count(1)
        self.prefix = prefix

    def __call__(self) -> str:
        return f"{self.prefix}-{next(self._numbers)}"


_ids = Counter("msg")


def message(
    body: object = None,
    *,
    delay_s: int | None = None,
    dedup_id: str | None = None,
    attributes: dict[str, str] | None = None,
) -> NewMessage:
    return NewMessage(
        message_id=_ids(),
        body=msgspec.Raw(msgspec.json.encode(body)),
        attributes=attributes or {},
        delay_s=delay_s,
        dedup_id=dedup_id,
    )


@cache
def _template_database() -> Path:
    """One migrated SQLite file per test session; tests copy it instead of migrating again."""
    import asyncio

    from broker.store.tortoise import migrate
    from projections.models import APPS

    directory = Path(tempfile.mkdtemp(prefix="cairn-template-"))
    path = directory / "template.db"
    # A thread of its own: callers may already be inside a running event loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, migrate(f"sqlite:///{path}", APPS)).result()
    for file in (path, Path(views_file(str(path)))):
        with contextlib.closing(sqlite3.connect(file)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # fold the WAL into what we copy
    return path


def fresh_database(directory: Path) -> Path:
    """A migrated, empty database in ``directory``: the log's file (returned) and the read
    models' file beside it."""
    template = _template_database()
    target = directory / "cairn.db"
    shutil.copyfile(template, target)
    shutil.copyfile(views_file(str(template)), views_file(str(target)))
    return target
