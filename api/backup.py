"""``cairn backup PATH`` and ``cairn restore PATH``: a consistent copy of the store, taken while
it runs, and putting one back.

SQLite's online backup API copies a file in one read transaction, so each copy is a snapshot
while the server keeps committing. There are two files (the log, and the read models beside
it); the read models are copied first, so their checkpoint can only be behind the copied log,
never ahead of it: after a restore the projector simply catches up.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from projections.models import views_file


class BackupError(Exception):
    """The backup or restore cannot be done; the message says why, in one line."""


def _copy(source: str, target: str) -> None:
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)  # all pages in one step: one snapshot of the source


def _log_head(path: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        try:
            row = conn.execute("SELECT MAX(position) FROM events").fetchone()
        except sqlite3.DatabaseError as error:
            raise BackupError(f"{path} is not a Cairn store ({error})") from None
    return int(row[0] or 0)


def _views_checkpoint(path: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        try:
            row = conn.execute("SELECT MAX(position) FROM projection_checkpoints").fetchone()
        except sqlite3.DatabaseError:
            return -1
    return int(row[0] or 0)


def backup(store: str, target: str) -> int:
    """Copy the store at ``store`` to ``target`` (and its read models beside it); returns the
    log position the copy holds."""
    if not Path(store).exists():
        raise BackupError(f"no store at {store}")
    if Path(target).exists():
        raise BackupError(f"{target} exists already: pick a new name")
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    if Path(views_file(store)).exists():
        _copy(views_file(store), views_file(target))
    _copy(store, target)
    return _log_head(target)


def restore(source: str, store: str) -> int:
    """Put the backup at ``source`` in place of the store at ``store`` (stop the server
    first); returns the log position restored."""
    if not Path(source).exists():
        raise BackupError(f"no backup at {source}")
    head = _log_head(source)
    Path(store).parent.mkdir(parents=True, exist_ok=True)
    _copy(source, store)
    views = views_file(source)
    if Path(views).exists() and 0 <= _views_checkpoint(views) <= head:
        _copy(views, views_file(store))
    else:  # no usable read models: they are rebuilt from the log at the next start
        for leftover in (views_file(store), views_file(store) + "-wal", views_file(store) + "-shm"):
            Path(leftover).unlink(missing_ok=True)
    return head
