"""Reading SSE feeds in tests: raw frames (comments and retry included) from a real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Frame:
    id: int | None = None
    event: str | None = None
    data_lines: list[str] = field(default_factory=list)
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def data(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads("\n".join(self.data_lines))
        return parsed


def frames(response: httpx.Response) -> Iterator[Frame]:
    """Parse ``text/event-stream`` per the WHATWG rules we rely on."""
    current = Frame()
    for line in response.iter_lines():
        if line == "":
            yield current
            current = Frame()
        elif line.startswith(":"):
            current.comments.append(line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                current.id = int(value)
            elif name == "event":
                current.event = value
            elif name == "data":
                current.data_lines.append(value)
            elif name == "retry":
                current.retry = int(value)


def events(response: httpx.Response, count: int) -> list[Frame]:
    """The next ``count`` event frames (skipping comments and the retry frame)."""
    found: list[Frame] = []
    for frame in frames(response):
        if frame.id is not None:
            found.append(frame)
            if len(found) == count:
                break
    return found
