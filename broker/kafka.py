"""What the Kafka door keeps in the store beside the log: the nodes that serve the protocol,
the producer ids it has handed out, and consumer groups' committed offsets.

None of it is an event: committing an offset must never move a topic (``cairn.events`` is the
log itself), a node's liveness is not history, and a producer id is only a number no one else
may get. Each is a small table of its own with a port (``KafkaState``) and one SQL adapter
(``broker/store/kafka.py``) that both stores share.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Protocol

import msgspec
from msgspec import Meta

from broker.state import Int32

GroupId = Annotated[str, Meta(max_length=255)]
TopicName = Annotated[str, Meta(max_length=80)]


class KafkaNode(msgspec.Struct, frozen=True):
    """A process serving the Kafka protocol, as Metadata names it to clients."""

    node_id: Int32
    host: Annotated[str, Meta(max_length=255)]
    port: Int32
    seen_at: int
    """When it last said it was alive (µs since the epoch)."""
    coordinator_since: int | None = None
    """Since when it leads the consumer groups; None while it does not."""


class ProducerId(msgspec.Struct, frozen=True):
    """A producer id handed out (InitProducerId): the table's generated key makes each one
    unique across the nodes and over restarts."""

    producer_id: int
    issued_at: int


class CommittedOffset(msgspec.Struct, frozen=True):
    """A consumer group's position in one topic partition."""

    group_id: GroupId
    topic: TopicName
    partition_index: Int32
    committed_offset: int
    leader_epoch: Int32 = -1
    metadata: str | None = None
    committed_at: int = 0

    def same_as(self, other: CommittedOffset) -> bool:
        """Whether committing ``other`` over this would change nothing a reader sees."""
        return (self.committed_offset, self.leader_epoch, self.metadata) == (
            other.committed_offset,
            other.leader_epoch,
            other.metadata,
        )


class KafkaState(Protocol):
    async def announce(self, node: KafkaNode, live_after: int) -> list[KafkaNode]:
        """Record that ``node`` is alive now (its ``seen_at``), and return every node seen
        after ``live_after``, by id."""

    async def new_producer_id(self, now: int) -> int:
        """A producer id no other call, on any node, ever got."""

    async def committed(self, group_id: str) -> list[CommittedOffset]:
        """The group's committed offsets."""

    async def commit(self, offsets: Sequence[CommittedOffset]) -> None:
        """Store these offsets (replacing what their group, topic and partition had), all
        or none."""

    async def groups(self) -> list[str]:
        """Every group that has committed offsets, by id."""
