"""The client's logic without I/O: every operation is a *program*, a generator that yields the
I/O it needs (send this request, sleep this long, read the next chunk of this stream) and is
sent back what came of it. ``Client`` runs programs with blocking calls and ``AsyncClient``
awaits the same steps, so requests, retries, paging and feed resumption are written once
and the two clients differ only in how a step is carried out (``drivers.py``).

A transport error while a step is carried out is thrown into the program at its ``yield``,
so a program handles it where it happens, as it would around a plain call.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

import httpx

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Send:
    """Send the request; the reply is the ``httpx.Response``, its body read."""

    request: httpx.Request


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Open:
    """Send the request without reading the body; the reply is an ``Opened`` stream."""

    request: httpx.Request


@dataclass(frozen=True, slots=True)
class Chunk:
    """The next bytes of an opened stream; ``b""`` at its end."""

    stream: Opened


@dataclass(frozen=True, slots=True)
class ReadAll:
    """Read the rest of an opened stream into its response (an error answer's body)."""

    stream: Opened


@dataclass(frozen=True, slots=True)
class Close:
    """Close an opened stream (the driver also closes any a program leaves open)."""

    stream: Opened


@dataclass(frozen=True, slots=True)
class Emit(Generic[T]):
    """Hand one item to whoever iterates the program (feeds and listings)."""

    item: T


@dataclass(slots=True)
class Opened:
    """A response whose body is read as it comes; the driver that opened it closes it."""

    response: httpx.Response
    chunks: Any
    """The driver's iterator over the body: an ``Iterator`` or an ``AsyncIterator``."""


Step: TypeAlias = Send | Sleep | Open | Chunk | ReadAll | Close
Program: TypeAlias = Generator[Step, Any, T]
"""An operation that answers one ``T``."""
Stream: TypeAlias = Generator[Step | Emit[T], Any, None]
"""An operation that hands out ``T`` after ``T`` (``Emit``) until it ends."""
