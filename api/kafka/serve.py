"""Running the Kafka door in a serving process: its listener, and (once it holds the port)
its node's beat."""

from __future__ import annotations

import asyncio

from api.kafka.door import Door
from api.kafka.listener import Listener
from api.kafka.nodes import Nodes
from api.kafka.topics import Topics
from api.services import Services


def door_of(services: Services) -> Door:
    settings = services.settings
    host, port = settings.kafka_address
    return Door(
        services=services,
        state=services.storage.kafka,
        authenticator=settings.authenticator(),
        topics=Topics(services),
        nodes=Nodes(services.storage.kafka, settings.kafka_node_id, host, port),
    )


async def serve(door: Door) -> None:
    """Serve for ever (until cancelled)."""
    listener = Listener(door)
    async with asyncio.TaskGroup() as group:
        group.create_task(listener.run(), name="cairn-kafka-listener")
        await listener.serving.wait()
        group.create_task(door.nodes.run(), name="cairn-kafka-nodes")
