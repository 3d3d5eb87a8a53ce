"""Record batches (Kafka's message format v2): the log's events as records for Fetch, and
the records of a Produce.

Batches are built by aiokafka's builder (a C extension: CRC-32C, varints, headers). Two things
it does not do are done here, by patching the built bytes: the base offset (outside the CRC),
and the LogAppendTime attribute, which the CRC covers and so is computed again.

With LogAppendTime, clients show a batch's *max timestamp* for every record in it; so a
batch here only ever holds records of the same millisecond. Offsets are positions, with gaps:
a record's offset delta says where it sits, so a batch may span a gap.
"""

from __future__ import annotations

import struct
import zlib
from datetime import datetime
from typing import Final, NamedTuple

import crc32c
import msgspec
import zstandard

# The C extension itself, not the module that falls back to pure Python without it (20 times
# slower): it is in every wheel aiokafka publishes, and its stubs type it.
from aiokafka.record._crecords import DefaultRecordBatch, DefaultRecordBatchBuilder
from kio.schema.errors import ErrorCode

from broker.events import StoredEvent, trace_of
from broker.state import to_us

MAGIC: Final = 2
BATCH_HEADER: Final = struct.Struct(">qiibIhiqqqhii")
"""base offset, length, leader epoch, magic, CRC, attributes, last offset delta, first and
max timestamp, producer id, producer epoch, base sequence, record count (61 bytes)."""
_ATTRIBUTES_AT: Final = 21
_CRC_AT: Final = 17
_LOG_APPEND_TIME: Final = 0x08
_MAX_DELTA: Final = 2**31 - 1

Header = tuple[str, bytes | None]


class Record(NamedTuple):
    offset: int
    timestamp: int
    """Milliseconds since the epoch."""
    key: bytes | None
    value: bytes | None
    headers: list[Header]


class _Published(msgspec.Struct):
    body: msgspec.Raw
    attributes: dict[str, str] = {}
    key: str | None = None


_published: Final = msgspec.json.Decoder(_Published)
_string: Final = msgspec.json.Decoder(str)
_last_at: list[tuple[str, int]] = [("", 0)]


def _ms(at: str) -> int:
    # A group commit's events share one time: convert it once.
    last = _last_at[0]
    if at == last[0]:
        return last[1]
    ms = to_us(datetime.fromisoformat(at)) // 1000
    _last_at[0] = (at, ms)
    return ms


def body_value(body: bytes) -> bytes:
    """A message body as a record value: a string body as its UTF-8 text exactly, any other
    body as its JSON text."""
    if body[:1] == b'"':
        return _string.decode(body).encode()
    return body


def message_record(stored: StoredEvent) -> Record:
    """A queue topic's record: a ``message.published`` event as the message it published."""
    published = _published.decode(stored.data)
    return Record(
        stored.position,
        _ms(stored.at),
        None if published.key is None else published.key.encode(),
        body_value(bytes(published.body)),
        [(name, value.encode()) for name, value in published.attributes.items()]
        if published.attributes
        else [],
    )


def event_record(stored: StoredEvent) -> Record:
    """A ``cairn.events`` record: the event's JSON, keyed by its message (else its queue),
    with its type, queue and trace context as headers."""
    headers: list[Header] = [("type", stored.type.encode()), ("queue", stored.queue.encode())]
    trace = trace_of(stored.data)
    if trace is not None:
        headers.append(("traceparent", trace.traceparent.encode()))
        if trace.tracestate is not None:
            headers.append(("tracestate", trace.tracestate.encode()))
    key = stored.message_id if stored.message_id is not None else stored.queue
    return Record(stored.position, _ms(stored.at), key.encode(), stored.json(), headers)


_size_of: Final = DefaultRecordBatchBuilder.size_of


class Batches:
    """Records packed into batches under a byte budget: the first record always goes in when
    ``at_least_one`` (so a fetch always makes progress, as Kafka's KIP-74 has it: the first
    partition of an answer that has records gets one, whatever its limits); after it, none
    that would take the whole past ``budget``."""

    def __init__(self, budget: int, *, at_least_one: bool = True) -> None:
        self.budget = budget
        self._at_least_one = at_least_one
        self._out = bytearray()
        self._builder: DefaultRecordBatchBuilder | None = None
        self._base = 0
        self._timestamp = 0
        self.last: int | None = None
        """The offset of the last record taken."""
        self.full = False

    def add(self, record: Record) -> bool:
        """Take the record if it fits; False (and ``full``) when it does not."""
        offset, timestamp, key, value, headers = record
        builder = self._builder
        if builder is not None:
            if timestamp == self._timestamp and offset - self._base <= _MAX_DELTA:
                # The builder refuses (None) a record that would take the batch past its size
                # (never its first): its size is the room the budget had when it began.
                if builder.append(offset - self._base, timestamp, key, value, headers) is None:
                    self.full = True
                    return False
                self.last = offset
                return True
            self._close()
        room = self.budget - len(self._out)
        must_fit = self.last is not None or not self._at_least_one
        if must_fit and BATCH_HEADER.size + _size_of(key, value, headers) > room:
            self.full = True
            return False
        builder = self._builder = DefaultRecordBatchBuilder(MAGIC, 0, 0, -1, -1, -1, max(room, 0))
        self._base, self._timestamp = offset, timestamp
        builder.append(0, timestamp, key, value, headers)
        self.last = offset
        return True

    def _close(self) -> None:
        assert self._builder is not None
        batch = self._builder.build()
        self._builder = None
        struct.pack_into(">q", batch, 0, self._base)  # the base offset is outside the CRC
        attributes = struct.unpack_from(">h", batch, _ATTRIBUTES_AT)[0] | _LOG_APPEND_TIME
        struct.pack_into(">h", batch, _ATTRIBUTES_AT, attributes)
        struct.pack_into(">I", batch, _CRC_AT, crc32c.crc32c(memoryview(batch)[_ATTRIBUTES_AT:]))
        self._out += batch

    def bytes(self) -> bytes:
        if self._builder is not None:
            self._close()
        return bytes(self._out)


# ---- produced batches -----------------------------------------------------------------------

_CODEC_MASK: Final = 0x07
_GZIP: Final = 1
_ZSTD: Final = 4
_TRANSACTIONAL: Final = 0x10
_CONTROL: Final = 0x20
_LENGTH_BEFORE: Final = 12
"""Bytes of a batch before its length counts (base offset, length)."""
_RECORDS_AT: Final = BATCH_HEADER.size


class BatchError(Exception):
    """A produced batch that is refused whole: ``code`` is the Kafka error to answer."""

    def __init__(self, code: ErrorCode, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.index = index
        """The record at fault, when one is."""


class Produced(NamedTuple):
    producer_id: int
    """-1 when the producer is not idempotent."""
    epoch: int
    base_sequence: int
    records: list[tuple[bytes | None, bytes | None, list[Header]]]
    """Each record's key, value and headers, in order."""


def parse_produced(data: bytes, limit: int) -> Produced:
    """The one record batch of a produced partition (Produce v3 and later send one): checked
    (magic 2, length, CRC-32C, no transactions), decompressed within ``limit`` bytes, read."""
    if len(data) < BATCH_HEADER.size:
        raise BatchError(ErrorCode.corrupt_message, "the records are not a whole record batch")
    (_, length, _, magic, crc, attributes, last_delta, first_ts, max_ts, producer_id, epoch,
     base_sequence, count) = BATCH_HEADER.unpack_from(data)  # fmt: skip
    if magic != MAGIC:
        raise BatchError(
            ErrorCode.unsupported_for_message_format,
            f"record batches of magic {MAGIC} only (this is magic {magic})",
        )
    if length != len(data) - _LENGTH_BEFORE:
        raise BatchError(ErrorCode.corrupt_message, "one record batch per partition, whole")
    if crc32c.crc32c(memoryview(data)[_ATTRIBUTES_AT:]) != crc:
        raise BatchError(ErrorCode.corrupt_message, "the record batch's CRC-32C does not match")
    if attributes & (_TRANSACTIONAL | _CONTROL):
        raise BatchError(ErrorCode.invalid_record, "transactions are not supported")
    if count < 1 or last_delta != count - 1:
        raise BatchError(ErrorCode.corrupt_message, "the record count does not match")
    codec = attributes & _CODEC_MASK
    if codec:
        plain = _decompress(codec, memoryview(data)[_RECORDS_AT:], limit)
        header = BATCH_HEADER.pack(
            0, _RECORDS_AT - _LENGTH_BEFORE + len(plain), -1, MAGIC, 0,
            attributes & ~_CODEC_MASK, last_delta, first_ts, max_ts, producer_id, epoch,
            base_sequence, count,
        )  # fmt: skip
        data = header + plain
    try:
        records = [
            (record.key, record.value, record.headers) for record in DefaultRecordBatch(data)
        ]
    except UnicodeDecodeError:
        raise BatchError(ErrorCode.invalid_record, "a header name is not UTF-8") from None
    except Exception as error:  # the C parser's CorruptRecordException, and what it wraps
        raise BatchError(ErrorCode.corrupt_message, f"corrupt records: {error}") from None
    if len(records) != count:
        raise BatchError(ErrorCode.corrupt_message, "the record count does not match")
    return Produced(producer_id, epoch, base_sequence, records)


def _decompress(codec: int, data: memoryview, limit: int) -> bytes:
    """Decompressed records, never more than ``limit`` bytes of them: a few KiB of zstd can
    claim gigabytes (and librdkafka's zstd frames do not say their size up front)."""
    if codec == _GZIP:
        return _gunzip(data, limit)
    if codec == _ZSTD:
        return _unzstd(data, limit)
    raise BatchError(
        ErrorCode.unsupported_compression_type,
        "compression: none, gzip and zstd are accepted",
    )


def _too_large(limit: int) -> BatchError:
    return BatchError(
        ErrorCode.message_too_large, f"the records decompress to more than {limit} bytes"
    )


def _gunzip(data: memoryview, limit: int) -> bytes:
    out = bytearray()
    rest = bytes(data)
    try:
        while rest:  # gzip members may follow one another
            inflater = zlib.decompressobj(wbits=47)  # gzip or zlib header, found by itself
            out += inflater.decompress(rest, limit + 1 - len(out))
            if len(out) > limit or inflater.unconsumed_tail:
                raise _too_large(limit)
            if not inflater.eof:
                raise BatchError(ErrorCode.corrupt_message, "the gzip data ends early")
            rest = inflater.unused_data
    except zlib.error as error:
        raise BatchError(ErrorCode.corrupt_message, f"not gzip: {error}") from None
    return bytes(out)


def _unzstd(data: memoryview, limit: int) -> bytes:
    out = bytearray()
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
        with reader:
            while chunk := reader.read(min(limit + 1 - len(out), 1 << 20) or 1):
                out += chunk
                if len(out) > limit:
                    raise _too_large(limit)
    except zstandard.ZstdError as error:
        raise BatchError(ErrorCode.corrupt_message, f"not zstd: {error}") from None
    return bytes(out)
