"""Fetch and ListOffsets: reading topics.

Fetch answers at once when it has records (at least ``min_bytes`` of them), else waits up to
``max_wait`` for a commit that might bring some: a commit on this node or another wakes it
through the same signals that wake a long-polling receive (``broker/notify.py``), so a record
reaches a waiting consumer within a moment of the answer to the command that made it.

Offsets are positions and have gaps: a fetch from an offset in a gap gets the next record; an
offset past the high watermark is ``OFFSET_OUT_OF_RANGE`` (the client resets as configured);
one below the first record reads from the first record, since nothing before it was lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Final

from kio.schema.errors import ErrorCode

from api.kafka.codec import respond
from api.kafka.door import Connection, Door, may_read
from api.kafka.records import Batches, event_record, message_record
from api.kafka.topics import Topic
from api.polling import first_of
from broker.events import StoredEvent

MAX_WAIT_S: Final = 30.0
"""A bound on a fetch's wait whatever it asks (Kafka's clients ask for half a second)."""
_READ: Final = 1000
"""Events read from the log per look, while a partition's budget lasts."""
LATEST: Final = -1
EARLIEST: Final = -2
MAX_TIMESTAMP: Final = -3


async def fetch(door: Door, conn: Connection, request: Any) -> Any:
    s = door.services
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(request.max_wait.total_seconds(), MAX_WAIT_S)
    wanted = [(t.topic, t.partitions) for t in request.topics]
    found: dict[str, Topic | ErrorCode] = {}
    for name, _ in wanted:
        found[name] = await _topic(door, conn, name)
    while True:
        # Listen before looking: a commit that lands while we read still wakes us.
        waits: list[Awaitable[Any]] = [s.shutdown.wait()]
        for topic in found.values():
            if isinstance(topic, Topic):
                waits.append(
                    s.head.wait_for(s.head.value + 1, MAX_WAIT_S)
                    if topic.events
                    else s.signals.listen(topic.name).wait()
                )
        responses, size = await _read(door, request, wanted, found)
        remaining = deadline - loop.time()
        if size >= max(request.min_bytes, 1) or remaining <= 0 or s.shutdown.is_set():
            for wait in waits:
                if asyncio.iscoroutine(wait):
                    wait.close()  # never awaited: no "coroutine was never awaited" warning
            s.metrics.kafka_fetch_bytes.inc(size)
            return respond(request, error_code=ErrorCode.none, session_id=0, responses=responses)
        await first_of(waits, remaining)


async def _topic(door: Door, conn: Connection, name: str) -> Topic | ErrorCode:
    topic = await door.topics.find(name)
    if topic is None:
        return ErrorCode.unknown_topic_or_partition
    if not may_read(conn.who, name, events=topic.events):
        return ErrorCode.topic_authorization_failed
    return topic


async def _read(
    door: Door, request: Any, wanted: list[tuple[str, Any]], found: dict[str, Topic | ErrorCode]
) -> tuple[list[dict[str, Any]], int]:
    budget = request.max_bytes if hasattr(request, "max_bytes") else 2**31 - 1
    total = 0
    responses = []
    for name, partitions in wanted:
        topic = found[name]
        answers = []
        for partition in partitions:
            if isinstance(topic, ErrorCode) or partition.partition != 0:
                code = (
                    topic if isinstance(topic, ErrorCode) else ErrorCode.unknown_topic_or_partition
                )
                answers.append(_failed(partition.partition, code))
                continue
            limit = min(partition.partition_max_bytes, max(budget - total, 0))
            answer, size = await _partition(door, topic, partition.fetch_offset, limit, total == 0)
            answers.append(answer)
            total += size
        responses.append({"topic": name, "partitions": answers})
    return responses, total


async def _partition(
    door: Door, topic: Topic, offset: int, budget: int, first: bool
) -> tuple[dict[str, Any], int]:
    end = await door.topics.end(topic)
    start = await door.topics.earliest(topic)
    if offset > end:
        return _failed(0, ErrorCode.offset_out_of_range, end, start), 0
    batches = Batches(budget, at_least_one=first)
    record = event_record if topic.events else message_record
    # The next look at the log is read (on the store's thread) while this one is packed.
    ahead: asyncio.Future[list[StoredEvent]] | None = asyncio.ensure_future(
        door.topics.read(topic, offset, _READ)
    )
    try:
        while ahead is not None and not batches.full:
            events = await ahead
            ahead = None
            if len(events) == _READ:
                after = events[-1].position + 1
                ahead = asyncio.ensure_future(door.topics.read(topic, after, _READ))
            for stored in events:
                if not batches.add(record(stored)):
                    break
    finally:
        if ahead is not None:
            ahead.cancel()
    data = batches.bytes()
    if batches.last is not None:
        end = max(end, batches.last + 1)
    answer = {
        "partition_index": 0,
        "error_code": ErrorCode.none,
        "high_watermark": end,
        "last_stable_offset": end,
        "log_start_offset": start,
        "aborted_transactions": None,
        "preferred_read_replica": -1,
        "records": data,
    }
    return answer, len(data)


def _code(found: Topic | ErrorCode) -> ErrorCode:
    """A partition's error: its topic's, else (a partition other than 0) unknown."""
    return found if isinstance(found, ErrorCode) else ErrorCode.unknown_topic_or_partition


def _failed(partition: int, code: ErrorCode, end: int = -1, start: int = -1) -> dict[str, Any]:
    return {
        "partition_index": partition,
        "error_code": code,
        "high_watermark": end,
        "last_stable_offset": end,
        "log_start_offset": start,
        "aborted_transactions": None,
        "preferred_read_replica": -1,
        "records": None,
    }


async def list_offsets(door: Door, conn: Connection, request: Any) -> Any:
    topics = []
    for wanted in request.topics:
        found = await _topic(door, conn, wanted.name)
        answers = []
        for partition in wanted.partitions:
            index = partition.partition_index
            if isinstance(found, ErrorCode) or index != 0:
                code = (
                    found if isinstance(found, ErrorCode) else ErrorCode.unknown_topic_or_partition
                )
                answers.append(
                    {"partition_index": index, "error_code": code, "offset": -1, "timestamp": -1}
                )
                continue
            offset, timestamp = await _offset(door, found, partition.timestamp)
            answers.append(
                {
                    "partition_index": index,
                    "error_code": ErrorCode.none,
                    "timestamp": timestamp,
                    "offset": offset,
                    "leader_epoch": 0,
                }
            )
        topics.append({"name": wanted.name, "partitions": answers})
    return respond(request, topics=topics)


async def _offset(door: Door, topic: Topic, timestamp: int) -> tuple[int, int]:
    """The offset (and the record's timestamp, or -1) a ListOffsets timestamp names."""
    if timestamp == LATEST:
        return await door.topics.end(topic), -1
    if timestamp == EARLIEST:
        return await door.topics.earliest(topic), -1
    record = event_record if topic.events else message_record
    if timestamp == MAX_TIMESTAMP:
        last = await door.topics.last(topic)
    else:
        last = await door.topics.at_time(topic, timestamp)
    if last is None:
        return -1, -1
    found = record(last)
    return found.offset, found.timestamp
