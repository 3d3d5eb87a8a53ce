"""Idempotency keys: a command sent again with the same key is answered, not run again.

The key rides with its command into the writer (a ``Claim``), and is looked up and recorded in
the same transaction as the command's events: so exactly one of two attempts runs, however
they race (in one batch, in two batches, on two nodes), and a command that committed has its
key with it even if its process died before answering. The door that ran it records its
answer afterwards (``RecordAnswer``); a repeat gets that answer, or, if it was never recorded,
the command's own reply, kept beside the key, to answer from.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final, get_args

import msgspec

from broker.decide import Reply
from broker.state import IdempotencyRecord

KEPT_FOR_S: Final = 24 * 3600
_REPLY_TYPES: Final[dict[str, Any]] = {cls.__name__: cls for cls in get_args(Reply)}


class Claim(msgspec.Struct, frozen=True):
    """``subject`` runs this command under ``key``; ``fingerprint``: what the request was."""

    subject: str
    key: str
    fingerprint: str


class Replay(msgspec.Struct, frozen=True):
    """What the writer answers for a key it has seen with the same request: no command ran."""

    record: IdempotencyRecord


class RecordAnswer(msgspec.Struct, frozen=True):
    """Keep the answer the door gave for a claimed command (status, headers, body as JSON)."""

    subject: str
    key: str
    answer: bytes


class Recall(msgspec.Struct, frozen=True):
    """Look the claim's key up (a repeat waiting for the first run's answer)."""

    claim: Claim


def fingerprint(method: str, path: str, body: bytes) -> str:
    """The request as a digest: the same method, path and body (equal as parsed JSON, so key
    order and whitespace do not matter) give the same fingerprint."""
    canonical = b""
    if body.strip():
        canonical = _sorted.encode(msgspec.json.decode(body))
    digest = hashlib.sha256(f"{method} {path}\n".encode() + canonical)
    return digest.hexdigest()


_sorted: Final = msgspec.json.Encoder(order="sorted")


def record_of(claim: Claim, reply: Reply, now_us: int) -> IdempotencyRecord:
    return IdempotencyRecord(
        subject=claim.subject,
        idempotency_key=claim.key,
        fingerprint=claim.fingerprint,
        expires_at=now_us + KEPT_FOR_S * 1_000_000,
        reply_kind=type(reply).__name__,
        reply=msgspec.json.encode(reply),
    )


def reply_of(record: IdempotencyRecord) -> Reply:
    reply: Reply = msgspec.json.decode(record.reply, type=_REPLY_TYPES[record.reply_kind])
    return reply
