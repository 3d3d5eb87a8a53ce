"""OffsetCommit and OffsetFetch: a group's committed offsets, durable in the store
(``kafka_offsets``), the same whichever node asks and kept across restarts. The coordinator
keeps each group's offsets it has read or written, so that a commit that changes nothing (a
consumer's periodic auto-commit while idle) writes nothing."""

from __future__ import annotations

from typing import Any

import structlog
from kio.schema.errors import ErrorCode

from api.kafka.codec import respond
from api.kafka.door import Connection, Door, may_read
from api.kafka.groups import PREPARING, Key
from api.kafka.nodes import now_us
from broker.errors import BrokerError
from broker.kafka import CommittedOffset

log = structlog.get_logger(component="cairn.kafka")


async def offset_commit(door: Door, conn: Connection, request: Any) -> Any:
    def answer(code_of: dict[Key, ErrorCode]) -> Any:
        return respond(
            request,
            topics=[
                {
                    "name": t.name,
                    "partitions": [
                        {
                            "partition_index": p.partition_index,
                            "error_code": code_of[(t.name, p.partition_index)],
                        }
                        for p in t.partitions
                    ],
                }
                for t in request.topics
            ],
        )

    wanted = [(t.name, p) for t in request.topics for p in t.partitions]
    group_error = _group_error(door, request)
    if group_error is not ErrorCode.none:
        return answer({(name, p.partition_index): group_error for name, p in wanted})
    codes: dict[Key, ErrorCode] = {}
    changed: list[CommittedOffset] = []
    known = await door.coordinator.offsets.of(door.state, request.group_id)
    now = now_us()
    for name, partition in wanted:
        key = (name, partition.partition_index)
        codes[key] = await _check(door, conn, name, partition.partition_index)
        if codes[key] is not ErrorCode.none:
            continue
        row = CommittedOffset(
            group_id=request.group_id,
            topic=name,
            partition_index=partition.partition_index,
            committed_offset=partition.committed_offset,
            leader_epoch=getattr(partition, "committed_leader_epoch", -1),
            metadata=partition.committed_metadata,
            committed_at=now,
        )
        before = known.get(key)
        if before is None or not before.same_as(row):
            changed.append(row)
    try:
        await door.state.commit(changed)
    except BrokerError as error:
        log.warning("kafka_offset_commit_failed", group=request.group_id, error=error.detail)
        for row in changed:
            codes[(row.topic, row.partition_index)] = ErrorCode.coordinator_not_available
        return answer(codes)
    for row in changed:
        known[(row.topic, row.partition_index)] = row
    return answer(codes)


def _group_error(door: Door, request: Any) -> ErrorCode:
    """Whether the group takes a commit from this member: one of its current generation (or,
    with generation -1, any caller while the group has no members)."""
    if not door.coordinator.active:
        return ErrorCode.not_coordinator
    generation = request.generation_id_or_member_epoch
    group = door.coordinator.groups.get(request.group_id)
    if generation < 0:
        if group is not None and group.members:
            return ErrorCode.unknown_member_id
        return ErrorCode.none
    member = group.members.get(request.member_id) if group is not None else None
    if group is None or member is None:
        return ErrorCode.unknown_member_id
    if generation != group.generation:
        return ErrorCode.illegal_generation
    if group.state == PREPARING:
        return ErrorCode.rebalance_in_progress
    return ErrorCode.none


async def _check(door: Door, conn: Connection, name: str, partition: int) -> ErrorCode:
    """A topic partition a group may commit or fetch offsets of (``read:<glob>``)."""
    topic = await door.topics.find(name)
    if topic is None or partition != 0:
        return ErrorCode.unknown_topic_or_partition
    if not may_read(conn.who, name, events=topic.events):
        return ErrorCode.topic_authorization_failed
    return ErrorCode.none


async def offset_fetch(door: Door, conn: Connection, request: Any) -> Any:
    if not door.coordinator.active:
        return respond(request, error_code=ErrorCode.not_coordinator, topics=[])
    known = await door.coordinator.offsets.of(door.state, request.group_id)
    if request.topics is None:  # every topic the group has committed to
        wanted: dict[str, list[int]] = {}
        for name, partition in sorted(known):
            wanted.setdefault(name, []).append(partition)
    else:
        wanted = {t.name: list(t.partition_indexes) for t in request.topics}
    topics = []
    for name, partitions in wanted.items():
        answers = []
        for partition in partitions:
            code = await _check(door, conn, name, partition)
            row = known.get((name, partition)) if code is ErrorCode.none else None
            if code is ErrorCode.unknown_topic_or_partition:
                code = ErrorCode.none  # nothing committed: -1, as Kafka answers
            answers.append(
                {
                    "partition_index": partition,
                    "committed_offset": row.committed_offset if row is not None else -1,
                    "committed_leader_epoch": row.leader_epoch if row is not None else -1,
                    "metadata": row.metadata if row is not None else "",
                    "error_code": code,
                }
            )
        topics.append({"name": name, "partitions": answers})
    return respond(request, error_code=ErrorCode.none, topics=topics)
