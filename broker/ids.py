"""Identifiers the broker hands out."""

from __future__ import annotations

import os
import secrets
import time
import uuid


def new_message_id() -> str:
    """A UUIDv7 (RFC 9562): unique, and sortable by creation time, which makes ids read well
    in logs and keeps index inserts local."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & (2**48 - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62  # RFC 9562 variant
    value |= rand & (2**62 - 1)
    return str(uuid.UUID(int=value))


def new_receipt() -> str:
    """An opaque, unguessable lease receipt."""
    return secrets.token_urlsafe(18)
