"""Following the event log over Server-Sent Events, resuming where it left off.

The feed remembers the position of the last event it handed out and reconnects with
``Last-Event-ID: <that position>`` whenever the stream ends: the server closed it (a restart,
a token that expired), the connection broke, or nothing, not even a heartbeat, came for three
heartbeat intervals. The broker replays from after that position, so there is no gap, and the
feed drops any position it has already handed out, so there is no duplicate. A feed started
"from now" (no ``after``) learns where now was from the first answer's ``X-Cairn-Position``
and resumes from there.

Reconnecting is unbounded once the feed has connected (a deploy may take a while; a follower
should outlive it), with jittered backoff capped at the server's ``retry:``. Before the first
connection, ``retries`` bounds it, so a wrong URL fails fast. A refusal that waiting cannot
cure (401, 403, 404, 410 ``Gone``, 422) raises.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import msgspec

from cairn_client.errors import CairnError, ConnectionFailed, error_of
from cairn_client.models import Event
from cairn_client.session import Call, Params, Session, backoff, position_of
from cairn_client.steps import Chunk, Close, Emit, Open, ReadAll, Sleep, Step, Stream

log = logging.getLogger("cairn_client")

HEARTBEAT_S: Final = 15.0
"""The contract's longest gap between heartbeats; three of them missed means a dead link."""
DEFAULT_RETRY_MS: Final = 3000
_LINE_BREAK: Final = re.compile(rb"\r\n|\r|\n")
_RETRIED_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
_event_decoder: Final = msgspec.json.Decoder(Event)


@dataclass(slots=True)
class Frame:
    """One dispatched SSE event (WHATWG HTML, "Interpreting an event stream")."""

    id: str | None
    event: str
    data: str


@dataclass(slots=True)
class SseParser:
    """Bytes in, frames out, however the bytes are cut into chunks."""

    retry_ms: int | None = None
    _pending: bytes = b""
    _after_cr: bool = False
    _data: list[str] = field(default_factory=list)
    _event: str = ""
    _id: str | None = None

    def feed(self, chunk: bytes) -> list[Frame]:
        if not chunk:
            return []
        if self._after_cr:
            self._after_cr = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]  # the LF of a CRLF whose CR ended the previous chunk
        text = self._pending + chunk
        lines = _LINE_BREAK.split(text)
        self._pending = lines.pop()
        self._after_cr = text.endswith(b"\r")
        frames = []
        for raw in lines:
            frame = self._line(raw.decode("utf-8", errors="replace"))
            if frame is not None:
                frames.append(frame)
        return frames

    def _line(self, line: str) -> Frame | None:
        if not line:
            frame = None
            if self._data:
                frame = Frame(self._id, self._event or "message", "\n".join(self._data))
            self._data, self._event = [], ""
            return frame
        if line.startswith(":"):
            return None  # a comment: the heartbeats
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None


@dataclass(slots=True)
class _Feed:
    last: int | None
    """The position of the last event handed out: where to resume."""
    connected: bool = False
    failures: int = 0
    """Connections that failed in a row."""
    retry_ms: int = DEFAULT_RETRY_MS


def follow(
    session: Session, after: int | None, queue: str | None, types: Sequence[str] | None
) -> Stream[Event]:
    """Every event after ``after`` (from now when ``None``) that matches, in position order,
    each once, for as long as it is iterated."""
    feed = _Feed(after)
    params = {"queue": queue, "types": ",".join(types) if types else None}
    while True:
        reason: object
        try:
            reason = yield from _connection(session, feed, params)
        except httpx.TransportError as error:
            reason = error
        if not feed.connected and feed.failures >= session.retries:
            if isinstance(reason, CairnError):
                raise reason
            cause = reason if isinstance(reason, BaseException) else None
            raise ConnectionFailed(f"GET /v1/events/stream: {reason!r}") from cause
        delay = min(backoff(feed.failures), feed.retry_ms / 1000)
        feed.failures += 1
        log.info(
            "cairn_client feed reconnecting after position %s in %.2f s: %s",
            feed.last,
            delay,
            reason,
        )
        yield Sleep(delay)


def _connection(
    session: Session, feed: _Feed, params: Params
) -> Generator[Step | Emit[Event], Any, object]:
    """One connection to the feed: hands out its new events, and answers why it ended (to
    reconnect); raises a refusal that reconnecting cannot cure."""
    headers = {"accept": "text/event-stream"}
    if feed.last is not None:
        headers["last-event-id"] = str(feed.last)
    call = Call("GET", "/v1/events/stream", _never, params=params, headers=headers)
    stream = yield Open(session.request(call, read_timeout=max(session.timeout, 3 * HEARTBEAT_S)))
    response = stream.response
    reason: object
    try:
        if response.status_code != 200:
            yield ReadAll(stream)
            refusal = error_of(response)
            if response.status_code not in _RETRIED_STATUSES:
                raise refusal
            reason = refusal
        else:
            feed.connected, feed.failures = True, 0
            if feed.last is None:
                feed.last = position_of(response)  # "from now": where now was
            parser = SseParser()
            while chunk := (yield Chunk(stream)):
                for frame in parser.feed(chunk):
                    event = _event_of(frame)
                    if event is None or (feed.last is not None and event.position <= feed.last):
                        continue  # never a duplicate
                    feed.last = event.position
                    yield Emit(event)
                feed.retry_ms = parser.retry_ms or feed.retry_ms
            reason = "the server ended the stream"
    except (httpx.TransportError, CairnError):
        yield Close(stream)
        raise
    yield Close(stream)
    return reason


def _event_of(frame: Frame) -> Event | None:
    try:
        return _event_decoder.decode(frame.data)
    except msgspec.DecodeError:
        log.warning("cairn_client feed skipped a frame that is not an event: %.200r", frame.data)
        return None


def _never(response: httpx.Response) -> None:
    raise AssertionError("a feed's answer is read as a stream")
