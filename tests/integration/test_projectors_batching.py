"""Every projector folds a log to the same read model however the log is cut into batches: in
one batch, in batches of one, or cut anywhere. A batch must see what its own earlier events did
(a queue deleted and restored in one batch, a purge after a restore, an ack after a publish)
although none of it is in the database until the batch is written.

The logs are made by the real domain: random commands (delete, restore, purge, undo, redrive,
move tasks, nacks into dead-letter queues, lease and retention expiry over days) decided by the
writer over the in-memory store, on a clock the test moves. The read models are real SQLite
and PostgreSQL databases. The write side's own fold (``broker.writer.record``) is held to the
same rule."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.commands import (
    AckEntry,
    AckMessages,
    AnyCommand,
    CancelMoveTask,
    CreateQueue,
    DeleteQueue,
    ExtendLease,
    NackMessage,
    NewMessage,
    PublishMessages,
    PurgeQueue,
    QueueSettings,
    ReceiveMessages,
    RedriveMessages,
    RestoreQueue,
    StartMoveTask,
    Sweep,
    UndoPurge,
    UpdateQueue,
)
from broker.decide import ReceiveReply
from broker.errors import BrokerError
from broker.events import StoredEvent
from broker.store.memory import MemoryEventStore
from broker.store.postgres import PostgresDatabase
from broker.store.sql import Database, Sql
from broker.store.sqlite import SqliteDatabase
from broker.writer import Writer, record
from projections.analytics.buckets import ANALYTICS_BUCKETS, ANALYTICS_PENDING
from projections.analytics.projector import AnalyticsProjector
from projections.models import views_file
from projections.runner import Projector
from projections.views.history import MESSAGE_VERSIONS, QUEUE_VERSIONS
from projections.views.messages import MESSAGE_VIEWS
from projections.views.projector import ViewsProjector
from projections.views.queues import QUEUE_VIEWS
from tests.helpers import Counter, FakeClock, fresh_database
from tests.postgres import drop
from tests.postgres import fresh_database as fresh_postgres

NAMES = st.sampled_from(["a", "b", "dlq"])
SOME = st.integers(0, 30)
DAY = 86400
STEP = st.one_of(
    st.tuples(st.just("create"), NAMES, st.booleans()),
    st.tuples(st.just("update"), NAMES, st.sampled_from([0, 30, 600])),
    st.tuples(st.just("publish"), NAMES, st.integers(1, 3), st.sampled_from([0, 0, 5])),
    st.tuples(st.just("publish"), NAMES, st.integers(1, 3), st.sampled_from([0, 0, 5])),
    st.tuples(st.just("receive"), NAMES, st.integers(1, 3), st.sampled_from([None, 1, 600])),
    st.tuples(st.just("receive"), NAMES, st.integers(1, 3), st.sampled_from([None, 1, 600])),
    st.tuples(st.just("ack"), SOME),
    st.tuples(st.just("ack"), SOME),
    st.tuples(st.just("nack"), SOME, st.sampled_from([0, 5])),
    st.tuples(st.just("extend"), SOME, st.sampled_from([60, 43200])),
    st.tuples(st.just("advance"), st.sampled_from([1, 31, 3600, DAY, 8 * DAY])),
    st.tuples(st.just("purge"), NAMES),
    st.tuples(st.just("undo"), NAMES, SOME),
    st.tuples(st.just("delete"), NAMES),
    st.tuples(st.just("restore"), NAMES),
    st.tuples(st.just("redrive"), NAMES, st.sampled_from([None, "a", "b"])),
    st.tuples(st.just("move"), NAMES),
    st.tuples(st.just("cancel"), NAMES),
)
START: list[tuple[Any, ...]] = [
    ("create", "dlq", False),
    ("create", "a", True),
    ("create", "b", True),
]
# A queue deleted, restored and used at once, often: what its messages do next then meets
# the restore in one batch, and the delete in another or the same.
STEPS = st.one_of(
    STEP.map(lambda step: [step]),
    st.tuples(NAMES, st.sampled_from(["purge", "publish", "receive", "delete"])).map(
        lambda pair: [
            ("delete", pair[0]),
            ("restore", pair[0]),
            {
                "purge": ("purge", pair[0]),
                "publish": ("publish", pair[0], 1, 0),
                "receive": ("receive", pair[0], 2, None),
                "delete": ("delete", pair[0]),
            }[pair[1]],
        ]
    ),
)
SCRIPTS = st.lists(STEPS, min_size=5, max_size=40).map(
    lambda steps: START + [step for some in steps for step in some]
)
CUTS = st.lists(st.integers(1, 12), min_size=1, max_size=8)
"""Batch sizes, used in turn until the log is cut up."""
TABLES = (
    QUEUE_VIEWS,
    MESSAGE_VIEWS,
    QUEUE_VERSIONS,
    MESSAGE_VERSIONS,
    ANALYTICS_BUCKETS,
    ANALYTICS_PENDING,
)
_body = msgspec.Raw(b'{"n": 1}')


class Script:
    """Runs a script of steps as commands through the writer; refused commands are skipped,
    as a client would see them refused."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.store = MemoryEventStore()
        self.writer = Writer(
            self.store,
            clock=self.clock,
            new_id=Counter("m"),
            new_receipt=Counter("r"),
        )
        self.leases: list[tuple[str, str, str]] = []
        self.tasks = Counter("task")

    def command(self, step: tuple[Any, ...]) -> AnyCommand | None:
        match step:
            case ("create", name, with_dlq):
                dead = {"max_receive_count": 2, "dead_letter_queue": "dlq"} if with_dlq else {}
                return CreateQueue(
                    queue=name,
                    settings=QueueSettings(visibility_timeout_s=30, retention_s=2 * DAY, **dead),
                )
            case ("update", name, delay):
                return UpdateQueue(queue=name, changes={"delay_s": min(delay, 900)})
            case ("publish", name, count, delay):
                return PublishMessages(
                    queue=name,
                    messages=tuple(
                        NewMessage(
                            message_id=self.writer.new_id(),
                            body=_body,
                            delay_s=delay,
                            priority=i % 2 * 9,
                            group_id="g" if i == 2 else None,
                        )
                        for i in range(count)
                    ),
                )
            case ("receive", name, count, vt):
                return ReceiveMessages(queue=name, max_messages=count, visibility_timeout_s=vt)
            case ("ack" | "nack" | "extend", index, *rest) if self.leases:
                queue, mid, receipt = self.leases[index % len(self.leases)]
                if step[0] == "ack":
                    entry = AckEntry(message_id=mid, receipt=receipt)
                    return AckMessages(queue=queue, entries=(entry,))
                if step[0] == "nack":
                    return NackMessage(
                        queue=queue, message_id=mid, receipt=receipt, delay_s=rest[0], reason="r"
                    )
                return ExtendLease(
                    queue=queue, message_id=mid, receipt=receipt, visibility_timeout_s=rest[0]
                )
            case ("advance", seconds):
                self.clock.advance(seconds)
                return Sweep()
            case ("purge", name):
                return PurgeQueue(queue=name)
            case ("undo", name, index):
                purges = [e.position for e in self.store.events if e.type == "queue.purged"]
                return UndoPurge(queue=name, purge=purges[index % len(purges)]) if purges else None
            case ("delete", name):
                return DeleteQueue(queue=name)
            case ("restore", name):
                return RestoreQueue(queue=name)
            case ("redrive", name, to):
                return RedriveMessages(queue=name, to=to)
            case ("move", name):
                return StartMoveTask(queue=name, task=self.tasks(), max_per_second=1)
            case ("cancel", name):
                started = [e for e in self.store.events if e.type == "queue.move_task_started"]
                task = msgspec.json.decode(started[-1].data)["task"] if started else "none"
                return CancelMoveTask(queue=name, task=task)
        return None

    async def run(self, script: Sequence[tuple[Any, ...]]) -> list[StoredEvent]:
        await self.writer.start()
        try:
            for step in script:
                command = self.command(step)
                if command is None:
                    continue
                try:
                    reply = await self.writer.execute(command)
                except BrokerError:
                    continue
                if isinstance(reply, ReceiveReply):
                    self.leases += [(step[1], m.id, m.receipt) for m in reply.messages]
        finally:
            await self.writer.stop()
        return list(self.store.events)


def log_of(script: Sequence[tuple[Any, ...]]) -> list[StoredEvent]:
    return asyncio.run(Script().run(script))


def cut(log: list[StoredEvent], sizes: Sequence[int]) -> Iterator[list[StoredEvent]]:
    start, turn = 0, 0
    while start < len(log):
        size = sizes[turn % len(sizes)]
        yield log[start : start + size]
        start, turn = start + size, turn + 1


def _dump(conn: Sql) -> dict[str, list[tuple[Any, ...]]]:
    # Sorted: rows compare the same whatever order the database returns them in.
    return {t.name: sorted(conn.query(t.select), key=repr) for t in TABLES}


async def fold(
    db: Database, projector: Projector, batches: Iterator[list[StoredEvent]]
) -> dict[str, list[tuple[Any, ...]]]:
    """The read model ``projector`` makes of the batches, each applied in a transaction of its
    own as the runner applies them, from empty tables."""
    await db.transaction(projector.reset)
    for batch in batches:
        await db.transaction(lambda conn, b=batch: projector.apply(conn, b))
    return await db.snapshot(_dump)


async def every_cut_folds_the_same(db: Database, log: list[StoredEvent], sizes: list[int]) -> None:
    for projector in (ViewsProjector(), AnalyticsProjector()):
        whole = await fold(db, projector, iter([log]))
        for sizes_used in ([1], [2], [3], sizes):
            folded = await fold(db, projector, cut(log, sizes_used))
            assert folded == whole, (projector.name, sizes_used)


def on_sqlite(log: list[StoredEvent], sizes: list[int]) -> dict[str, list[tuple[Any, ...]]]:
    """Check ``every_cut_folds_the_same`` on fresh SQLite read models; returns the views
    projector's read model of the log (the fold of the last cut)."""
    with tempfile.TemporaryDirectory() as directory:
        db = SqliteDatabase(
            views_file(str(fresh_database(Path(directory)))), table="projection_checkpoints"
        )

        async def check() -> dict[str, list[tuple[Any, ...]]]:
            await db.open()
            try:
                await every_cut_folds_the_same(db, log, sizes)
                return await fold(db, ViewsProjector(), iter([log]))
            finally:
                await db.close()

        return asyncio.run(check())


_settings = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@_settings
@given(script=SCRIPTS, sizes=CUTS)
def test_each_projector_folds_a_log_the_same_in_any_batches_on_sqlite(
    script: list[tuple[Any, ...]], sizes: list[int]
) -> None:
    on_sqlite(log_of(script), sizes)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    url = fresh_postgres()
    yield url
    drop(url)


@settings(_settings, max_examples=40)
@given(script=SCRIPTS, sizes=CUTS)
def test_each_projector_folds_a_log_the_same_in_any_batches_on_postgres(
    postgres_url: str, script: list[tuple[Any, ...]], sizes: list[int]
) -> None:
    log = log_of(script)

    async def check() -> None:
        db = PostgresDatabase(postgres_url, name="views")
        await db.open()
        try:
            await every_cut_folds_the_same(db, log, sizes)
        finally:
            await db.close()

    asyncio.run(check())


async def _refold(log: list[StoredEvent], sizes: Sequence[int]) -> dict[str, Any]:
    """The write-side state that ``record`` folds from ``log``, one transaction per batch."""
    store = MemoryEventStore()
    for batch in cut(log, sizes):
        await store.transact(lambda tx, b=batch: record(tx, [e.event() for e in b]))
    assert [e.position for e in store.events] == [e.position for e in log]
    return {
        "queues": store.queues,
        "messages": store.messages,
        "groups": store.groups,
        "purges": store.purges,
        "dedup": store.dedup,
    }


@_settings
@given(script=SCRIPTS, sizes=CUTS)
def test_the_write_side_folds_a_log_the_same_in_any_batches(
    script: list[tuple[Any, ...]], sizes: list[int]
) -> None:
    log = log_of(script)
    whole = asyncio.run(_refold(log, [len(log)]))
    assert asyncio.run(_refold(log, [1])) == whole
    assert asyncio.run(_refold(log, sizes)) == whole


def test_a_queue_deleted_and_restored_in_one_batch_folds_as_in_three() -> None:
    """The reproduction of issue 20's first defect, kept as an example of its own."""
    log = log_of([("create", "q", False), ("delete", "q"), ("restore", "q")])
    assert [e.type for e in log] == ["queue.created", "queue.deleted", "queue.restored"]
    queues = on_sqlite(log, [2])[QUEUE_VIEWS.name]
    assert [QUEUE_VIEWS.load(row).deleted for row in queues] == [False]


def test_an_ack_after_its_publish_time_was_dropped_folds_the_same_in_any_batches() -> None:
    """A lease extended for over 15 days: its message's publish time is pruned (by a later
    event's time) before the ack comes in batches of one; in one batch, too."""
    hold = [("extend", 0, 43200), ("advance", 11 * 3600)] * 33
    script = [*START, ("publish", "a", 1, 0), ("receive", "a", 1, 600), *hold]
    log = log_of([*script, ("publish", "b", 1, 0), ("ack", 0)])
    assert log[-1].type == "message.acked"
    on_sqlite(log, [3])


def test_a_purge_after_a_restore_in_one_batch_purges_the_messages_stored_before() -> None:
    script = [*START, ("publish", "a", 2, 0), ("delete", "a"), ("restore", "a"), ("purge", "a")]
    log = log_of(script)
    assert [e.type for e in log][-3:] == ["queue.deleted", "queue.restored", "queue.purged"]
    messages = on_sqlite(log, [len(log) - 2, 2])[MESSAGE_VIEWS.name]
    assert [MESSAGE_VIEWS.load(row).status for row in messages] == ["purged", "purged"]
