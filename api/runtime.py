"""The one composition root: what a Cairn process opens for its settings, whichever process it
is. The HTTP workers (``api/services.py``), the projector process (``api/projector.py``) and
``cairn projections rebuild`` (``api/rebuild.py``) all open their store, read models and
projections here, so the choice of adapter for a database URL is made in one place:

- ``sqlite://``: the log in one file, the read models in another beside it; processes on the
  same file tell each other of commits and checkpoint moves with datagrams
  (``broker/store/datagrams.py``), and look at the head once a second in case one was lost;
  one-of-a-kind jobs (projectors, sweeper) are led by whoever holds a file lock.
- ``postgresql://``: everything in one database shared by every node; commits and checkpoint
  moves are announced with NOTIFY and heard with LISTEN; the jobs are led by whoever holds a
  session advisory lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import structlog

from api.settings import Settings
from broker.errors import StoreUnavailableError
from broker.kafka import KafkaState
from broker.notify import QueueSignals, Watermark
from broker.ports import EventStore
from broker.store import postgres, tortoise
from broker.store.datagrams import Datagrams
from broker.store.kafka import SqlKafkaState
from broker.store.sql import Database
from broker.store.sqlite import SqliteDatabase, SqliteEventStore, check_usable
from projections.analytics.projector import AnalyticsProjector
from projections.models import APPS, views_file
from projections.runner import ProjectionRunner
from projections.views.projector import ViewsProjector
from projections.views.retention import HistoryRetention

log = structlog.get_logger(component="cairn.runtime")

MIGRATE_WITHIN_S: Final = 60.0
LEAD_RETRY_S: Final = 1.0
"""How often a process that does not lead a job tries to take it over: with the leader gone
(even by kill -9, which closes its connection or file at once) a job restarts elsewhere within
about this long."""
_FALLBACK_POLL_S: Final = 1.0
"""A slow look at the head and the checkpoints beside the notifications, in case one is lost
(a full datagram buffer, a broken LISTEN connection)."""
_CHECKPOINT: Final = "checkpoint"


class Leadership(Protocol):
    name: str

    async def acquire(self) -> bool:
        """Take the lead if nobody has it; True if this process has it now."""

    async def held(self) -> bool:
        """Still the leader."""

    async def release(self) -> None:
        """Give the lead up."""


class FileLeadership:
    """The lead among the processes of one machine that share a SQLite store: an exclusive
    ``flock`` on ``<store>.<name>.lock``, which the kernel drops when the holder dies."""

    def __init__(self, store_path: str, name: str) -> None:
        self.name = name
        self._path = f"{store_path}.{name}.lock"
        self._fd: int | None = None

    async def acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def held(self) -> bool:
        return self._fd is not None

    async def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass
class Storage:
    """The log, the read models and the projections over them, as one process sees them."""

    settings: Settings
    store: EventStore
    views: Database
    runner: ProjectionRunner
    kafka: KafkaState
    """What the Kafka door keeps beside the log (nodes, producer ids, group offsets)."""
    datagrams: Datagrams | None = None
    """SQLite's wake-ups between the processes of this machine (PostgreSQL has NOTIFY)."""
    _leaderships: list[Leadership] = field(default_factory=list)

    async def close(self) -> None:
        for leadership in self._leaderships:
            await leadership.release()
        if self.datagrams is not None:
            self.datagrams.close()
        await self.views.close()
        await self.store.close()

    def leadership(self, name: str) -> Leadership:
        lead: Leadership
        if self.settings.postgres:
            lead = postgres.Leadership(self.settings.database_url, name)
        else:
            lead = FileLeadership(self.settings.sqlite_file, name)
        self._leaderships.append(lead)
        return lead

    def announce_commit(self, head: int, queues: Iterable[str]) -> None:
        """Tell the other processes of this machine about a commit made here (on PostgreSQL
        the commit's own NOTIFY already did)."""
        if self.datagrams is not None:
            self.datagrams.send(postgres.head_payload(head, queues))

    async def announce_checkpoints(self) -> None:
        """Tell the other processes the projections moved (they wait on them for
        ``min_position``)."""
        if self.datagrams is not None:
            # The positions ride along, so that a listener need not read them back.
            positions = (f"{name}={w.value}" for name, w in self.runner.watermarks.items())
            self.datagrams.send(" ".join([_CHECKPOINT, *positions]))
        elif isinstance(self.views, postgres.PostgresDatabase):
            await self.views.transaction(lambda conn: conn.notify(postgres.CHECKPOINT_CHANNEL, ""))

    async def follow(self, head: Watermark, signals: QueueSignals | None = None) -> None:
        """Keep ``head`` (and the long polls behind ``signals``) and the projections'
        watermarks moving with the commits and projector batches of every other process."""
        refreshing: set[asyncio.Task[None]] = set()

        def refresh() -> None:
            if not refreshing:  # one refresh at a time; later news waits for the next one
                task = asyncio.create_task(self.runner.refresh())
                refreshing.add(task)
                task.add_done_callback(refreshing.discard)

        async def heard(channel: str, payload: str | None) -> None:
            if channel == postgres.CHECKPOINT_CHANNEL:
                refresh()
            elif payload is None:  # (re)connected: whatever was sent meanwhile, look again
                self._saw_head(head, signals, await self.store.head(), None)
            else:
                self._saw_head(head, signals, *postgres.parse_head(payload))

        jobs: list[Coroutine[Any, Any, None]] = [self._poll(head, signals)]
        if self.datagrams is not None:

            def datagram(payload: str) -> None:
                if payload.startswith(_CHECKPOINT):
                    if not self._saw_checkpoints(payload):
                        refresh()
                else:
                    self._saw_head(head, signals, *postgres.parse_head(payload))

            self.datagrams.listen(datagram)
        else:
            channels = [postgres.HEAD_CHANNEL, postgres.CHECKPOINT_CHANNEL]
            jobs.append(postgres.Listener(self.settings.database_url, channels, heard).run())
        await asyncio.gather(*jobs)

    async def _poll(self, head: Watermark, signals: QueueSignals | None) -> None:
        while True:
            await asyncio.sleep(_FALLBACK_POLL_S)
            with contextlib.suppress(StoreUnavailableError):
                self._saw_head(head, signals, await self.store.head(), None)
                await self.runner.refresh()

    def _saw_checkpoints(self, payload: str) -> bool:
        """Move the watermarks forward to the positions a projector announced it committed;
        False when the payload says less than that (no positions, or a move back, which only
        a read of the checkpoints can confirm: a rebuild, or an older datagram)."""
        known = False
        for item in payload.split()[1:]:
            name, _, position = item.partition("=")
            watermark = self.runner.watermarks.get(name)
            if watermark is None or not position.isdigit():
                continue
            if int(position) < watermark.value:
                return False
            watermark.advance(int(position))
            known = True
        return known

    @staticmethod
    def _saw_head(
        head: Watermark,
        signals: QueueSignals | None,
        position: int,
        queues: frozenset[str] | None,
    ) -> None:
        if position <= head.value:
            return
        head.advance(position)
        if signals is not None:
            if queues is None:
                signals.notify_all()
            else:
                signals.notify(queues)


async def lead(leadership: Leadership, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``work`` for as long as this process holds ``leadership``; otherwise keep trying to
    take it over. When the lead is lost (the connection that holds it broke), ``work`` is
    cancelled: the job now runs elsewhere."""
    while True:
        if not await leadership.acquire():
            await asyncio.sleep(LEAD_RETRY_S)
            continue
        log.info("leadership_taken", job=leadership.name, pid=os.getpid())
        task = asyncio.create_task(work(), name=f"cairn-{leadership.name}")
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=LEAD_RETRY_S)
                if not task.done() and not await leadership.held():
                    log.warning("leadership_lost", job=leadership.name)
                    break
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if task.cancelled():
            continue
        if task.exception() is not None:  # a bug: say so, and start the job again
            log.error("led_job_failed", job=leadership.name, exc_info=task.exception())
            await asyncio.sleep(LEAD_RETRY_S)
            continue
        await leadership.release()
        return  # the work finished on its own


async def check(settings: Settings, *, must_exist: bool = False) -> None:
    """Raise ``StoreUnavailableError`` if the store cannot be used, before anything opens it
    (``must_exist``: a command that must not create an empty store by mistake)."""
    if settings.postgres:
        await postgres.check_reachable(settings.database_url)
    else:
        await asyncio.to_thread(check_usable, settings.sqlite_file, must_exist=must_exist)


async def migrate(settings: Settings) -> None:
    """Create or upgrade the schema of the log and of the read models; idempotent."""
    await tortoise.migrate(settings.database_url, APPS)


async def open_storage(settings: Settings, *, coalesce_s: float = 0.0) -> Storage:
    """Open the store and the read models (migrated already) and load the projections'
    checkpoints. ``coalesce_s``: how long a busy projector lets commits pile up per batch."""
    store: EventStore
    views: Database
    if settings.postgres:
        pg_store = postgres.PostgresEventStore(
            settings.database_url, durability=settings.durability
        )
        store, kafka = pg_store, SqlKafkaState(pg_store.database)
        views = postgres.PostgresDatabase(settings.database_url, name="views")
    else:
        sqlite_store = SqliteEventStore(settings.sqlite_file, durability=settings.durability)
        store, kafka = sqlite_store, SqlKafkaState(sqlite_store.database)
        views = SqliteDatabase(
            views_file(settings.sqlite_file), table="projection_checkpoints", durability="normal"
        )
    await store.open()
    try:
        await views.open()
        runner = ProjectionRunner(
            store,
            views,
            [
                ViewsProjector(HistoryRetention(settings.history_retention)),
                AnalyticsProjector(settings.history_retention),
            ],
            coalesce_s=coalesce_s,
        )
        await runner.start()
    except BaseException:
        await views.close()
        await store.close()
        raise
    datagrams = None if settings.postgres else Datagrams(settings.sqlite_file)
    storage = Storage(
        settings=settings,
        store=store,
        views=views,
        runner=runner,
        kafka=kafka,
        datagrams=datagrams,
    )
    runner.on_step = storage.announce_checkpoints
    return storage
