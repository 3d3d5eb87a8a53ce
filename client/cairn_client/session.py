"""Requests as the contract wants them, and the retries that never do anything twice.

Every command carries an ``Idempotency-Key`` made here, the same on each of its attempts, so
the broker answers a repeat with the first answer instead of running it again. That makes a
command safe to retry whatever went wrong: the connection broke, the answer was lost after the
broker committed, the broker said 503 or 429. Reads change nothing and are retried the same
way. A receive is the exception: it takes no key (it leases whatever is available *now*), so it
is retried only when it cannot have reached the server (the connection was never made) or the
server refused it; after a lost answer it raises, and the messages it may have leased come
back after their visibility timeout.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Literal, TypeVar

import httpx
import msgspec

from cairn_client.errors import ConnectionFailed, RateLimited, Unavailable, error_of
from cairn_client.steps import Program, Send, Sleep

log = logging.getLogger("cairn_client")

T = TypeVar("T")
Token = str | Callable[[], str] | None
"""A bearer token, or a callable that returns a fresh one (called for every request)."""
Params = Mapping[str, str | int | float | bool | None]
Kind = Literal["read", "command", "receive"]

USER_AGENT: Final = "cairn-client/0.1"
BACKOFF_FIRST_S: Final = 0.25
BACKOFF_MAX_S: Final = 10.0
# Transport errors that prove the request never reached the server: even a receive may be
# sent again after one of these.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_encoder: Final = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request of the contract and how to read its answer."""

    method: str
    path: str
    decode: Callable[[httpx.Response], T]
    kind: Kind = "read"
    params: Params | None = None
    body: object = None
    wait_s: float = 0.0
    """How long the server may hold the request on purpose (a long poll)."""
    headers: Mapping[str, str] = field(default_factory=dict)


def json_of(type_: type[T]) -> Callable[[httpx.Response], T]:
    """Decode an answer's body as ``type_`` (one decoder, built once)."""
    decoder = msgspec.json.Decoder(type_)

    def decode(response: httpx.Response) -> T:
        return decoder.decode(response.content)

    return decode


def position_of(response: httpx.Response) -> int | None:
    """A command answered without a body (204) says where its last event is in
    ``X-Cairn-Position``: what ``min_position`` takes to read the change."""
    value = response.headers.get("x-cairn-position")
    return int(value) if value is not None and value.isdigit() else None


def backoff(attempt: int, at_least: float | None = None) -> float:
    """How long to wait before attempt ``attempt + 1``: exponential with jitter (half of it
    random, so that clients failing together do not come back together), never less than
    what the server asked for."""
    ceiling = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2.0**attempt)
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    if at_least is not None:
        delay = max(delay, at_least + random.uniform(0, min(1.0, at_least / 10)))
    return delay


class Session:
    """Where the broker is and how to talk to it: URL, token, timeouts, retries."""

    def __init__(self, url: str, token: Token, retries: int, timeout: float) -> None:
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        self.url = url.rstrip("/")
        self.token = token
        self.retries = retries
        self.timeout = timeout
        self._timeouts: dict[float, dict[str, float | None]] = {}

    def exchange(self, call: Call[T]) -> Program[T]:
        """Send ``call``, retrying what is safe to retry; its decoded answer, or the error."""
        key = uuid.uuid4().hex if call.kind == "command" else None
        attempt = 0
        while True:
            request = self.request(call, key)
            try:
                response = yield Send(request)
            except httpx.TransportError as error:
                if attempt >= self.retries or not self._may_resend(call, error):
                    raise ConnectionFailed(f"{call.method} {call.path}: {error!r}") from error
                delay = backoff(attempt)
                reason = repr(error)
            else:
                if response.status_code < 400:
                    return call.decode(response)
                failure = error_of(response)
                if attempt >= self.retries or not isinstance(failure, RateLimited | Unavailable):
                    raise failure
                delay = backoff(attempt, failure.retry_after)
                reason = str(failure)
            log.info(
                "cairn_client retrying %s %s in %.2f s (attempt %d of %d): %s",
                call.method,
                call.path,
                delay,
                attempt + 2,
                self.retries + 1,
                reason,
            )
            attempt += 1
            yield Sleep(delay)

    def request(
        self, call: Call[Any], key: str | None = None, *, read_timeout: float | None = None
    ) -> httpx.Request:
        headers = {"user-agent": USER_AGENT, **call.headers}
        token = self.token() if callable(self.token) else self.token
        if token:
            headers["authorization"] = f"Bearer {token}"
        if key is not None:
            headers["idempotency-key"] = key
        content = None
        if call.body is not None:
            content = _encoder.encode(call.body)
            headers["content-type"] = "application/json"
        params = None
        if call.params is not None:
            params = {k: _text(v) for k, v in call.params.items() if v is not None}
        read = read_timeout if read_timeout is not None else self.timeout + call.wait_s
        return httpx.Request(
            call.method,
            self.url + call.path,
            params=params,
            headers=headers,
            content=content,
            extensions={"timeout": self._timeout(read)},
        )

    def _timeout(self, read: float) -> dict[str, float | None]:
        found = self._timeouts.get(read)
        if found is None:
            found = httpx.Timeout(self.timeout, read=read).as_dict()
            self._timeouts[read] = found
        return found

    @staticmethod
    def _may_resend(call: Call[Any], error: httpx.TransportError) -> bool:
        if isinstance(error, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
            return False  # the request itself is wrong: it would fail again
        return call.kind != "receive" or isinstance(error, _NOT_SENT)


def _text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
