"""JSON responses encoded with msgspec, and the read-side position header."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

_encoder = msgspec.json.Encoder()


def json_response(
    content: Any,
    status: int = 200,
    *,
    position: int | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    extra = dict(headers or {})
    if position is not None:
        extra["X-Cairn-Position"] = str(position)
    return Response(
        _encoder.encode(content),
        status_code=status,
        media_type="application/json",
        headers=extra,
    )


def no_content(position: int | None = None) -> Response:
    """204 for a command; ``X-Cairn-Position`` says where its last event is, so the client
    can read its own write with ``min_position`` even without a body."""
    headers = {"X-Cairn-Position": str(position)} if position is not None else None
    return Response(status_code=204, headers=headers)
