"""Identifiers the broker hands out."""

from __future__ import annotations

import random
import secrets
import time

_random = random.Random(secrets.randbits(128))


def new_message_id() -> str:
    """A UUIDv7 (RFC 9562): unique, and sortable by creation time, which makes ids read well
    in logs and keeps index inserts local. Formatted by hand and drawn from a seeded PRNG: on
    the publish path ``uuid.UUID`` and an ``os.urandom`` call per id cost ~3% of the CPU; an id
    only has to be unique, since a receipt, not an id, is what grants a lease."""
    millis = time.time_ns() // 1_000_000
    rand = _random.getrandbits(74)
    variant_and_rest = 0x8000_0000_0000_0000 | (rand & (2**62 - 1))  # RFC 9562 variant bits
    hex_ = f"{millis & (2**48 - 1):012x}7{rand >> 62:03x}{variant_and_rest:016x}"
    return f"{hex_[:8]}-{hex_[8:12]}-{hex_[12:16]}-{hex_[16:20]}-{hex_[20:]}"


def new_receipt() -> str:
    """An opaque, unguessable lease receipt."""
    return secrets.token_urlsafe(18)
