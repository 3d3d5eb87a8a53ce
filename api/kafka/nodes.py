"""The nodes of the cluster that speak Kafka, and which of them coordinates consumer groups.

Each listening process says it is alive every ``BEAT_S`` (a row of ``kafka_nodes``, which the
beat also reads back): Metadata lists the nodes seen within ``LIVE_S``. Groups have one
coordinator for the whole cluster, the listening process that holds the coordinator's
leadership lock (PostgreSQL: a session advisory lock; SQLite: a file lock) — so a group's
members meet in one place whichever node they reached. Its row says since when it leads;
should two rows say so for a moment (a coordinator died, another took over before its row went
stale), the more recent one is the coordinator.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Final

import structlog

from broker.errors import BrokerError
from broker.kafka import KafkaNode, KafkaState

log = structlog.get_logger(component="cairn.kafka")

BEAT_S: Final = 1.0
LIVE_S: Final = 5.0


def now_us() -> int:
    return time.time_ns() // 1000


class Nodes:
    def __init__(self, state: KafkaState, node_id: int, host: str, port: int) -> None:
        self._state = state
        self.me = KafkaNode(node_id, host, port, seen_at=0)
        self.coordinator_since: int | None = None
        """Since when this process leads the groups; None while it does not."""
        self._live: list[KafkaNode] = []
        self._beat = asyncio.Event()

    @property
    def coordinating(self) -> bool:
        return self.coordinator_since is not None

    def live(self) -> list[KafkaNode]:
        """The nodes seen alive lately, this one among them."""
        others = [n for n in self._live if n.node_id != self.me.node_id]
        return sorted([self.me, *others], key=lambda n: n.node_id)

    def coordinator(self) -> KafkaNode | None:
        """The node that coordinates the groups, if one is known."""
        if self.coordinating:
            return self.me
        leading = [n for n in self._live if n.coordinator_since is not None]
        return max(leading, key=lambda n: n.coordinator_since or 0, default=None)

    def lead(self, leading: bool) -> None:
        self.coordinator_since = now_us() if leading else None
        self._beat.set()  # tell the others now, not at the next beat

    async def run(self) -> None:
        """Beat for ever; a store that is down is retried at the next beat."""
        while True:
            now = now_us()
            me = KafkaNode(self.me.node_id, self.me.host, self.me.port, now, self.coordinator_since)
            try:
                self._live = await self._state.announce(me, now - int(LIVE_S * 1_000_000))
            except BrokerError as error:
                log.warning("kafka_node_beat_failed", error=error.detail)
            self._beat.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat.wait(), BEAT_S)
