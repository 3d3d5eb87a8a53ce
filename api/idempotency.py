"""The HTTP side of idempotency keys (API.md "Idempotency keys"; the store's side is
``broker/idempotency.py``).

Every ``POST``/``PATCH``/``DELETE`` under ``/v1`` but receive may carry ``Idempotency-Key``.
The route runs as usual; the key and a fingerprint of the request ride with the command it
executes (``Services.execute`` hands them to the writer), and the route's 2xx answer is kept.
A repeat within 24 h of the same method, path and body (as parsed JSON) gets that answer back
with ``Idempotent-Replayed: true`` and runs nothing; with another method, path or body it is a
422. A repeat that arrives while the first is still running waits for its answer (on this
process, for the first's own future; elsewhere, by looking again).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from api.body import read_body
from api.problems import ApiError, FieldError
from broker.decide import Reply
from broker.idempotency import Claim, RecordAnswer, Replay, fingerprint, reply_of
from broker.state import IdempotencyRecord

HEADER: Final = "idempotency-key"
REPLAYED: Final = "Idempotent-Replayed"
_KEY: Final = re.compile(r"[\x21-\x7e]{1,255}")
_WAIT_S: Final = 10.0
_LOOK_AGAIN_S: Final = 0.05
_KEPT_HEADERS: Final = ("content-type", "x-cairn-position")

Handler = Callable[[Request], Awaitable[Response]]


class Answer(msgspec.Struct):
    status: int
    headers: dict[str, str]
    body: str
    """The JSON the route answered ("" for none): every body a route answers is UTF-8."""


@dataclass
class Pending:
    """The key a request runs under, while its route runs."""

    claim: Claim
    ran: bool = False
    """Its command was handed to the writer (the route did run one)."""
    replay: Reply | None = None
    """Answering from the first run's reply: the route renders it, and runs nothing."""


@dataclass
class InFlight:
    """First runs under way in this process, by (subject, key): repeats wait on them."""

    answers: dict[tuple[str, str], asyncio.Future[Answer]] = field(default_factory=dict)


PENDING: ContextVar[Pending | None] = ContextVar("cairn_idempotency", default=None)


class Replayed(Exception):
    """Raised by ``Services.execute`` when the writer recognised the key: nothing ran."""

    def __init__(self, record: IdempotencyRecord) -> None:
        super().__init__(record.idempotency_key)
        self.record = record


def key_of(request: Request) -> str | None:
    key = request.headers.get(HEADER)
    if key is not None and not _KEY.fullmatch(key):
        raise ApiError(
            422,
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
            errors=[FieldError("header.Idempotency-Key", "1..255 visible ASCII characters")],
        )
    return key


async def run(
    handler: Handler,
    request: Request,
    *,
    subject: str,
    limit: int,
    inflight: InFlight,
    recall: Callable[[Claim], Awaitable[Replay | None]],
    keep: Callable[[RecordAnswer], Awaitable[None]],
) -> Response:
    """Run ``handler`` under the request's idempotency key, if it has one."""
    key = key_of(request)
    if key is None:
        return await handler(request)
    body = await read_body(request, limit)
    try:
        claim = Claim(subject, key, fingerprint(request.method, request.url.path, body))
    except msgspec.DecodeError:
        return await handler(request)  # not JSON: the route answers its 400, nothing kept
    slot = (subject, key)
    earlier = inflight.answers.get(slot)
    if earlier is not None:  # the first is running here: wait for its answer
        await asyncio.wait({earlier}, timeout=_WAIT_S)
        if earlier.done() and not earlier.cancelled():
            return _response(earlier.result(), replayed=True)
        # It gave no 2xx answer (or not yet): go on as the request it is.
    mine: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
    inflight.answers[slot] = mine
    pending = Pending(claim)
    token = PENDING.set(pending)
    try:
        try:
            response = await handler(request)
        except Replayed as replayed:
            return await _repeat(replayed.record, handler, request, pending, recall, keep)
        if pending.ran and 200 <= response.status_code < 300:
            answer = _answer(response)
            await keep(RecordAnswer(subject, key, msgspec.json.encode(answer)))
            mine.set_result(answer)
        return response
    finally:
        PENDING.reset(token)
        if not mine.done():
            mine.cancel()
        if inflight.answers.get(slot) is mine:
            del inflight.answers[slot]


async def _repeat(
    record: IdempotencyRecord,
    handler: Handler,
    request: Request,
    pending: Pending,
    recall: Callable[[Claim], Awaitable[Replay | None]],
    keep: Callable[[RecordAnswer], Awaitable[None]],
) -> Response:
    """A key seen before: its kept answer, or (still being answered elsewhere) the answer
    once it is kept, or (never kept: its process died) the answer rendered from its reply."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _WAIT_S
    while record.answer is None and loop.time() < deadline:
        await asyncio.sleep(_LOOK_AGAIN_S)  # another process is answering: look again
        again = await recall(pending.claim)
        if again is not None:
            record = again.record
    if record.answer is not None:
        answer = msgspec.json.decode(record.answer, type=Answer)
        return _response(answer, replayed=True)
    pending.replay = reply_of(record)
    response = await handler(request)
    if 200 <= response.status_code < 300:
        answer = _answer(response)
        kept = RecordAnswer(record.subject, record.idempotency_key, msgspec.json.encode(answer))
        await keep(kept)
    response.headers[REPLAYED] = "true"
    return response


def _answer(response: Response) -> Answer:
    headers = {k: v for k, v in response.headers.items() if k in _KEPT_HEADERS}
    return Answer(response.status_code, headers, bytes(response.body).decode())


def _response(answer: Answer, *, replayed: bool) -> Response:
    headers = dict(answer.headers)
    media = headers.pop("content-type", None)
    if replayed:
        headers[REPLAYED] = "true"
    return Response(answer.body, status_code=answer.status, headers=headers, media_type=media)
