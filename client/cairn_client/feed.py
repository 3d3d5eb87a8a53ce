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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import httpx
import msgspec

from cairn_client.errors import CairnError, ConnectionFailed, error_of
from cairn_client.models import Event
from cairn_client.session import Call, Session, backoff, position_of
from cairn_client.steps import Chunk, Close, Emit, Open, ReadAll, Sleep, Stream

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
    _data: list[str] = field(default_factory=list)
    _event: str = ""
    _id: str | None = None

    def feed(self, chunk: bytes) -> list[Frame]:
        text = self._pending + chunk
        # A chunk that ends in CR may be half of a CRLF: keep the CR for the next chunk.
        cut = len(text) - 1 if text.endswith(b"\r") else len(text)
        lines = _LINE_BREAK.split(text[:cut])
        self._pending = lines.pop() + text[cut:]
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


def follow(
    session: Session, after: int | None, queue: str | None, types: Sequence[str] | None
) -> Stream[Event]:
    """Every event after ``after`` (from now when ``None``) that matches, in position order,
    each once, for as long as it is iterated."""
    last = after
    connected = False
    failures = 0
    retry_ms = DEFAULT_RETRY_MS
    params = {"queue": queue, "types": ",".join(types) if types else None}
    while True:
        headers = {"accept": "text/event-stream"}
        if last is not None:
            headers["last-event-id"] = str(last)
        call = Call("GET", "/v1/events/stream", _never, params=params, headers=headers)
        request = session.request(call, read_timeout=max(session.timeout, 3 * HEARTBEAT_S))
        reason: object
        try:
            stream = yield Open(request)
        except httpx.TransportError as error:
            reason = error
        else:
            response = stream.response
            if response.status_code != 200:
                yield ReadAll(stream)
                yield Close(stream)
                refusal = error_of(response)
                if response.status_code not in _RETRIED_STATUSES:
                    raise refusal
                reason = refusal
            else:
                connected, failures = True, 0
                if last is None:
                    last = position_of(response)  # "from now": where now was
                parser = SseParser()
                try:
                    while chunk := (yield Chunk(stream)):
                        for frame in parser.feed(chunk):
                            event = _event_of(frame)
                            if event is None or (last is not None and event.position <= last):
                                continue  # never a duplicate
                            last = event.position
                            yield Emit(event)
                    reason = "the server ended the stream"
                except httpx.TransportError as error:
                    reason = error
                yield Close(stream)
                retry_ms = parser.retry_ms or retry_ms
        if not connected and failures >= session.retries:
            if isinstance(reason, CairnError):
                raise reason
            raise ConnectionFailed(f"GET /v1/events/stream: {reason!r}") from (
                reason if isinstance(reason, BaseException) else None
            )
        delay = min(backoff(failures), retry_ms / 1000)
        failures += 1
        log.info(
            "cairn_client feed reconnecting after position %s in %.2f s: %s", last, delay, reason
        )
        yield Sleep(delay)


def _event_of(frame: Frame) -> Event | None:
    try:
        return _event_decoder.decode(frame.data)
    except msgspec.DecodeError:
        log.warning("cairn_client feed skipped a frame that is not an event: %.200r", frame.data)
        return None


def _never(response: httpx.Response) -> None:
    raise AssertionError("a feed's answer is read as a stream")
