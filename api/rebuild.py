"""``cairn projections rebuild [NAME]``: replay the log into fresh read models, with a progress
bar. Safe while servers run on the same database: the reset and every batch are transactions,
and a running server's projector sees the rewound checkpoint and helps rather than fights."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from api.runtime import open_storage
from api.settings import Settings
from broker.notify import Watermark
from broker.ports import EventStore
from projections import redis_streams


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-" if speed is None else f"{speed:,.0f} events/s", style="progress.data.speed")


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
        RateColumn(),
        TimeRemainingColumn(),
        console=console,
    )


async def rebuild(settings: Settings, name: str | None, console: Console) -> dict[str, Any]:
    """Rebuild ``name`` (or every projection); returns what was done, per projection."""
    storage = await open_storage(settings)
    store, runner = storage.store, storage.runner
    redis = redis_streams.connect(settings.redis_url) if settings.redis_url else None
    try:
        known = [*runner.names, *(["redis"] if redis is not None else [])]
        if name is not None and name not in known:
            raise LookupError(f"no projection named {name!r} (known: {', '.join(known)})")
        done: dict[str, Any] = {}
        head = await store.head()
        with _progress(console) as progress:
            for each in [name] if name else known:
                task = progress.add_task(each, total=max(head, 1))
                started = time.perf_counter()
                if each == "redis":
                    assert redis is not None
                    applied = await _rebuild_redis(store, redis, head, progress, task)
                else:
                    await runner.reset(each)
                    applied = 0
                    while step := await runner.step(each):
                        applied += step
                        progress.update(task, completed=runner.watermarks[each].value)
                progress.update(task, completed=max(head, 1))
                done[each] = {"events": applied, "seconds": time.perf_counter() - started}
    finally:
        if redis is not None:
            await redis.aclose()
        await storage.close()
    return done


async def _rebuild_redis(
    store: EventStore, redis: Any, head: int, progress: Progress, task: Any
) -> int:
    publisher = redis_streams.RedisStreamPublisher(store, redis, Watermark(head))
    await publisher.reset()
    position = applied = 0
    while batch := await store.read(position, 1000):
        await publisher.publish(batch)
        position = batch[-1].position
        applied += len(batch)
        progress.update(task, completed=position)
    return applied
