"""The HTTP/1.1 connection: uvicorn's httptools protocol, with the answers it gives before a
request reaches the app made problem+json like every other error (API.md "Errors").

uvicorn answers a request it cannot parse with a text/plain 400 and lets request headers grow
without bound (a 20 MB header was accepted). Here: a method HTTP does not define is a ``501``;
request headers past 16 KiB in all are a ``431``; a URL that is not UTF-8 once
percent-decoded, or anything else unparseable, is a ``400``. Each of these answers closes the
connection, as uvicorn's own 400 does: after a framing error the rest of the stream cannot be
trusted.

A body that does not match its ``Content-Length`` is broken framing too, a ``400`` (API.md v1.2):
one longer than announced leaves bytes where the next request should begin (which the parser
would otherwise report as an unknown method, a ``501``); one shorter either ends with the
connection (the client closed its side) or stops arriving, and after ``CAIRN_BODY_IDLE_S``
without a byte the request is answered instead of waiting for ever.
"""

from __future__ import annotations

import asyncio
import os
import re
from asyncio import TimerHandle
from functools import cache
from typing import Final
from urllib.parse import unquote_to_bytes

import httptools
import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.problems import PROBLEM_JSON, ApiError

MAX_HEADER_BYTES: Final = 16 * 1024
METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "QUERY"}
)
"""HTTP's own methods (RFC 9110, PATCH, and QUERY, which OpenAPI 3.2 describes): a route that
lacks one answers 405. Any other (``FOO``, WebDAV's ``PROPFIND``) is a method this server
implements nowhere: 501."""
_REQUEST_LINE: Final = re.compile(
    rb"(?:^|\n)([!#$%&'*+.^_`|~0-9A-Za-z-]+) [^ \r\n]+ HTTP/\d\.\d\r?\n"
)
"""A request line (RFC 9112 §3): a method token, a target, the version."""
_REASONS: Final = {
    400: b"Bad Request",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
}


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the reason is on the protocol."""


@cache
def body_idle_s() -> float:
    """How long a request body may stop arriving (``CAIRN_BODY_IDLE_S``, checked by ``cairn
    serve`` and exported to every worker; read when the first connection needs it)."""
    return float(os.environ.get("CAIRN_BODY_IDLE_S", "10"))


class CairnHttpProtocol(HttpToolsProtocol):
    _refusal: tuple[int, str] | None = None
    _header_bytes = 0
    _request_lines = 0
    """Requests whose request line parsed in the data being fed now."""
    _url_seen = False
    _body_timer: TimerHandle | None = None
    _body_seen_at = 0.0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._url_seen = False

    def on_url(self, url: bytes) -> None:
        if not self._url_seen:  # a long URL may come in several pieces
            self._url_seen = True
            self._request_lines += 1
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._header_bytes > MAX_HEADER_BYTES:
            self._refusal = (431, f"request headers larger than {MAX_HEADER_BYTES} bytes")
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        method = self.parser.get_method().decode("ascii", "replace")
        if method not in METHODS:
            self._refusal = (501, f"the method {method} is not implemented")
            raise _Refused
        if b"%" in self.url or not self.url.isascii():
            # Starlette would quietly turn bytes that are not UTF-8 into U+FFFD, in the path
            # and in the query; every request is UTF-8 (API.md, "Clarifications of v1").
            try:
                unquote_to_bytes(self.url.replace(b"+", b" ")).decode("utf-8")
            except UnicodeDecodeError as error:
                self._refusal = (400, f"the URL is not UTF-8 once percent-decoded ({error.reason})")
                raise _Refused from None
        super().on_headers_complete()

    def _wait_for_body(self) -> None:
        """Data came and the body is not complete: note when, and make sure a clock runs. (A
        request that arrives whole, the common case, never starts one.)"""
        self._body_seen_at = self.loop.time()
        if self._body_timer is None:
            self._body_timer = self.loop.call_later(body_idle_s(), self._body_stalled)

    def _stop_waiting_for_body(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_unfinished(self) -> bool:
        """A body is still expected, and nothing has been answered yet."""
        cycle = self.cycle
        return cycle is not None and cycle.more_body and not cycle.response_started

    def _body_stalled(self) -> None:
        self._body_timer = None
        if not self._body_unfinished():
            return
        idle = self.loop.time() - self._body_seen_at
        if idle < body_idle_s():  # more came meanwhile: wait out the rest
            self._body_timer = self.loop.call_later(body_idle_s() - idle, self._body_stalled)
        else:
            self._answer(
                400,
                "the request body is shorter than its Content-Length: nothing more arrived"
                f" for {body_idle_s():g} s",
            )

    def eof_received(self) -> None:
        # The client closed its side (it may still read): a body still expected never comes.
        if self._body_unfinished():
            self._answer(400, "the request body ended before its Content-Length was reached")

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting_for_body()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's own data_received, with its 400 answer replaced by the precise one.
        self._unset_keepalive_if_required()
        self._request_lines = 0
        running = set(self.tasks)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserInvalidMethodError:
            self._refuse(running, *self._not_a_method(data))
        except httptools.HttpParserCallbackError:
            self._refuse(running, *(self._refusal or (400, "the request is not valid HTTP/1.1")))
        except httptools.HttpParserError:
            self._refuse(running, 400, "the request is not valid HTTP/1.1")
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        else:
            if self._body_unfinished():
                self._wait_for_body()

    def _refuse(self, running: set[asyncio.Task[None]], status: int, detail: str) -> None:
        """Answer a framing error. A request that completed in these same bytes (a body
        longer than its Content-Length ends where its Content-Length says) has had its task
        created but not yet run a step: cancelled now, it does nothing, so the one answer the
        client gets, this refusal, is true: nothing was written."""
        for task in self.tasks - running:
            task.cancel()
        self._answer(status, detail)

    def _not_a_method(self, data: bytes) -> tuple[int, str]:
        """Where a request should begin there is none the parser knows: a request line with a
        method this server does not implement (``501``), or bytes that are no request at all,
        such as those of a body longer than its ``Content-Length`` (``400``)."""
        lines = _REQUEST_LINE.findall(data)
        if len(lines) > self._request_lines:  # the failing request has a request line
            method = lines[self._request_lines].decode("ascii", "replace")
            return 501, f"the method {method} is not implemented"
        return 400, (
            "the request is not valid HTTP/1.1: bytes where a request should begin"
            " (a body longer than its Content-Length?)"
        )

    def send_400_response(self, msg: str) -> None:
        self._answer(400, "the request is not valid HTTP/1.1")

    def _answer(self, status: int, detail: str) -> None:
        body = msgspec.json.encode(ApiError(status, detail).problem())
        head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(
            b"content-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % (PROBLEM_JSON.encode(), len(body))
        )
        self.transport.write(b"".join(head) + body)
        self.transport.close()
