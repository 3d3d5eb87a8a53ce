"""Requests no well-behaved client sends (a sequence gap), written with kio's own codecs and
aiokafka's batch builder, over a plain socket."""

from __future__ import annotations

import datetime
import io
import socket
import struct
import time
from typing import Any, NamedTuple

from aiokafka.record._crecords import DefaultRecordBatchBuilder
from kio.schema.produce.v9.request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from kio.schema.produce.v9.response import ProduceResponse
from kio.schema.request_header.v2.header import RequestHeader
from kio.serial import entity_reader, entity_writer
from kio.static.primitive import i16, i32, i32Timedelta

from tests.kafka.conftest import read_exactly


class Answer(NamedTuple):
    error: int
    base_offset: int
    message: str | None


Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]


def batch(records: list[Record], producer_id: int, epoch: int, sequence: int) -> bytes:
    builder = DefaultRecordBatchBuilder(2, 0, 0, producer_id, epoch, sequence, 1 << 20)
    now = int(time.time() * 1000)
    for offset, (key, value, headers) in enumerate(records):
        builder.append(offset, now, key, value, headers)
    return bytes(builder.build())


def request(sock: socket.socket, header: Any, body: Any, response: type[Any]) -> Any:
    out = io.BytesIO()
    entity_writer(type(header))(out, header)
    entity_writer(type(body))(out, body)
    frame = out.getvalue()
    sock.sendall(struct.pack(">i", len(frame)) + frame)
    size = struct.unpack(">i", read_exactly(sock, 4))[0]
    answer = read_exactly(sock, size)
    _, used = entity_reader(response.__header_schema__)(answer, 0)
    decoded, _ = entity_reader(response)(answer, used)
    return decoded


def produce_batch(
    port: int,
    topic: str,
    values: list[bytes | None] | list[Record],
    *,
    producer_id: int = -1,
    sequence: int = -1,
    epoch: int = -1,
) -> Answer:
    """A Produce v9 of one batch: plain values, or (key, value, headers) records."""
    given = [v if isinstance(v, tuple) else (None, v, []) for v in values]
    records = batch(given, producer_id, epoch if producer_id >= 0 else -1, sequence)
    body = ProduceRequest(
        acks=i16(-1),
        timeout=i32Timedelta.parse(datetime.timedelta(seconds=10)),
        topic_data=(
            TopicProduceData(
                name=topic,
                partition_data=(PartitionProduceData(index=i32(0), records=records),),
            ),
        ),
    )
    header = RequestHeader(
        request_api_key=i16(0), request_api_version=i16(9), correlation_id=i32(1), client_id="t"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        answer = request(sock, header, body, ProduceResponse)
    partition = answer.responses[0].partition_responses[0]
    return Answer(int(partition.error_code), int(partition.base_offset), partition.error_message)
