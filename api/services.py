"""The running broker inside one process: store, writer, projections and the background tasks
that keep them moving. Built and torn down by the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Final, TypeVar

import msgspec
import structlog
from starlette.requests import Request

from api import idempotency, tracing
from api.backups import Backups, state_path
from api.body import decode, read_body
from api.metrics import Metrics
from api.problems import ApiError, FieldError, from_broker
from api.runtime import Storage, lead, open_storage
from api.settings import Settings
from broker.commands import AnyCommand
from broker.decide import Reply
from broker.errors import BrokerError
from broker.idempotency import Replay
from broker.notify import QueueSignals, Watermark
from broker.ports import EventStore
from broker.store.sql import Database
from broker.writer import Commit, Writer, sweep_forever
from projections import redis_streams
from projections.redis_streams import Redis, RedisStreamPublisher
from projections.runner import ProjectionRunner
from projections.tail import LogTail

log = structlog.get_logger(component="cairn")
T = TypeVar("T")

VIEWS: Final = "views"


@dataclass
class Services:
    settings: Settings
    storage: Storage
    writer: Writer
    head: Watermark
    signals: QueueSignals
    metrics: Metrics
    tail: LogTail
    redis: Redis | None = None
    publisher: RedisStreamPublisher | None = None
    inflight: idempotency.InFlight = field(default_factory=idempotency.InFlight)
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def store(self) -> EventStore:
        return self.storage.store

    @property
    def views(self) -> Database:
        """The read models, for the queries."""
        return self.storage.views

    @property
    def runner(self) -> ProjectionRunner:
        return self.storage.runner

    async def projections(self) -> dict[str, int]:
        """Every projector and the position it has applied. The Redis publisher's checkpoint
        is read from Redis itself when it runs in the projector process."""
        positions = {name: w.value for name, w in self.runner.watermarks.items()}
        if self.publisher is not None:
            positions[self.publisher.name] = self.publisher.watermark.value
        elif self.redis is not None:
            published = await redis_streams.published_position(self.redis)
            if published is not None:
                positions[redis_streams.RedisStreamPublisher.name] = published
        return positions

    async def _check_answered(self, min_position: int | None) -> None:
        """422 for a ``min_position`` beyond the store's head: no command has been answered
        with it, so waiting for it could only time out. The store is asked only when the
        position is beyond the head this process knows (which may lag another node's)."""
        if min_position is None or min_position <= self.head.value:
            return
        head = await self.store.head()
        if min_position > head:
            raise ApiError(
                422,
                f"query.min_position: {min_position} is beyond the log's head ({head}); pass a"
                " position a command answered",
                errors=[FieldError("query.min_position", f"beyond the log's head ({head})")],
            )

    async def log_position(self, min_position: int | None) -> int:
        """Like ``read_position``, for reads of the log itself: waits on the head."""
        await self._check_answered(min_position)
        if (
            min_position is not None
            and self.head.value < min_position
            and not await self.head.wait_for(min_position, self.settings.read_wait_s)
        ):
            raise ApiError(
                503,
                f"the log has not reached position {min_position}"
                f" within {self.settings.read_wait_s:g} s (it is at {self.head.value})",
                headers={"Retry-After": "1"},
            )
        return self.head.value

    async def request_body(
        self,
        request: Request,
        type_: type[T],
        *,
        field_prefix: str = "body.",
        empty_ok: bool = False,
    ) -> T:
        """Read the body under the size limit and decode it."""
        raw = await read_body(request, self.settings.max_request_bytes)
        return decode(raw, type_, field_prefix=field_prefix, empty_ok=empty_ok)

    async def run(self, command: AnyCommand) -> Reply:
        """Run a command with the request's trace context; a refusal raises the domain's
        error, for the door to translate (the SQS door into SQS's errors)."""
        outcome = await self.writer.execute(_traced(command), None)
        assert not isinstance(outcome, Replay) and outcome is not None  # no key, no replay
        return outcome

    async def execute(self, command: AnyCommand, *, entries: str | None = None) -> Reply:
        """Run a command; its refusal as the API's problem (``entries``: see ``from_broker``).
        Under an idempotency key (``api/idempotency.py``) the key goes with it, and a key
        seen before answers the first run's answer instead (``Replayed``)."""
        command = _traced(command)
        pending = idempotency.PENDING.get()
        claim = None
        if pending is not None:
            if pending.replay is not None:
                return pending.replay
            if not pending.ran:
                claim, pending.ran = pending.claim, True
        try:
            outcome = await self.writer.execute(command, claim)
        except BrokerError as error:
            raise from_broker(error, entries=entries) from None
        if isinstance(outcome, Replay):
            raise idempotency.Replayed(outcome.record)
        return outcome

    async def read_position(self, min_position: int | None, projection: str = VIEWS) -> int:
        """Wait (bounded) until ``projection`` has applied ``min_position``; return where it
        stands, for ``X-Cairn-Position``."""
        watermark = self.runner.watermarks[projection]
        if min_position is not None and watermark.value < min_position:
            await self._check_answered(min_position)
            reached = await watermark.wait_for(min_position, self.settings.read_wait_s)
            if not reached:
                raise ApiError(
                    503,
                    f"projection {projection!r} has not reached position {min_position}"
                    f" within {self.settings.read_wait_s:g} s (it is at {watermark.value})",
                    headers={"Retry-After": "1"},
                )
        return watermark.value


def _traced(command: AnyCommand) -> AnyCommand:
    """The command with the request's trace context, which every event it appends keeps."""
    trace = tracing.CURRENT.get()
    return command if trace is None else msgspec.structs.replace(command, trace=trace)


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def start(settings: Settings, metrics: Metrics, redis: Redis | None) -> Services:
    storage = await open_storage(settings, coalesce_s=settings.projection_coalesce_s)
    store, runner = storage.store, storage.runner
    head = Watermark(await store.head())
    signals = QueueSignals()
    writer = Writer(store, finished_kept_s=settings.finished_kept_s)
    embedded = settings.projector == "embedded"
    publisher = (
        redis_streams.RedisStreamPublisher(store, redis, head, maxlen=settings.redis_stream_maxlen)
        if redis is not None and embedded
        else None
    )
    tail = LogTail(store, head, redis_streams.RedisFollower(redis) if redis is not None else None)

    def on_commit(commit: Commit) -> None:
        tail.offer(commit.events)
        head.advance(commit.head)
        signals.notify(commit.queues)
        if commit.queues:
            storage.announce_commit(commit.head, commit.queues)
        metrics.observe_commit(commit)

    writer.on_commit(on_commit)
    await writer.start()
    running = Services(
        settings=settings,
        storage=storage,
        writer=writer,
        head=head,
        signals=signals,
        metrics=metrics,
        tail=tail,
        redis=redis,
        publisher=publisher,
    )

    async def project() -> None:
        jobs = [runner.run(head), *([publisher.run()] if publisher is not None else [])]
        async with asyncio.TaskGroup() as group:  # one failing stops the other with it
            for job in jobs:
                group.create_task(job)

    async def sweep() -> None:
        await sweep_forever(writer, settings.sweep_interval_s)

    running.tasks = [
        # One sweeper for the whole broker (every worker and node): whoever leads it.
        asyncio.create_task(lead(storage.leadership("sweeper"), sweep), name="cairn-sweeper"),
        asyncio.create_task(storage.follow(head, signals), name="cairn-follow"),
        asyncio.create_task(tail.run(), name="cairn-tail"),
    ]
    if settings.backup_every is not None:
        # One node and one worker takes the backups: whoever leads the "backup" job.
        backups = Backups(settings, store.head)
        running.tasks.append(
            asyncio.create_task(
                lead(storage.leadership("backup"), backups.run), name="cairn-backup"
            )
        )
        metrics.watch_backups(state_path(settings))
    if embedded:  # else the projector process does it (api/projector.py)
        running.tasks.append(
            asyncio.create_task(lead(storage.leadership("projector"), project), name="cairn-lead")
        )
    _chain_exit_signals(running.shutdown)
    log.info(
        "broker_started",
        database=settings.database_url,
        durability=settings.durability,
        head=head.value,
    )
    return running


async def stop(running: Services) -> None:
    running.shutdown.set()
    for task in running.tasks:
        task.cancel()
    for task in running.tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await running.writer.stop()
    if running.redis is not None:
        await running.redis.aclose()
    await running.storage.close()
    log.info("broker_stopped", head=running.head.value)


def _chain_exit_signals(shutdown: asyncio.Event) -> None:
    """uvicorn waits for open requests before it runs the lifespan's shutdown, so a 20 s long
    poll would hold a SIGTERM up. Chain onto uvicorn's handlers to learn of the signal at once;
    waiting requests then answer (empty) and the server stops within its grace period."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)

        def handler(
            signum: int, frame: FrameType | None, previous: Callable[..., Any] | Any = previous
        ) -> None:
            loop.call_soon_threadsafe(shutdown.set)
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:  # nobody else handles it: do what it would do
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)

        with contextlib.suppress(ValueError):  # not the main thread (tests): nothing to chain
            signal.signal(sig, handler)
