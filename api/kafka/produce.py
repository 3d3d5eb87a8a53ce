"""Produce and InitProducerId: records become messages, through the same command as every
other door's publish (``PublishMessages``), so every rule is the domain's.

A partition's batch is one command: all its records are published, or none (the answer names
the record at fault). The answer comes once the command is durable, with the base offset = the
position of the batch's first message. An idempotent producer's batch carries its producer id,
epoch and sequence into the command, where the domain recognises a retry (it appends nothing
and is answered as the first time) and refuses a gap.

A record's value must be UTF-8 text: it becomes a JSON string body (a binary value could not be
a JSON body without an encoding the reader would have to know about). Its key is the message's
key, its headers its attributes.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import msgspec
import structlog
from kio.schema.errors import ErrorCode

from api.kafka.codec import respond
from api.kafka.door import Connection, Door
from api.kafka.metadata import auto_create
from api.kafka.nodes import now_us
from api.kafka.records import BatchError, Header, parse_produced
from api.kafka.topics import EVENTS_TOPIC
from broker.commands import Attributes, NewMessage, ProducerBatch, PublishMessages
from broker.decide import PublishReply
from broker.errors import (
    BrokerError,
    InvalidCommandError,
    MessageTooLargeError,
    OutOfOrderSequenceError,
    ProducerFencedError,
    QueueNotFoundError,
    StoreUnavailableError,
)

log = structlog.get_logger(component="cairn.kafka")

NO_ANSWER: Final = 0
"""acks=0: the client wants no answer."""
MAX_EPOCH: Final = 2**15 - 1
_ERRORS: Final[tuple[tuple[type[BrokerError], ErrorCode], ...]] = (
    (QueueNotFoundError, ErrorCode.unknown_topic_or_partition),
    (MessageTooLargeError, ErrorCode.message_too_large),
    (OutOfOrderSequenceError, ErrorCode.out_of_order_sequence_number),
    (ProducerFencedError, ErrorCode.invalid_producer_epoch),
    (InvalidCommandError, ErrorCode.invalid_record),
    # Retriable: an idempotent producer's retry of a batch whose commit was lost is safe.
    (StoreUnavailableError, ErrorCode.kafka_storage_error),
)


async def produce(door: Door, conn: Connection, request: Any) -> Any:
    if request.transactional_id is not None:
        answers = [
            (t.name, p.index, _refused(ErrorCode.transactional_id_authorization_failed, None))
            for t in request.topic_data
            for p in t.partition_data
        ]
    else:
        answers = await asyncio.gather(
            *(
                _partition(door, conn, topic.name, partition.index, partition.records)
                for topic in request.topic_data
                for partition in topic.partition_data
            )
        )
    if request.acks == NO_ANSWER:
        return None
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for name, index, answer in answers:
        by_topic.setdefault(name, []).append({"index": index, **answer})
    return respond(
        request,
        responses=[
            {"name": name, "partition_responses": partitions}
            for name, partitions in by_topic.items()
        ],
    )


async def _partition(
    door: Door, conn: Connection, name: str, index: int, records: bytes | None
) -> tuple[str, int, dict[str, Any]]:
    door.services.metrics.kafka_produce_bytes.inc(len(records or b""))
    return name, index, await _publish(door, conn, name, index, records)


async def _publish(
    door: Door, conn: Connection, name: str, index: int, records: bytes | None
) -> dict[str, Any]:
    principal = conn.who
    if name == EVENTS_TOPIC:
        return _refused(ErrorCode.invalid_topic_exception, f"{EVENTS_TOPIC} is the log: read-only")
    if not principal.may("publish", name):
        return _refused(ErrorCode.topic_authorization_failed, None)
    topic = await door.topics.find(name)
    if topic is None and door.settings.kafka_auto_create:
        topic = await auto_create(door, principal, name)
    if topic is None or index != 0:
        return _refused(ErrorCode.unknown_topic_or_partition, None)
    try:
        produced = parse_produced(bytes(records or b""), door.settings.kafka_max_request_bytes)
        messages = tuple(_message(door, i, *record) for i, record in enumerate(produced.records))
    except BatchError as error:
        return _refused(error.code, error.message, error.index)
    producer = None
    if produced.producer_id >= 0:
        producer = ProducerBatch(
            producer_id=produced.producer_id,
            epoch=produced.epoch,
            base_sequence=produced.base_sequence,
        )
    command = PublishMessages(queue=name, messages=messages, producer=producer)
    try:
        reply = await door.services.run(command)
    except BrokerError as error:
        code = next((c for kind, c in _ERRORS if isinstance(error, kind)), None)
        if code is None:
            log.error("kafka_produce_failed", topic=name, error=error.detail)
            code = ErrorCode.unknown_server_error
        return _refused(code, error.detail, error.entry)
    assert isinstance(reply, PublishReply)
    return {
        "error_code": ErrorCode.none,
        "base_offset": reply.results[0].position,
        "log_start_offset": -1,
        "record_errors": [],
    }


def _message(
    door: Door, index: int, key: bytes | None, value: bytes | None, headers: list[Header]
) -> NewMessage:
    """A record as a message; ``BatchError`` (``INVALID_RECORD``) naming what is wrong."""

    def invalid(why: str) -> BatchError:
        return BatchError(ErrorCode.invalid_record, f"record {index}: {why}", index)

    if value is None:
        raise invalid("a null value (a message needs a body)")
    try:
        text = value.decode()
    except UnicodeDecodeError:
        raise invalid("the value is not UTF-8 text (binary values are refused)") from None
    try:
        key_text = None if key is None else key.decode()
    except UnicodeDecodeError:
        raise invalid("the key is not UTF-8 text") from None
    attributes: dict[str, str] = {}
    for header, header_value in headers:
        if header in attributes:
            raise invalid(f"header {header!r} is repeated (attributes have one value each)")
        if header_value is None:
            raise invalid(f"header {header!r} has a null value")
        try:
            attributes[header] = header_value.decode()
        except UnicodeDecodeError:
            raise invalid(f"header {header!r} is not UTF-8 text") from None
    try:
        attributes = msgspec.convert(attributes, Attributes)  # the attribute rules, declared once
    except msgspec.ValidationError as error:
        raise invalid(f"the headers break the attribute rules: {error}") from None
    return NewMessage(
        message_id=door.services.writer.new_id(),
        body=msgspec.Raw(msgspec.json.encode(text)),
        attributes=attributes,
        key=key_text,
        size=len(value),
    )


def _refused(code: ErrorCode, message: str | None, index: int | None = None) -> dict[str, Any]:
    errors = [] if index is None else [{"batch_index": index, "batch_index_error_message": message}]
    return {
        "error_code": code,
        "base_offset": -1,
        "log_start_offset": -1,
        "record_errors": errors,
        "error_message": message,
    }


async def init_producer_id(door: Door, conn: Connection, request: Any) -> Any:
    """A new producer id for an idempotent producer (transactions are not offered); a
    producer that names its id and epoch (KIP-360) gets the next epoch of it."""
    if request.transactional_id is not None:
        return respond(
            request,
            error_code=ErrorCode.transactional_id_authorization_failed,
            producer_id=-1,
            producer_epoch=-1,
        )
    producer_id = getattr(request, "producer_id", -1)
    epoch = getattr(request, "producer_epoch", -1)
    if producer_id >= 0 and 0 <= epoch < MAX_EPOCH:
        return respond(
            request, error_code=ErrorCode.none, producer_id=producer_id, producer_epoch=epoch + 1
        )
    try:
        issued = await door.state.new_producer_id(now_us())
    except StoreUnavailableError as error:
        log.warning("kafka_producer_id_failed", error=error.detail)
        return respond(
            request,
            error_code=ErrorCode.coordinator_not_available,
            producer_id=-1,
            producer_epoch=-1,
        )
    return respond(request, error_code=ErrorCode.none, producer_id=issued, producer_epoch=0)
