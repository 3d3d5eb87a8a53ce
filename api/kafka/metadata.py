"""Metadata: the live nodes, and every topic the caller may see with its one partition, whose
leader is the node asked (every node serves every partition from the shared store).

With ``--kafka-auto-create`` a Metadata request that names an unknown topic (and allows it,
v4+) creates the queue, as a Kafka broker with ``auto.create.topics.enable`` does: a producer's
first send then finds it.
"""

from __future__ import annotations

from typing import Any, Final

import structlog
from kio.schema.errors import ErrorCode

from api.auth import Principal
from api.kafka.codec import respond
from api.kafka.door import Connection, Door, may_describe
from api.kafka.topics import EVENTS_TOPIC, Topic, topic_id
from broker.commands import CreateQueue, QueueSettings
from broker.decide import FIFO_SUFFIX
from broker.errors import BrokerError, QueueExistsError

log = structlog.get_logger(component="cairn.kafka")

CLUSTER_ID: Final = "cairn"
_UNKNOWN_OPERATIONS: Final = -(2**31)
LEADER_EPOCH: Final = 0
"""The same on every node: clients track leader epochs, and every node leads every partition
of the same log."""


async def metadata(door: Door, conn: Connection, request: Any) -> Any:
    me = door.nodes.me
    principal = conn.who
    topics: list[dict[str, Any]] = []
    names: list[str] | None
    if request.topics is None or (request.__version__ == 0 and not request.topics):
        names = None  # every topic
    else:
        names = [t.name for t in request.topics if t.name is not None]
    if names is None:
        for name, queue_id in await door.topics.names():
            if may_describe(principal, name, events=queue_id is None):
                topics.append(_topic(name, queue_id, me.node_id))
    else:
        create = door.settings.kafka_auto_create and getattr(
            request, "allow_auto_topic_creation", True
        )
        for name in names:
            topics.append(await _named(door, principal, name, create=create))
    coordinator = door.nodes.coordinator()
    return respond(
        request,
        brokers=[
            {"node_id": n.node_id, "host": n.host, "port": n.port, "rack": None}
            for n in door.nodes.live()
        ],
        cluster_id=CLUSTER_ID,
        controller_id=coordinator.node_id if coordinator is not None else me.node_id,
        topics=topics,
        cluster_authorized_operations=_UNKNOWN_OPERATIONS,
    )


async def _named(door: Door, principal: Principal, name: str, *, create: bool) -> dict[str, Any]:
    events = name == EVENTS_TOPIC
    if not may_describe(principal, name, events=events):
        return _refused(name, ErrorCode.topic_authorization_failed)
    topic = await door.topics.find(name)
    if topic is None and create:
        topic = await auto_create(door, principal, name)
    if topic is None:
        return _refused(name, ErrorCode.unknown_topic_or_partition)
    return _topic(topic.name, topic.queue_id, door.nodes.me.node_id)


async def auto_create(door: Door, principal: Principal, name: str) -> Topic | None:
    """Create the queue of an unknown topic (``--kafka-auto-create``), for a caller who may
    manage queues; the topic, or None when it cannot be made."""
    if not principal.may("manage", name):
        return None
    settings = QueueSettings(fifo=name.endswith(FIFO_SUFFIX))
    try:
        await door.services.run(CreateQueue(queue=name, settings=settings))
        log.info("kafka_topic_created", topic=name)
    except QueueExistsError:
        pass  # made meanwhile, by someone else
    except BrokerError as error:
        log.info("kafka_topic_not_created", topic=name, reason=error.detail)
        return None
    return await door.topics.find(name)


def _topic(name: str, queue_id: int | None, leader: int) -> dict[str, Any]:
    return {
        "error_code": ErrorCode.none,
        "name": name,
        "topic_id": topic_id(name, queue_id),
        "is_internal": queue_id is None,
        "partitions": [
            {
                "error_code": ErrorCode.none,
                "partition_index": 0,
                "leader_id": leader,
                "leader_epoch": LEADER_EPOCH,
                "replica_nodes": [leader],
                "isr_nodes": [leader],
                "offline_replicas": [],
            }
        ],
        "topic_authorized_operations": _UNKNOWN_OPERATIONS,
    }


def _refused(name: str, code: ErrorCode) -> dict[str, Any]:
    return {
        "error_code": code,
        "name": name,
        "is_internal": False,
        "partitions": [],
        "topic_authorized_operations": _UNKNOWN_OPERATIONS,
    }
