"""Reading requests: the body under a size limit (counted while streaming, never trusting
Content-Length), the media type, and decoding into typed Structs with precise field errors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, TypeVar

import msgspec
from starlette.requests import Request

from api.problems import ApiError, FieldError
from broker.commands import (
    ATTRIBUTE_KEY_PATTERN,
    GROUP_ID_PATTERN,
    QUEUE_NAME_PATTERN,
    QUEUE_NAME_RULE,
)

T = TypeVar("T")

_AT_PATH: Final = re.compile(
    r"^(?P<text>.*?)(?: - at `key` in `\$(?P<keypath>[^`]*)`| - at `\$(?P<path>[^`]*)`)?$",
    re.DOTALL,
)
_KEPT: Final = "cairn.body"
_UNKNOWN_FIELD: Final = re.compile(r"Object contains unknown field `(?P<name>[^`]*)`")
_MISSING_FIELD: Final = re.compile(r"Object missing required field `(?P<name>[^`]*)`")
_IN_WORDS: Final = {
    # msgspec says "Expected `str` matching regex '<the pattern, repr'd>'": a regex (with its
    # backslashes doubled by repr, and again by JSON) is no answer for a person; say the rule.
    f"Expected `str` matching regex {pattern!r}": f"Expected {words}"
    for pattern, words in (
        (QUEUE_NAME_PATTERN, f"a queue name ({QUEUE_NAME_RULE})"),
        (ATTRIBUTE_KEY_PATTERN, "an attribute name (1 to 128 letters, digits, '_', '.', '-')"),
        (GROUP_ID_PATTERN, "a group id (1 to 128 letters, digits, '_', '.', ':', '-')"),
    )
}


def is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, read once and kept: what an idempotency key's fingerprint read, the route
    reads again."""
    kept: bytes | None = request.scope.get(_KEPT)
    if kept is not None:
        return kept
    encoding = request.headers.get("content-encoding")
    if encoding is not None:
        # Cairn decodes none (a gzip body would be taken for JSON text and fail as such, or
        # worse, be stored as sent): say so instead.
        raise ApiError(
            415, f"Content-Encoding {encoding!r} is not accepted: send the body unencoded"
        )
    content_type = request.headers.get("content-type")
    if content_type is not None and not is_json(content_type):
        raise ApiError(415, f"Content-Type must be application/json, not {content_type!r}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body larger than {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if body and content_type is None:
        raise ApiError(415, "a request body needs Content-Type: application/json")
    request.scope[_KEPT] = body
    return body


def decode(
    body: bytes, type_: type[T], *, field_prefix: str = "body.", empty_ok: bool = False
) -> T:
    """Decode a JSON body into ``type_``: 400 if it is not UTF-8 JSON or not an object at all,
    422 naming the field if a value is wrong."""
    if not body.strip():
        if not empty_ok:
            raise ApiError(400, "a JSON request body is required")
        body = b"{}"
    check_utf8(body, "the request body")
    try:
        return _decode_numbers_as_json_does(body, type_)
    except msgspec.ValidationError as error:
        # msgspec checks types as it parses, so a wrong value early in a document that is not
        # even JSON further on would be reported as a 422: it is not valid JSON, a 400.
        _check_syntax(body)
        raise validation_error(str(error), field_prefix) from None
    except msgspec.DecodeError as error:
        raise _not_json(body, error) from None
    except RecursionError:
        raise ApiError(422, "the request body is nested too deeply") from None


def _check_syntax(body: bytes) -> None:
    try:
        msgspec.json.decode(body)
    except msgspec.DecodeError as error:
        raise _not_json(body, error) from None
    except RecursionError:
        # Too deep for the parser to finish: whether or not it is JSON, it is not a request
        # this server can read (and far past the depth any request may have).
        raise ApiError(400, "the request body nests too deeply to be read as JSON") from None


def _not_json(body: bytes, error: msgspec.DecodeError) -> ApiError:
    return ApiError(400, f"the request body is not valid JSON: {why_not_json(body, error)}")


def check_utf8(data: bytes, what: str) -> None:
    """400 unless ``data`` is UTF-8. msgspec checks the strings it decodes, but a message body
    is kept as raw bytes (``msgspec.Raw``) and would be stored, and served to every consumer and
    feed, exactly as sent. ASCII, the common case, is one fast scan."""
    if data.isascii():
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApiError(
            400,
            f"{what} is not valid UTF-8: byte 0x{data[error.start]:02x} at offset {error.start}",
        ) from None


_ESCAPE: Final = re.compile(rb"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)


def _lone_surrogate(body: bytes) -> tuple[str, int] | None:
    """The first ``\\uXXXX`` escape that is half of a UTF-16 pair without its other half, and
    its offset. Escapes are matched left to right, so an escaped backslash is never mistaken
    for the start of one."""
    pending: tuple[str, int] | None = None  # a high surrogate waiting for its low half
    for match in _ESCAPE.finditer(body):
        code = int(match[1], 16) if match[1] else None
        if pending is not None:
            if code is None or not 0xDC00 <= code <= 0xDFFF or match.start() != pending[1] + 6:
                return pending
            pending = None
            continue
        if code is not None and 0xD800 <= code <= 0xDBFF:
            pending = (match[0].decode(), match.start())
        elif code is not None and 0xDC00 <= code <= 0xDFFF:
            return match[0].decode(), match.start()
    return pending


def why_not_json(body: bytes, error: msgspec.DecodeError) -> str:
    """What is wrong with a body msgspec could not decode, for a person. msgspec reports a lone
    surrogate escape (``"\\ud800"``) as "Input data was truncated" and bytes that are not UTF-8
    without saying where; say what and where instead: JSON text must be Unicode, and half a
    UTF-16 pair is not."""
    lone = _lone_surrogate(body)
    if lone is not None:
        escape, offset = lone
        return f"{escape} at byte {offset} is half a UTF-16 surrogate pair, not a character"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"byte 0x{body[bad.start]:02x} at offset {bad.start} is not UTF-8"
    return str(error)


def check_depth(raw: bytes | msgspec.Raw, allowed: int, field: str) -> None:
    """422 if the (valid) JSON ``raw`` nests deeper than ``allowed``. A document with fewer
    opening brackets than that cannot, so ordinary message bodies cost two ``count`` calls."""
    data = bytes(raw)
    if data.count(b"[") + data.count(b"{") > allowed and json_depth(data, allowed) > allowed:
        raise ApiError(
            422,
            f"{field} nests deeper than {allowed} levels",
            errors=[FieldError(field, f"nested deeper than {allowed} levels")],
        )


def _decode_numbers_as_json_does(body: bytes, type_: type[T]) -> T:
    """Strict decoding, except that ``46.0`` is the integer 46, as JSON Schema has it.

    msgspec's strict mode refuses an integral float for an ``int``; its lax mode also takes
    ``"46"``. So: strict first, lax only when an integral float is what strict refused."""
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as error:
        if "Expected `int" not in str(error) or "got `float`" not in str(error):
            raise
        return msgspec.json.decode(body, type=type_, strict=False)


_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_INNERMOST: Final = re.compile(rb"\[\]|\{\}")


def json_depth(document: bytes, limit: int = 1_000_000) -> int:
    """How deeply arrays and objects nest in a valid JSON document (counting stops past
    ``limit``). Strings out, brackets only, then innermost pairs peeled off one level per
    pass. Valid JSON only: then every quote closes a string, which keeps the scan linear."""
    brackets = _STRING.sub(b"", document).translate(None, _NOT_BRACKETS)
    depth = 0
    while brackets and depth <= limit:
        brackets = _INNERMOST.sub(b"", brackets)
        depth += 1
    return depth


def parse_query(request: Request, type_: type[T]) -> T:
    """The query string as ``type_``; 422 naming the parameter if a value is wrong. (That the
    URL is UTF-8 was checked as the request arrived: ``api/http.py``.)"""
    return convert(request.query_params, type_, field_prefix="query.")


def convert(values: Mapping[str, Any], type_: type[T], *, field_prefix: str) -> T:
    """Convert string values (query parameters) into ``type_``; 422 naming the field."""
    try:
        return msgspec.convert(dict(values), type_, strict=False)
    except msgspec.ValidationError as error:
        raise validation_error(str(error), field_prefix) from None


def validation_error(message: str, field_prefix: str) -> ApiError:
    match = _AT_PATH.match(message)
    assert match is not None
    text, path = match["text"], match["path"] or match["keypath"] or ""
    text = _IN_WORDS.get(text, text)
    if match["keypath"] is not None:
        text = f"invalid key: {text}"
    path = path.lstrip(".")
    for pattern in (_UNKNOWN_FIELD, _MISSING_FIELD):
        named = pattern.match(text)
        if named:
            path = f"{path}.{named['name']}" if path else named["name"]
            break
    else:
        if not path:
            # The document as a whole has the wrong shape ("Expected `object`, got `array`").
            return ApiError(400, f"the request body has the wrong shape: {text}")
    path = path.replace("[...]", "")
    return ApiError(
        422, f"{field_prefix}{path}: {text}", errors=[FieldError(field_prefix + path, text)]
    )
