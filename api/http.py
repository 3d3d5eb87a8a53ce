"""The HTTP/1.1 connection: uvicorn's httptools protocol, with the answers it gives before a
request reaches the app made problem+json like every other error (API.md "Errors").

uvicorn answers a request it cannot parse with a text/plain 400 and lets request headers grow
without bound (a 20 MB header was accepted). Here: a method HTTP does not define is a ``501``;
request headers past 16 KiB in all are a ``431``; a URL that is not UTF-8 once
percent-decoded, or anything else unparseable, is a ``400``. Each of these answers closes the
connection, as uvicorn's own 400 does: after a framing error the rest of the stream cannot be
trusted.
"""

from __future__ import annotations

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
_REASONS: Final = {
    400: b"Bad Request",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
}


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the reason is on the protocol."""


class CairnHttpProtocol(HttpToolsProtocol):
    _refusal: tuple[int, str] | None = None
    _header_bytes = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0

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

    def data_received(self, data: bytes) -> None:
        # uvicorn's own data_received, with its 400 answer replaced by the precise one.
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserInvalidMethodError:
            self._answer(501, "the method is not implemented")
        except httptools.HttpParserCallbackError:
            self._answer(*(self._refusal or (400, "the request is not valid HTTP/1.1")))
        except httptools.HttpParserError:
            self._answer(400, "the request is not valid HTTP/1.1")
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

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
