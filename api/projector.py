"""The projector process: applies the log to the read models and to Redis Streams, beside the
serving processes, which then only follow its checkpoints.

Why a process of its own: every command makes events (a message makes three: published,
leased, acked), and folding them costs Python time. In a serving process that time is taken
from HTTP on the same GIL; in ``--workers N`` every worker would also fold the same events
and all but one would throw the work away. Here one process does it once, on the other core.

It learns of new events from the serving processes' commit wake-ups (datagrams on SQLite,
NOTIFY on PostgreSQL; ``Storage.follow``), with a look at the head once a second in case one
was lost, so an idle broker costs it next to nothing; and it stops when told to or when the
process that started it is gone.

``cairn serve`` starts it as ``python -m api.projector``; its settings are the ``CAIRN_*``
variables ``serve`` exported after validating them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any, Final

import structlog

from api import logs
from api.runtime import lead, open_storage
from api.settings import Settings, from_env
from broker.notify import Watermark
from projections import redis_streams

log = structlog.get_logger(component="cairn.projector")

_PARENT_CHECK_S: Final = 1.0


async def run(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    storage = await open_storage(settings, coalesce_s=settings.projection_coalesce_s)
    store, runner = storage.store, storage.runner
    redis = redis_streams.connect(settings.redis_url) if settings.redis_url else None
    head = Watermark(await store.head())

    async def project() -> None:
        jobs = [runner.run(head)]
        if redis is not None:
            publisher = redis_streams.RedisStreamPublisher(
                store, redis, head, maxlen=settings.redis_stream_maxlen
            )
            jobs.append(publisher.run())
        async with asyncio.TaskGroup() as group:  # one failing stops the other with it
            for job in jobs:
                group.create_task(job)

    tasks: list[asyncio.Task[Any]] = [
        # One projector for the whole broker: on PostgreSQL every node starts one of these
        # processes, and the others wait to take over.
        asyncio.create_task(lead(storage.leadership("projector"), project), name="cairn-lead"),
        asyncio.create_task(storage.follow(head), name="cairn-follow"),
        asyncio.create_task(_watch_parent(stop), name="cairn-parent"),
    ]
    log.info("projector_started", head=head.value, redis=redis is not None)
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if redis is not None:
            await redis.aclose()
        await storage.close()
        log.info("projector_stopped", positions={n: w.value for n, w in runner.watermarks.items()})


async def _watch_parent(stop: asyncio.Event) -> None:
    """Stop if the process that started us is gone (even a kill -9 of it)."""
    parent = os.getppid()
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("projector_orphaned")
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), _PARENT_CHECK_S)


def main() -> int:
    settings = from_env()
    # A file of its own: two processes rotating one file by size would trip over each other.
    log_file = None
    if settings.log_file:
        path = Path(settings.log_file)
        log_file = str(path.with_name(f"{path.stem}.projector{path.suffix}"))
    logs.configure(
        level=settings.log_level,
        fmt=settings.log_format,
        file=log_file,
        max_bytes=settings.log_file_max_bytes,
        backups=settings.log_file_backups,
    )
    asyncio.run(run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
