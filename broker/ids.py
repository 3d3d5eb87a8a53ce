"""Identifiers the broker hands out."""

from __future__ import annotations

import base64
import hashlib
import random
import secrets
import time

_random = random.Random(secrets.randbits(128))


_prefix: list[tuple[int, str]] = [(-1, "")]


def new_message_id() -> str:
    """A UUIDv7 (RFC 9562): unique, and sortable by creation time, which makes ids read well
    in logs and keeps index inserts local. Formatted by hand from a seeded PRNG, reusing the
    timestamp part within a millisecond: ``uuid.UUID`` plus an ``os.urandom`` call per id
    cost several percent of a batch publish. An id only has to be unique: a receipt, not an
    id, is what grants a lease."""
    millis = time.time_ns() // 1_000_000
    cached_millis, head = _prefix[0]
    if millis != cached_millis:
        stamp = f"{millis & (2**48 - 1):012x}"
        head = f"{stamp[:8]}-{stamp[8:]}-7"
        _prefix[0] = (millis, head)
    rand = _random.getrandbits(74)
    variant = 0x8000 | ((rand >> 48) & 0x3FFF)  # RFC 9562 variant bits, then 14 random ones
    return f"{head}{rand >> 62:03x}-{variant:04x}-{rand & 0xFFFF_FFFF_FFFF:012x}"


def new_receipt() -> str:
    """An opaque, unguessable lease receipt."""
    return secrets.token_urlsafe(18)


def receipt_for(message_id: str, secret: str) -> str:
    """A lease's receipt: the secret, then the message id, so that a door whose settle calls
    carry only the receipt (SQS's DeleteMessage) finds the message without an index."""
    return f"{secret}.{message_id}"


def message_of(receipt: str) -> str | None:
    """The message id a receipt names, if it is one this broker issued."""
    secret, dot, message_id = receipt.rpartition(".")
    return message_id if dot and secret and message_id else None


def lease_of(receipt: str) -> str:
    """The lease a receipt holds, as events and the write-side state name it: a digest, so that
    only the receive answer ever carries the receipt itself (anyone who may read the log or a
    feed could otherwise ack, nack or extend someone else's lease)."""
    digest = hashlib.sha256(receipt.encode()).digest()[:12]
    return base64.urlsafe_b64encode(digest).decode()
