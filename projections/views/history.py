"""The read models' past: every version of every queue and message row, with the positions
between which it held, so that a read "as of position p" is the rows whose span covers p.

A version starts at the position of the event that made it (``from_position``) and holds until
the next event of the same row (``to_position``; ``OPEN`` while it is the current one). The
``views`` projector writes them in the same transaction as the rows themselves, one version per
event, so the history is exactly the log folded, and a rebuild writes the same history again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

from broker.store.sql import Sql
from broker.store.tables import Table
from projections.views.messages import MessageViewRow
from projections.views.queues import QueueViewRow

OPEN: Final = 2**63 - 1
"""The ``to_position`` of a row's current version (a number, not NULL, so that "holds at p"
is one range condition an index answers)."""


class QueueVersionRow(QueueViewRow):
    from_position: int = 0
    to_position: int = OPEN


class MessageVersionRow(MessageViewRow):
    from_position: int = 0
    to_position: int = OPEN


QUEUE_VERSIONS: Final = Table(
    "queue_versions",
    QueueVersionRow,
    key=("queue_id", "from_position"),
    indexes=(("name", "to_position"), ("to_position",)),
)
MESSAGE_VERSIONS: Final = Table(
    "message_versions",
    MessageVersionRow,
    key=("message_id", "from_position"),
    indexes=(
        ("queue_id", "to_position", "from_position"),
        ("queue_id", "position"),
        ("queue_id", "status", "from_position"),
        ("to_position",),  # history retention: versions that stopped holding longest ago
    ),
)


class Versions:
    """The versions one batch makes, in position order per row; ``write`` closes each row's
    previous version where its next one starts."""

    def __init__(self) -> None:
        self.queues: dict[int, list[tuple[Any, ...]]] = {}
        self.messages: dict[str, list[tuple[Any, ...]]] = {}

    def queue(self, row: QueueViewRow, position: int) -> None:
        self.queues.setdefault(row.queue_id, []).append(msgspec.structs.astuple(row))
        self._stamp(self.queues[row.queue_id], position)

    def message(self, row: MessageViewRow, position: int) -> None:
        self.messages.setdefault(row.message_id, []).append(msgspec.structs.astuple(row))
        self._stamp(self.messages[row.message_id], position)

    @staticmethod
    def _stamp(versions: list[tuple[Any, ...]], position: int) -> None:
        versions[-1] = (*versions[-1], position)

    def write(self, conn: Sql) -> None:
        _write(conn, QUEUE_VERSIONS, "queue_id", self.queues)
        _write(conn, MESSAGE_VERSIONS, "message_id", self.messages)


def _write(conn: Sql, table: Table[Any], key: str, made: dict[Any, list[tuple[Any, ...]]]) -> None:
    if not made:
        return
    # "+to_position" keeps that term off the (to_position) index history retention walks:
    # SQLite would otherwise take it for "= OPEN", which every current version matches.
    conn.executemany(
        f"UPDATE {table.name} SET to_position = ? WHERE {key} = ? AND +to_position = ?",
        [(versions[0][-1], row_key, OPEN) for row_key, versions in made.items()],
    )
    rows: list[tuple[Any, ...]] = []
    for versions in made.values():
        rows += _closed(versions)
    conn.executemany(table.insert, rows)


def _closed(versions: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Each version (its row's values, then its from_position) with its to_position: where
    the next one starts, the last one open."""
    ends = [v[-1] for v in versions[1:]] + [OPEN]
    return [(*v, end) for v, end in zip(versions, ends, strict=True)]
