"""What the contract promises that ``cairn serve`` does not answer yet, or cannot be made to:
a ``410 Gone`` with ``earliest_position`` for a read below what the broker keeps, paged queue
listings (``next_after``), fields and values a newer server adds, ``GET /v1/log``, and
answers that are not problem+json (a proxy's error page). A small Starlette app answers them
over real HTTP, as the contract words them, and the client is held to it."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

import msgspec
import pytest
import uvicorn
from cairn_client import (
    AsyncClient,
    BadRequest,
    CairnError,
    Client,
    Gone,
    Log,
    Queue,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.api.conftest import free_port

EARLIEST: Final = 100
NAMES: Final = ["a1", "a2", "a3", "b1", "b2"]
AT: Final = "2026-12-06T09:00:00.000001Z"


def problem(status: int, title: str, **extra: Any) -> Response:
    body = {"type": f"https://cairn.dev/problems/{title.lower()}", "title": title}
    body |= {"status": status, "detail": f"{title}, as the contract says", **extra}
    return Response(msgspec.json.encode(body), status, media_type="application/problem+json")


def queue_of(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "created_at": AT,
        "updated_at": AT,
        "position": 1,
        "visibility_timeout_s": 30,
        "delay_s": 0,
        "retention_s": 1209600,
        "max_receive_count": None,
        "dead_letter_queue": None,
        "shard": 7,  # a field this client does not know
        "stats": {"available": 1, "in_flight": 0, "archived_total": 3},
    }


def event_of(position: int, type_: str) -> dict[str, Any]:
    return {"position": position, "type": type_, "at": AT, "queue": "a1", "region": "eu"}


async def queues(request: Request) -> Response:
    limit = int(request.query_params.get("limit", "1000"))
    after = request.query_params.get("after", "")
    prefix = request.query_params.get("prefix", "")
    names = [n for n in NAMES if n > after and n.startswith(prefix)]
    page = names[:limit]
    more = len(names) > limit
    return JSONResponse(
        {"queues": [queue_of(n) for n in page], "next_after": page[-1] if more else None}
    )


async def events(request: Request) -> Response:
    after = int(request.query_params.get("after", "0"))
    if after + 1 < EARLIEST:
        return problem(410, "Gone", earliest_position=EARLIEST)
    page = [event_of(after + 1, "message.published"), event_of(after + 2, "queue.archived")]
    return JSONResponse({"events": page, "next_after": after + 2})


async def stream(request: Request) -> Response:
    after = int(request.headers.get("last-event-id", "0"))
    if after + 1 < EARLIEST:
        return problem(410, "Gone", earliest_position=EARLIEST)

    async def frames() -> AsyncIterator[bytes]:
        yield b"retry: 1000\n\n: heartbeat\n\n"
        for position in (after + 1, after + 2):
            data = msgspec.json.encode(event_of(position, "queue.archived"))
            yield b"id: %d\nevent: queue.archived\ndata: %s\n\n" % (position, data)

    return StreamingResponse(frames(), media_type="text/event-stream")


async def log(request: Request) -> Response:
    return JSONResponse(
        {
            "head": 500,
            "live_from": EARLIEST,
            "archived_from": 1,
            "archived_through": EARLIEST - 1,
            "as_of_from": EARLIEST,
            "log_retention_s": 1209600,
            "archive_retention_s": None,
            "history_retention_s": 1209600,
            "epoch": "e-1",
            "segments": 4,
        }
    )


async def message(request: Request) -> Response:
    as_of = request.query_params.get("as_of")
    if as_of is not None and int(as_of) < EARLIEST:
        return problem(410, "Gone", as_of_from=EARLIEST)
    return JSONResponse(
        {
            "id": request.path_params["id"],
            "queue": request.path_params["name"],
            "status": "archived",  # a status this client does not know
            "body": {"n": 1},
            "attributes": {},
            "receive_count": 0,
            "published_at": AT,
            "visible_at": AT,
            "history": [{"position": 5, "type": "message.archived", "at": AT, "data": {}}],
            "archive": "cold",
        }
    )


async def refuse_shape(request: Request) -> Response:
    return problem(400, "Bad Request")


async def bad_gateway(request: Request) -> Response:
    return HTMLResponse("<html><body>502 Bad Gateway</body></html>", 502)


APP: Final = Starlette(
    routes=[
        Route("/v1/queues", queues),
        Route("/v1/queues", refuse_shape, methods=["POST"]),
        Route("/v1/events", events),
        Route("/v1/events/stream", stream),
        Route("/v1/log", log),
        Route("/v1/queues/{name}/messages/{id}", message),
        Route("/v1/queues/{name}/messages", bad_gateway, methods=["POST"]),
    ]
)


@pytest.fixture(scope="module")
def newer() -> Iterator[str]:
    """The app, served by uvicorn in a thread of this process."""
    port = free_port()
    config = uvicorn.Config(
        APP, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_a_read_below_what_is_kept_is_gone_with_the_earliest_position(newer: str) -> None:
    with Client(newer) as client:
        with pytest.raises(Gone) as gone:
            client.events(after=0)
        assert (gone.value.status, gone.value.earliest_position) == (410, EARLIEST)
        page = client.events(after=gone.value.earliest_position - 1)  # reads from there
        assert [e.position for e in page.events] == [EARLIEST, EARLIEST + 1]
        with pytest.raises(Gone) as feed_gone:
            next(client.follow(after=5))
        assert feed_gone.value.earliest_position == EARLIEST
        with pytest.raises(Gone) as past:
            client.get_message("a1", "m-1", as_of=3)
        assert (past.value.as_of_from, past.value.earliest_position) == (EARLIEST, None)


async def test_the_async_client_raises_gone_too(newer: str) -> None:
    async with AsyncClient(newer) as client:
        with pytest.raises(Gone) as gone:
            await client.events(after=10)
        assert gone.value.earliest_position == EARLIEST
        feed = client.follow(after=0)
        with pytest.raises(Gone):
            await anext(feed)


def test_list_queues_follows_every_page(newer: str) -> None:
    with Client(newer) as client:
        assert [q.name for q in client.list_queues(page_size=2)] == NAMES
        assert [q.name for q in client.list_queues(prefix="b", page_size=1)] == ["b1", "b2"]
        assert [q.name for q in client.list_queues()] == NAMES


def test_fields_types_and_statuses_a_newer_server_adds_are_tolerated(newer: str) -> None:
    with Client(newer) as client:
        [first, *_] = client.list_queues()
        assert isinstance(first, Queue) and first.stats.available == 1
        assert first.stats.delayed == 0  # a field an older server left out: its default
        page = client.events(after=EARLIEST - 1)
        assert [e.type for e in page.events] == ["message.published", "queue.archived"]
        message = client.get_message("a1", "m-1")
        assert message.status == "archived" and message.history[0].type == "message.archived"
        feed = client.follow(after=EARLIEST)
        assert [next(feed).position, next(feed).position] == [EARLIEST + 1, EARLIEST + 2]
        feed.close()
        log = client.log()
        assert isinstance(log, Log)
        assert (log.head, log.live_from, log.archive_retention_s, log.epoch) == (
            500,
            EARLIEST,
            None,
            "e-1",
        )


def test_refusals_that_are_not_problem_json_still_raise_with_their_status(newer: str) -> None:
    with Client(newer) as client:
        with pytest.raises(CairnError) as gateway:
            client.publish("a1", 1)
        assert gateway.value.status == 502 and "Bad Gateway" in gateway.value.problem.detail
        with pytest.raises(BadRequest) as bad:
            client.create_queue("x")
        assert bad.value.problem.title == "Bad Request"
