"""``?as_of=``: which position a read of the past is at, and the clock it reads with."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from api.problems import ApiError, FieldError
from api.schemas import INT64_MAX
from api.services import Services
from broker.events import encode_at
from broker.state import to_us
from projections import as_of

_FIELD: Final = "query.as_of"
_RFC3339: Final = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt](?P<time>\d{2}:\d{2}:\d{2})(?P<fraction>\.\d+)?"
    r"(?P<offset>[Zz]|[+\- ]\d{2}:\d{2})"
)


@dataclass(frozen=True)
class Past:
    position: int
    """The last position the read reflects (``X-Cairn-Position``)."""
    now: int
    """The read's clock, in microseconds: the time asked for, or the position's event's."""


async def resolve(s: Services, text: str, min_position: int | None = None) -> Past:
    """The position ``as_of`` names (a position, or the last event at or before an RFC 3339
    time), once the read models have reached it (and ``min_position``); 422 for one that is
    unparsable or after now."""
    if text.isascii() and text.isdigit():
        position = int(text)
        if position > INT64_MAX:
            raise _invalid(text, "does not fit in 64 bits")
        if position > s.head.value:  # this node may not have heard of the newest commits
            head = await s.store.head()
            if position > head:
                raise _invalid(text, f"is after the last position, {head}")
        found = await s.store.read_positions([position]) if position else []
        then = parse_time(found[0].at) if found else None
        now = to_us(then) if then is not None else 0
    else:
        at = parse_time(text)
        if at is None:
            raise _invalid(text, "is neither a position nor an RFC 3339 time")
        if at > datetime.now(UTC):
            raise _invalid(text, "is in the future")
        position, now = await s.store.position_at(encode_at(at.astimezone(UTC))), to_us(at)
    await s.read_position(max(position, min_position or 0))
    kept_from = await as_of.as_of_from(s.views)
    if position < kept_from:
        raise ApiError(
            410,
            f"as_of {text!r} is position {position}; history retention keeps the past from"
            f" position {kept_from}",
            slug="history-gone",
            as_of_from=kept_from,
        )
    return Past(position, now)


def parse_time(text: str) -> datetime | None:
    found = _RFC3339.fullmatch(text)
    if found is None:
        return None
    raw = found["offset"]
    # A "+" the client did not percent-encode arrives as a space.
    offset = "+00:00" if raw in ("Z", "z") else ("-" if raw[0] == "-" else "+") + raw[1:]
    fraction = (found["fraction"] or ".0")[:7]  # microseconds are as fine as the log keeps
    try:
        return datetime.fromisoformat(f"{found['date']}T{found['time']}{fraction}{offset}")
    except ValueError:  # 2026-02-30 and the like
        return None


def _invalid(text: str, why: str) -> ApiError:
    return ApiError(422, f"as_of {text!r} {why}", errors=[FieldError(_FIELD, why)])
