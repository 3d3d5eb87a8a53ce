"""Running the Kafka door in a serving process: its listener, and (once it holds the port)
its node's beat."""

from __future__ import annotations

import asyncio

from api.kafka.door import Door
from api.kafka.groups import Coordinator
from api.kafka.listener import Listener
from api.kafka.nodes import Nodes
from api.kafka.topics import Topics
from api.runtime import lead
from api.services import Services


def door_of(services: Services) -> Door:
    settings = services.settings
    host, port = settings.kafka_address
    nodes = Nodes(services.storage.kafka, settings.kafka_node_id, host, port)
    return Door(
        services=services,
        state=services.storage.kafka,
        authenticator=settings.authenticator(),
        topics=Topics(services),
        nodes=nodes,
        coordinator=Coordinator(nodes),
    )


async def serve(door: Door) -> None:
    """Serve for ever (until cancelled): the listener; once it holds the port, the node's
    beat, and a bid for the lead of the cluster's consumer groups."""
    listener = Listener(door)

    async def coordinate() -> None:
        door.nodes.lead(True)
        try:
            await door.coordinator.expire_sessions()
        finally:
            door.nodes.lead(False)
            door.coordinator.reset()

    leadership = door.services.storage.leadership("kafka-coordinator")
    async with asyncio.TaskGroup() as group:
        group.create_task(listener.run(), name="cairn-kafka-listener")
        await listener.serving.wait()
        group.create_task(door.nodes.run(), name="cairn-kafka-nodes")
        group.create_task(lead(leadership, coordinate), name="cairn-kafka-coordinator")
