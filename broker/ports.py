"""The ports the broker core depends on. Adapters live in ``broker/store/``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from broker.events import StoredEvent
from broker.state import StateTx

T = TypeVar("T")

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def matches_types(type_: str, patterns: Sequence[str]) -> bool:
    """``patterns`` are exact types or prefixes ending in ``*`` (``message.*``)."""
    for pattern in patterns:
        if pattern.endswith("*"):
            if type_.startswith(pattern[:-1]):
                return True
        elif type_ == pattern:
            return True
    return False


class EventStore(Protocol):
    """The log and the write-side state, behind one transactional port.

    ``transact`` runs ``fn`` against the write-side state in one transaction: every event
    ``fn`` appends and every state change that follows from it commit together, durably, or
    not at all. ``fn`` is synchronous on purpose: a group-commit batch is decided and applied
    in one go, with no awaits inside, so an adapter can run it in one hop to its driver.

    Transactions run one at a time, in the order ``transact`` was called: the writer hands
    over the next while the last is still committing, and its decisions must see the last's
    changes (every adapter here runs them on one connection and one thread, first come first
    served; the in-memory one behind a lock, which is too).
    """

    async def open(self) -> None:
        """Open connections and threads; the schema must already exist."""

    async def close(self) -> None:
        """Close connections and stop threads."""

    async def transact(self, fn: Callable[[StateTx], T]) -> T:
        """Run ``fn`` in one transaction (see the class docstring)."""

    async def read(
        self,
        after: int,
        limit: int,
        *,
        queue: str | None = None,
        types: Sequence[str] | None = None,
        until: int | None = None,
    ) -> list[StoredEvent]:
        """Events with ``after`` < position (<= ``until``), in position order, at most
        ``limit``; ``queue`` and ``types`` (exact, or prefixes ending in ``*``) filter."""

    async def read_positions(self, positions: Sequence[int]) -> list[StoredEvent]:
        """The events at those positions, in position order."""

    async def read_message(self, message_id: str) -> list[StoredEvent]:
        """Every event that names the message, in position order."""

    async def head(self) -> int:
        """The last position in the log (0 when empty)."""

    async def last_position(self, queue: str, type_: str, *, before: int | None = None) -> int:
        """The position of the queue's last event of that type (below ``before``); 0 when
        there is none. It walks the queue's events back from the end (or ``before``), so it
        costs what the queue logged since that event, not the queue's history."""

    async def position_at(self, at: str) -> int:
        """The position of the last event at or before ``at`` (RFC 3339 as the log spells
        it, ``encode_at``); 0 when there is none."""
