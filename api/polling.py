"""Long polling: a receive that waits, bounded, until something is available. Both doors use
it (the native receive's ``wait_s``, SQS's ``WaitTimeSeconds``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from api.services import Services
from broker.commands import ReceiveMessages
from broker.decide import Delivery, ReceiveReply
from broker.state import to_us


async def long_poll(
    s: Services, request: Request, command: ReceiveMessages, wait_s: float
) -> list[Delivery]:
    """Receive now; while nothing is available, wait up to ``wait_s`` for a change to the queue
    (a commit on any node, a delayed message's time, shutdown) and look again. A client that
    disconnects while waiting gets nothing leased."""
    name = command.queue
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    gone: asyncio.Event | None = None
    watcher: asyncio.Task[None] | None = None
    try:
        while True:
            # Listen before looking: a publish committed after the look still wakes us.
            changed = s.signals.listen(name)
            reply = await s.run(command)  # a refusal is the door's to translate
            assert isinstance(reply, ReceiveReply)
            remaining = deadline - loop.time()
            if reply.messages or remaining <= 0 or s.shutdown.is_set():
                return reply.messages
            if reply.next_visible_at is not None:  # a delayed message becomes visible: no event
                until_visible = (reply.next_visible_at - to_us(datetime.now(UTC))) / 1e6
                remaining = min(remaining, max(until_visible, 0.001))
            if gone is None:
                # A client that goes away must not have messages leased into the void (they
                # would stay hidden until their lease ends): watch for its disconnect.
                gone = asyncio.Event()
                watcher = asyncio.create_task(_watch_disconnect(request, gone))
            s.metrics.waiting.inc()
            try:
                await first_of([changed.wait(), s.shutdown.wait(), gone.wait()], remaining)
            finally:
                s.metrics.waiting.dec()
            if gone.is_set():
                return []  # nobody reads it; nothing leased
    finally:
        if watcher is not None:
            watcher.cancel()


async def _watch_disconnect(request: Request, gone: asyncio.Event) -> None:
    """The body has been read, so the next ASGI message can only be the disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        continue
    gone.set()


async def first_of(waits: Iterable[Awaitable[Any]], wait_s: float) -> None:
    """Wait until the first of ``waits`` is done, or ``wait_s`` has passed; the others are
    cancelled."""
    waiters = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(waiters, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
