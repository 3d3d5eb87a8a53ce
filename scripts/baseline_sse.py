"""The feed benchmark's baseline: the simplest SSE broadcaster Starlette and sse-starlette
allow. POST /publish hands a small event to every connected GET /stream at once; nothing is
stored, nothing is durable. Whatever Cairn's feeds cost beyond this is the price of the log."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_subscribers: set[asyncio.Queue[bytes]] = set()
_positions = itertools.count(1)


async def publish(request: Request) -> Response:
    body = await request.body()
    position = next(_positions)
    frame = b"id: %d\nevent: message.published\ndata: %s\n\n" % (position, body)
    for queue in _subscribers:
        queue.put_nowait(frame)
    return JSONResponse({"position": position}, status_code=201)


async def stream(request: Request) -> Response:
    async def frames() -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        _subscribers.add(queue)
        try:
            yield b"retry: 3000\n\n"
            while True:
                yield await queue.get()
        finally:
            _subscribers.discard(queue)

    return EventSourceResponse(frames())


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/publish", publish, methods=["POST"]),
        Route("/stream", stream),
        Route("/healthz", healthz),
    ]
)
