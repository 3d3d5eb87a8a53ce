"""Consumer groups (aiokafka, kcat): one coordinator for the cluster, committed offsets durable
in the store. On PostgreSQL with two nodes, each member connected to a different one; on
SQLite with one."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalGenerationError, RebalanceInProgressError

from tests.kafka.conftest import Node, kafka_node, kcat, new_queue
from tests.postgres import drop
from tests.postgres import fresh_database as fresh_postgres


@dataclass
class Cluster:
    nodes: list[Node]
    database_url: str | None

    def committed_rows(self, group: str) -> list[tuple[Any, ...]]:
        sql = (
            "SELECT topic, partition_index, committed_offset, committed_at FROM kafka_offsets"
            " WHERE group_id = ? ORDER BY topic"
        )
        if self.database_url is None:
            with sqlite3.connect(self.nodes[0].server.database) as conn:
                return conn.execute(sql, [group]).fetchall()
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(sql.replace("?", "%s"), [group]).fetchall()

    def restart(self) -> None:
        for node in self.nodes:
            node.stop()
        for node in self.nodes:
            node.start()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    if request.param == "sqlite":
        nodes = [kafka_node(tmp_path_factory.mktemp("cairn")).start()]
        url = None
    else:
        url = fresh_postgres()
        nodes = [
            kafka_node(tmp_path_factory.mktemp(f"node{i}"), database_url=url, node_id=i).start()
            for i in range(2)
        ]
    yield Cluster(nodes, url)
    for node in nodes:
        node.stop()
    if url is not None:
        drop(url)


@pytest.fixture
def http(cluster: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cluster.nodes[0].url, timeout=30.0) as client:
        yield client


def member(node: Node, queue: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        queue,
        bootstrap_servers=node.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        heartbeat_interval_ms=200,
        session_timeout_ms=6000,
        fetch_max_wait_ms=200,
    )


async def take(consumer: AIOKafkaConsumer, count: int) -> list[tuple[int, bytes | None]]:
    got: list[tuple[int, bytes | None]] = []
    for _ in range(100):
        batch = await consumer.getmany(timeout_ms=300, max_records=count - len(got))
        got += [(r.offset, r.value) for records in batch.values() for r in records]
        if len(got) >= count:
            break
    return got


async def commit(
    consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int] | None = None
) -> None:
    """Commit, as an application does: a rebalance under way (a member came or went) refuses
    commits until this member has joined again, which its next poll does."""
    for _ in range(50):
        try:
            await consumer.commit(offsets)
            return
        except (CommitFailedError, RebalanceInProgressError, IllegalGenerationError):
            await consumer.getmany(timeout_ms=200, max_records=1)
    raise AssertionError("the group never settled")


def test_a_member_that_leaves_hands_its_partition_on_at_the_committed_offset(
    cluster: Cluster, http: httpx.Client
) -> None:
    queue = new_queue(http)
    partition = TopicPartition(queue, 0)

    async def run() -> tuple[list[int], list[tuple[int, bytes | None]], list[int]]:
        # Two members, each through its own node; the one partition goes to one of them.
        members = [member(cluster.nodes[0], queue, "handover")]
        members.append(member(cluster.nodes[-1], queue, "handover"))
        await asyncio.gather(*(m.start() for m in members))
        settled = 0
        while settled < 3:  # the same assignment over three polls of both: a stable group
            before = [m.assignment() for m in members]
            await asyncio.gather(*(m.getmany(timeout_ms=200) for m in members))
            after = [m.assignment() for m in members]
            stable = before == after and sorted(len(a) for a in after) == [0, 1]
            settled = settled + 1 if stable else 0
        holder, idle = sorted(members, key=lambda m: len(m.assignment()), reverse=True)
        positions = []
        for i in range(10):
            answer = await asyncio.to_thread(
                http.post, f"/v1/queues/{queue}/messages", json={"body": f"m{i}"}
            )
            positions.append(answer.json()["position"])
        first = await take(holder, 4)
        await holder.commit()
        await holder.stop()  # leaves: its partition goes to the other member
        second = await take(idle, 6)
        await commit(idle)
        assert idle.assignment() == {partition}
        await idle.stop()
        return positions, second, [offset for offset, _ in first]

    positions, second, first = asyncio.run(run())
    assert first == positions[:4]
    assert second == [(p, f"m{i + 4}".encode()) for i, p in enumerate(positions[4:])]
    assert cluster.committed_rows("handover")[0][:3] == (queue, 0, positions[-1] + 1)


def test_committed_offsets_survive_a_restart_and_a_commit_that_changes_nothing_writes_nothing(
    cluster: Cluster, http: httpx.Client
) -> None:
    queue = new_queue(http)
    positions = [
        http.post(f"/v1/queues/{queue}/messages", json={"body": i}).json()["position"]
        for i in range(3)
    ]
    partition = TopicPartition(queue, 0)

    async def consume_and_commit() -> None:
        consumer = member(cluster.nodes[0], queue, "durable")
        await consumer.start()
        await take(consumer, 2)
        await commit(consumer, {partition: positions[1] + 1})
        await commit(consumer, {partition: positions[1] + 1})  # the same again
        await consumer.stop()

    asyncio.run(consume_and_commit())
    before = cluster.committed_rows("durable")
    assert [row[:3] for row in before] == [(queue, 0, positions[1] + 1)]
    cluster.restart()

    async def resume() -> tuple[int | None, list[tuple[int, bytes | None]]]:
        consumer = member(cluster.nodes[-1], queue, "durable")
        await consumer.start()
        committed = await consumer.committed(partition)
        rest = await take(consumer, 1)
        await commit(consumer, {partition: positions[1] + 1})  # nothing changes: no write
        await consumer.stop()
        return committed, rest

    committed, rest = asyncio.run(resume())
    assert committed == positions[1] + 1
    assert rest == [(positions[2], b"2")]
    assert cluster.committed_rows("durable") == before


def test_kcat_consumes_in_a_group(cluster: Cluster, http: httpx.Client) -> None:
    queue = new_queue(http)
    for i in range(3):
        http.post(f"/v1/queues/{queue}/messages", json={"body": f"k{i}"})
    out = kcat(cluster.nodes[-1], "-G", "kcat-group", queue, "-o", "beginning", "-e", "-f", "%s\n")
    assert out.decode().splitlines() == ["k0", "k1", "k2"]
