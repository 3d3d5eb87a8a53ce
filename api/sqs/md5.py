"""The digests SQS answers with, which SDKs check: ``MD5OfMessageBody`` is the MD5 of the body's
UTF-8 bytes; ``MD5OfMessageAttributes`` is the MD5 of the attributes in SQS's binary encoding
(sorted by name; each length-prefixed name, data type, a transport byte, and value)."""

from __future__ import annotations

import base64
import hashlib
import struct

from broker.events import TypedAttribute

_STRING, _BINARY = 1, 2


def of_body(body: str) -> str:
    return hashlib.md5(body.encode(), usedforsecurity=False).hexdigest()


def of_attributes(attributes: dict[str, TypedAttribute]) -> str | None:
    """None when there are none (SQS then leaves the field out)."""
    if not attributes:
        return None
    digest = hashlib.md5(usedforsecurity=False)
    for name in sorted(attributes):
        attribute = attributes[name]
        _add(digest, name.encode())
        _add(digest, attribute.data_type.encode())
        if attribute.binary_value is not None:
            digest.update(bytes([_BINARY]))
            _add(digest, base64.b64decode(attribute.binary_value))
        else:
            digest.update(bytes([_STRING]))
            _add(digest, (attribute.string_value or "").encode())
    return digest.hexdigest()


def _add(digest: hashlib._Hash, data: bytes) -> None:
    digest.update(struct.pack("!I", len(data)))
    digest.update(data)
