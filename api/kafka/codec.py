"""Kafka's wire format, through kio's codecs (generated from Kafka's own message schemas).

A request frame is ``size (int32) | header | body``; the header's first fields (API key, API
version, correlation id) sit at the same place in every header version, so the door reads
them before it knows which schema follows. A response is ``size | header | body``, its header
version the one the request's schema names (ApiVersions always answers with header v0).

One handler serves a range of versions of its API: it reads the request's fields by name, and
answers through ``respond``, which builds the response class of the request's own version
from named values, leaving out what that version lacks and filling what the handler did not
name with the field's default (or zero). So the handlers do not restate kio's hundreds of
generated classes; kio checks every value's range when it is built.

Requests are typed ``Any`` at this boundary on purpose: a handler takes whichever of its API's
generated classes the client's version picked, and reads only fields its whole range has (or
``getattr`` with a default where some versions lack one).
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import struct
import types
import typing
import uuid
from collections.abc import Callable
from typing import Any, Final, TypeVar

from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader, entity_writer

HEADER: Final = struct.Struct(">hhi")
"""API key, API version, correlation id: the start of every request header version."""
_SIZE: Final = struct.Struct(">i")
E = TypeVar("E")


class BadFrame(Exception):
    """A frame the door cannot read: the connection it came on is closed."""


def peek(frame: bytes) -> tuple[int, int, int]:
    """A frame's API key, API version and correlation id."""
    if len(frame) < HEADER.size:
        raise BadFrame(f"a frame of {len(frame)} bytes has no request header")
    key, version, correlation = HEADER.unpack_from(frame)
    return int(key), int(version), int(correlation)


Reader = Callable[[bytes, int], tuple[Any, int]]
Writer = Callable[[io.BytesIO, Any], None]
_readers: dict[type[Any], Reader] = {}
_writers: dict[type[Any], Writer] = {}
_hints: dict[type[Any], dict[str, Any]] = {}


def _reader(cls: type[Any]) -> Reader:
    # Built on first use (all of them at once take seconds), then kept.
    reader = _readers.get(cls)
    if reader is None:
        reader = _readers[cls] = entity_reader(cls)
    return reader


def _writer(cls: type[Any]) -> Writer:
    writer = _writers.get(cls)
    if writer is None:
        writer = _writers[cls] = entity_writer(cls)
    return writer


def decode(frame: bytes, key: int, version: int) -> tuple[Any, Any]:
    """The request header and body of a frame whose API and version are served. kio raises
    its own decode errors, and a ``KeyError`` for a tagged field it does not know (Kafka says
    to skip those; no client sends one): all of them are a ``BadFrame``."""
    cls = load_request_schema(key, version)
    try:
        header, used = _reader(cls.__header_schema__)(frame, 0)
        request, size = _reader(cls)(frame, used)
    except Exception as error:
        raise BadFrame(f"{type(error).__name__}: {error}") from None
    if used + size != len(frame):
        raise BadFrame(f"{len(frame) - used - size} bytes after the request")
    return header, request


def encode(correlation_id: int, response: Any) -> bytes:
    """A whole response frame, size first."""
    out = io.BytesIO()
    out.write(b"\0\0\0\0")
    header_cls = response.__header_schema__
    _writer(header_cls)(out, header_cls(correlation_id=correlation_id))
    _writer(type(response))(out, response)
    frame = out.getbuffer()
    _SIZE.pack_into(frame, 0, len(frame) - 4)
    return bytes(frame)


def response_class(api_key: int, version: int) -> type[Any]:
    cls: type[Any] = load_response_schema(api_key, version)
    return cls


def respond(request: Any, **values: Any) -> Any:
    """The response of the request's API and version, built from ``values`` (see ``build``)."""
    return build(response_class(request.__api_key__, request.__version__), **values)


def has(entity: Any, name: str) -> bool:
    """Whether this version of an entity has the field."""
    return name in entity.__dataclass_fields__


def _hints_of(cls: type[Any]) -> dict[str, Any]:
    hints = _hints.get(cls)
    if hints is None:
        hints = _hints[cls] = typing.get_type_hints(cls)
    return hints


def build(cls: type[E], **values: Any) -> E:
    """An entity of ``cls`` from named values: names this version lacks are left out; fields
    not named get their default, or the zero of their type; nested entities may be given as
    dicts, sequences as lists; an int stands for an ``ErrorCode``, a duration in milliseconds
    or a time in milliseconds since the epoch, wherever the field is one of those."""
    hints = _hints_of(cls)
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]  # kio's are dataclasses
        if field.name in values:
            kwargs[field.name] = _coerce(hints[field.name], values[field.name])
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            kwargs[field.name] = _zero(hints[field.name])
    return cls(**kwargs)


def _optional(hint: Any) -> tuple[Any, bool]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return inner[0], True
    return hint, False


def _zero(hint: Any) -> Any:
    hint, optional = _optional(hint)
    if optional:
        return None
    if typing.get_origin(hint) is tuple:
        return ()
    for kind, zero in _ZEROS:
        if isinstance(hint, type) and issubclass(hint, kind):
            return zero
    raise TypeError(f"no zero value for {hint}")


_ZEROS: Final[tuple[tuple[type, Any], ...]] = (
    (ErrorCode, ErrorCode.none),
    (bool, False),
    (datetime.timedelta, datetime.timedelta(0)),
    (datetime.datetime, datetime.datetime.fromtimestamp(0, datetime.UTC)),
    (int, 0),
    (str, ""),
    (bytes, b""),
    (uuid.UUID, uuid.UUID(int=0)),
)


def _coerce(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    hint, _ = _optional(hint)
    if typing.get_origin(hint) is tuple:
        inner = typing.get_args(hint)[0]
        if dataclasses.is_dataclass(inner):
            return tuple(build(inner, **v) if isinstance(v, dict) else v for v in value)  # type: ignore[arg-type]
        return tuple(_coerce(inner, v) for v in value)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return build(hint, **value)  # type: ignore[arg-type]
    if isinstance(hint, type) and isinstance(value, int) and not isinstance(value, hint):
        if issubclass(hint, ErrorCode):
            return ErrorCode(value)
        if issubclass(hint, datetime.timedelta):
            return datetime.timedelta(milliseconds=value)
        if issubclass(hint, datetime.datetime):
            return datetime.datetime.fromtimestamp(value / 1000, datetime.UTC)
    return value


def error_code(code: ErrorCode | int) -> ErrorCode:
    return code if isinstance(code, ErrorCode) else ErrorCode(code)


def first_error(response: Any) -> ErrorCode:
    """The first error a response carries (its own, else its topics' and partitions'), for
    the request metrics; ``none`` when all went well."""
    stack = [response]
    while stack:
        entity = stack.pop(0)
        for field in dataclasses.fields(entity):
            value = getattr(entity, field.name)
            if isinstance(value, ErrorCode):
                if value is not ErrorCode.none:
                    return value
            elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
                stack.extend(value)
    return ErrorCode.none
