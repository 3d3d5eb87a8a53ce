"""The benchmark's ceiling: the same publish route as Cairn's, with nothing behind it.

It reads and parses the body with msgspec, validates it against the same request type, and
answers 201 with a JSON body of the same shape, under the same uvicorn settings; it stores
nothing. Cairn's publish rate divided by this one's is the fraction of the HTTP ceiling that
durability, the log and the read side leave."""

from __future__ import annotations

import itertools

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.schemas import BatchPublishRequest, PublishRequest

_positions = itertools.count(1)
_encoder = msgspec.json.Encoder()


async def publish(request: Request) -> Response:
    msgspec.json.decode(await request.body(), type=PublishRequest)
    return Response(
        _encoder.encode(
            {
                "id": "00000000-0000-7000-8000-000000000000",
                "position": next(_positions),
                "duplicate": False,
            }
        ),
        status_code=201,
        media_type="application/json",
    )


async def publish_batch(request: Request) -> Response:
    batch = msgspec.json.decode(await request.body(), type=BatchPublishRequest)
    results = [
        {
            "id": "00000000-0000-7000-8000-000000000000",
            "position": next(_positions),
            "duplicate": False,
        }
        for _ in batch.messages
    ]
    return Response(
        _encoder.encode({"results": results}), status_code=201, media_type="application/json"
    )


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(
    routes=[
        Route("/v1/queues/{name}/messages", publish, methods=["POST"]),
        Route("/v1/queues/{name}/messages/batch", publish_batch, methods=["POST"]),
        Route("/healthz", healthz),
    ]
)
