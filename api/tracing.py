"""W3C Trace Context (https://www.w3.org/TR/trace-context/): a command request's
``traceparent``/``tracestate`` ride with its command onto every event it appends.

An invalid ``traceparent`` is ignored, as the spec says a receiver must (it starts a new trace
rather than fail the request); a ``tracestate`` is kept only beside a valid ``traceparent``.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from typing import Final

from starlette.datastructures import Headers

from broker.events import Trace

_PARENT: Final = re.compile(
    r"(?P<version>[0-9a-f]{2})-(?P<trace>[0-9a-f]{32})-(?P<parent>[0-9a-f]{16})-[0-9a-f]{2}"
    r"(?P<rest>-.*)?"
)
_STATE_MEMBER: Final = re.compile(
    r"(?:[a-z0-9][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
_MAX_STATE: Final = 512
_MAX_MEMBERS: Final = 32

CURRENT: ContextVar[Trace | None] = ContextVar("cairn_trace", default=None)
"""The trace context of the request being handled (set by the endpoints' wrapper)."""


def trace_of(headers: Headers) -> Trace | None:
    parents = headers.getlist("traceparent")
    if len(parents) != 1:  # none, or several: the spec says to treat several as invalid
        return None
    parent = parents[0].strip(" \t")
    if not _valid_parent(parent):
        return None
    return Trace(parent, _state_of(headers.getlist("tracestate")))


def _valid_parent(value: str) -> bool:
    found = _PARENT.fullmatch(value)
    if found is None or found["version"] == "ff":
        return False
    if found["version"] == "00" and found["rest"] is not None:
        return False  # version 00 has exactly four fields; later versions may add more
    return set(found["trace"]) != {"0"} and set(found["parent"]) != {"0"}


def _state_of(values: list[str]) -> str | None:
    """The ``tracestate`` (several headers join with commas), or None if it is invalid."""
    members = [m.strip(" \t") for value in values for m in value.split(",")]
    members = [m for m in members if m]
    if not members or len(members) > _MAX_MEMBERS:
        return None
    if not all(_STATE_MEMBER.fullmatch(m) for m in members):
        return None
    keys = [m.split("=", 1)[0] for m in members]
    if len(set(keys)) != len(keys):  # a key may appear once (W3C Trace Context 3.3.1.1)
        return None
    state = ",".join(members)
    return state if len(state) <= _MAX_STATE else None
