"""``KafkaState`` on a SQL store: the same statements for SQLite and PostgreSQL, through the
store's own ``Database`` (``broker/store/sql.py`` for the dialect they share)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from broker.kafka import CommittedOffset, KafkaNode, ProducerId
from broker.store.sql import Database, Sql
from broker.store.tables import Table

KAFKA_NODES: Final = Table("kafka_nodes", KafkaNode, key=("node_id",))
KAFKA_PRODUCER_IDS: Final = Table("kafka_producer_ids", ProducerId, key=("producer_id",))
KAFKA_OFFSETS: Final = Table(
    "kafka_offsets", CommittedOffset, key=("group_id", "topic", "partition_index")
)


class SqlKafkaState:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def announce(self, node: KafkaNode, live_after: int) -> list[KafkaNode]:
        def run(conn: Sql) -> list[KafkaNode]:
            conn.execute(KAFKA_NODES.upsert, KAFKA_NODES.values(node))
            rows = conn.query(
                f"{KAFKA_NODES.select} WHERE seen_at > ? ORDER BY node_id", [live_after]
            )
            return KAFKA_NODES.load_all(rows)

        return await self._database.transaction(run)

    async def new_producer_id(self, now: int) -> int:
        def run(conn: Sql) -> int:
            # The key is generated (SQLite AUTOINCREMENT, PostgreSQL a sequence): never handed
            # out twice, even after a row is gone. Only the last row is needed for that, so
            # the older ones are dropped as new ones come.
            rows = conn.query(
                "INSERT INTO kafka_producer_ids (issued_at) VALUES (?) RETURNING producer_id",
                [now],
            )
            issued = int(rows[0][0])
            conn.execute("DELETE FROM kafka_producer_ids WHERE producer_id < ?", [issued])
            return issued

        return await self._database.transaction(run)

    async def committed(self, group_id: str) -> list[CommittedOffset]:
        def run(conn: Sql) -> list[CommittedOffset]:
            rows = conn.query(
                f"{KAFKA_OFFSETS.select} WHERE group_id = ? ORDER BY topic, partition_index",
                [group_id],
            )
            return KAFKA_OFFSETS.load_all(rows)

        return await self._database.snapshot(run)

    async def commit(self, offsets: Sequence[CommittedOffset]) -> None:
        if not offsets:
            return

        def run(conn: Sql) -> None:
            conn.executemany(KAFKA_OFFSETS.upsert, [KAFKA_OFFSETS.values(o) for o in offsets])

        await self._database.transaction(run)

    async def groups(self) -> list[str]:
        def run(conn: Sql) -> list[str]:
            rows = conn.query("SELECT DISTINCT group_id FROM kafka_offsets ORDER BY group_id")
            return [str(row[0]) for row in rows]

        return await self._database.snapshot(run)
