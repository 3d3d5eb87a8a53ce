"""The read model as one batch of the ``views`` projector sees it while it folds.

Nothing a batch does is in the database until the projector writes it, at the end of the
batch; a read of the database halfway through would see the read model as it was before the
batch (a queue the batch deleted still live, so that its restore finds nothing deleted). So
every row is read from the database at most once, before the batch changed it, and from then on
kept and changed here: each event sees exactly what the events before it did, and a log folds
the same whether it comes in one batch or in many.

Only what the batch names is read: the live queues its events name, the messages its
transitions name, and, when such an event comes, a restored queue's deleted row and a purged
queue's live messages. Never every queue: a broker may hold 100,000 of them, and a batch names
a few.
"""

from __future__ import annotations

from collections.abc import Sequence

from broker.events import AnyEvent
from broker.store.sql import Sql, each_one_of
from projections.views.messages import LIVE, MESSAGE_VIEWS, TRANSITIONS, MessageViewRow
from projections.views.queues import QUEUE_VIEWS, QueueViewRow


class BatchRows:
    def __init__(self, conn: Sql, events: Sequence[AnyEvent]) -> None:
        self._conn = conn
        self.queues: dict[int, QueueViewRow] = {}
        """Every queue row read or made by the batch, by id: what the batch writes back."""
        self._live: dict[str, int] = {}
        """Name -> the live queue's id, at this point of the batch."""
        self._deleted: dict[str, int] = {}
        """Name -> the queue of that name this batch deleted last (what a restore brings back)."""
        self._scanned: set[int] = set()
        """Queues whose stored live messages were read (for a purge)."""
        for row in _stored_live_queues(conn, sorted({event.queue for event in events})):
            self.add_live(row)
        wanted = {e.message_id for e in events if isinstance(e, TRANSITIONS)}
        self.messages: dict[str, MessageViewRow] = _stored_messages(conn, sorted(wanted))
        """Every message row read or made by the batch, by id."""

    def live_queue(self, name: str) -> QueueViewRow | None:
        queue_id = self._live.get(name)
        return None if queue_id is None else self.queues[queue_id]

    def add_live(self, row: QueueViewRow) -> None:
        """``row`` is live now (created or restored)."""
        self.queues[row.queue_id] = row
        self._live[row.name] = row.queue_id

    def remove_live(self, row: QueueViewRow) -> None:
        """``row`` was deleted."""
        del self._live[row.name]
        self._deleted[row.name] = row.queue_id

    def deleted_queue(self, name: str) -> QueueViewRow | None:
        """The most recently deleted queue called ``name``: one this batch deleted, else the
        latest one deleted before it (queues of one name are created, so deleted, in order)."""
        queue_id = self._deleted.pop(name, None)
        if queue_id is not None:
            return self.queues[queue_id]
        rows = self._conn.query(
            f"{QUEUE_VIEWS.select} WHERE name = ? AND deleted ORDER BY queue_id DESC LIMIT 1",
            [name],
        )
        if not rows:
            return None
        stored = QUEUE_VIEWS.load(rows[0])
        return self.queues.setdefault(stored.queue_id, stored)

    def live_messages(self, queue_id: int) -> list[MessageViewRow]:
        """The queue's ready and leased messages at this point of the batch."""
        if queue_id not in self._scanned:
            self._scanned.add(queue_id)
            # Rows the batch read or made already are newer than the stored ones.
            for row in _stored_live_messages(self._conn, queue_id):
                self.messages.setdefault(row.message_id, row)
        return [m for m in self.messages.values() if m.queue_id == queue_id and m.status in LIVE]


def _stored_live_queues(conn: Sql, names: list[str]) -> list[QueueViewRow]:
    found: list[QueueViewRow] = []
    for where, params in each_one_of(conn, "name", names):
        sql = f"{QUEUE_VIEWS.select} WHERE NOT deleted AND {where}"
        found += QUEUE_VIEWS.load_all(conn.query(sql, params))
    return found


def _stored_live_messages(conn: Sql, queue_id: int) -> list[MessageViewRow]:
    sql = f"{MESSAGE_VIEWS.select} WHERE queue_id = ? AND status IN ('ready', 'leased')"
    return MESSAGE_VIEWS.load_all(conn.query(sql, [queue_id]))


def _stored_messages(conn: Sql, ids: list[str]) -> dict[str, MessageViewRow]:
    found: dict[str, MessageViewRow] = {}
    for where, params in each_one_of(conn, "message_id", ids):
        sql = f"{MESSAGE_VIEWS.select} WHERE {where}"
        for row in MESSAGE_VIEWS.load_all(conn.query(sql, params)):
            found[row.message_id] = row
    return found
