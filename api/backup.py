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

from broker.errors import StoreUnavailableError
from broker.store.sqlite import StoreLock, check_new_file
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
    try:
        check_new_file(target)
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    except StoreUnavailableError as error:
        raise BackupError(f"cannot write a backup to {target}: {error.detail}") from None
    except OSError as error:
        raise BackupError(f"cannot write a backup to {target}: {error.strerror}") from None
    lock = StoreLock(store)
    try:
        lock.share()  # a restore must not replace the files while they are copied
        if Path(views_file(store)).exists():
            _copy(views_file(store), views_file(target))
        _copy(store, target)
    except StoreUnavailableError as error:
        raise BackupError(f"cannot back up {store}: {error.detail}") from None
    except sqlite3.Error as error:  # the target's device filled up, or went away, meanwhile
        raise BackupError(f"cannot write a backup to {target}: {error}") from None
    finally:
        lock.release()
    return _log_head(target)


def restore(source: str, store: str, *, rewind: bool = False) -> int:
    """Put the backup at ``source`` in place of the store at ``store``; returns the log
    position restored.

    Refused while any process has the store open: a running broker would go on handing out
    positions from its own idea of the head, so feeds that already delivered position p would
    never see the new p. Also refused, unless ``rewind``, when the store holds events beyond
    the backup's head: those answered writes would be lost and their positions given out again.
    """
    if not Path(source).exists():
        raise BackupError(f"no backup at {source}")
    head = _log_head(source)
    lock = StoreLock(store)
    Path(store).parent.mkdir(parents=True, exist_ok=True)
    try:
        lock.exclusive()
    except StoreUnavailableError as error:
        raise BackupError(
            f"refusing to restore over {store}: {error.detail}; stop every `cairn serve` (and"
            " `cairn projections rebuild`) using it first"
        ) from None
    try:
        current = _log_head(store) if Path(store).exists() else 0
        if current > head and not rewind:
            raise BackupError(
                f"refusing to restore: {store} is at position {current}, the backup at {head};"
                f" events {head + 1}..{current} would be lost and their positions reused"
                " (pass --rewind if that is what you want)"
            )
        _copy(source, store)
        views = views_file(source)
        target_views = views_file(store)
        for leftover in (target_views, target_views + "-wal", target_views + "-shm"):
            Path(leftover).unlink(missing_ok=True)
        if Path(views).exists() and 0 <= _views_checkpoint(views) <= head:
            _copy(views, target_views)
        # else: no usable read models; they are rebuilt from the log at the next start
    finally:
        lock.release()
    return head
