#!/usr/bin/env python
"""Cairn next to the queues people would otherwise pick, on this machine, same workload:
N messages published by 32 producers while 32 consumers receive them (up to 10 at a time) and
acknowledge them. Prints messages/s end to end (first publish to last ack) and the latency from
a message's publish to its delivery (p50/p99).

  cairn       cairn serve on SQLite, --durability full (every 2xx fsynced)
  cairn-pg    cairn serve on the same PostgreSQL as the postgres peer (--cairn-nodes N nodes)
  rabbitmq    durable queue, persistent messages, publisher confirms, manual acks (prefetch 10)
  postgres    a queue table: INSERT; UPDATE ... FOR UPDATE SKIP LOCKED to lease 10, then DELETE
              (the pgmq pattern); synchronous_commit on
  redis       a stream with a consumer group: XADD, XREADGROUP COUNT 10, XACK (this Redis
              keeps nothing on disk: not durable, shown as the speed of memory)

Clients are Python asyncio in one process with each system's own async driver; for Cairn a
minimal keep-alive HTTP/1.1 client, so that no peer pays for a heavier client than another.
Every system gets the same client process, the same durability (an answered publish is on
disk) and consumers that take up to 10 at a time.

``--batch 10`` is the batched variant: each producer call publishes 10 messages (Cairn: one
``/messages/batch`` request; RabbitMQ: 10 publishes in flight on a channel, a publisher-confirm
window of 10; PostgreSQL: one INSERT of 10 rows; Redis: one pipeline of 10 XADDs), and
consumers acknowledge what they took in one call (Cairn: ``/ack`` of the batch; RabbitMQ:
``basic.ack`` with ``multiple`` once 10 are pending, or 50 ms after the first pending one;
PostgreSQL and Redis already do).

Usage: scripts/bench_peers.py [--messages 20000] [--only cairn,cairn-pg,rabbitmq,postgres,redis]
                              [--cairn-workers 1] [--cairn-nodes 1] [--batch 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aio_pika.abc import AbstractIncomingMessage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.bench import cairn, postgres_database  # the same launchers as bench.py

PRODUCERS = 32
CONSUMERS = 32
BATCH = [1]
"""Messages per producer call (``--batch``)."""


@dataclass
class Tally:
    total: int
    latencies: list[float] = field(default_factory=list)
    acked: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def received(self, bodies: list[bytes]) -> None:
        now = time.perf_counter()
        self.latencies += [now - json.loads(body)["t"] for body in bodies]

    def ack(self, count: int) -> None:
        self.acked += count
        if self.acked >= self.total:
            self.done.set()


def body() -> bytes:
    return json.dumps({"t": time.perf_counter(), "order": 12345, "items": ["a", "b", "c"]}).encode()


async def drive(
    total: int,
    publish: Callable[[], Awaitable[None]],
    consume: Callable[[Tally], Awaitable[None]],
) -> dict[str, float]:
    tally = Tally(total)
    per_producer = total // PRODUCERS // BATCH[0]

    async def producer() -> None:
        for _ in range(per_producer):
            await publish()

    start = time.perf_counter()
    consumers = [asyncio.create_task(consume(tally)) for _ in range(CONSUMERS)]
    await asyncio.gather(*(producer() for _ in range(PRODUCERS)))
    await asyncio.wait_for(tally.done.wait(), 300)
    elapsed = time.perf_counter() - start
    # Consumers stop by themselves once everything is acked; one parked in a blocking read
    # is cancelled, and none may hold the report up.
    _, parked = await asyncio.wait(consumers, timeout=3)
    for task in parked:
        task.cancel()
    if parked:
        await asyncio.wait(parked, timeout=3)
    latencies = sorted(tally.latencies)
    return {
        "per_s": tally.acked / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


class Http:
    """Keep-alive HTTP/1.1 over asyncio streams: just enough for Cairn's JSON API."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, payload: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(
            b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(payload), payload)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return status, await self.reader.readexactly(length) if length else b""

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()


CAIRN_WORKERS = [1]
CAIRN_NODES = [1]
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


async def bench_cairn(total: int) -> dict[str, float]:
    with cairn(CAIRN_WORKERS[0]) as server:
        return await _drive_cairn(total, [int(server.url.rsplit(":", 1)[1])])


async def bench_cairn_postgres(total: int) -> dict[str, float]:
    """Cairn with its store on the same PostgreSQL as the SKIP LOCKED peer, on
    ``--cairn-nodes`` nodes of one broker (the clients spread over them)."""
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres_database(POSTGRES_ADMIN))
        servers = [
            stack.enter_context(cairn(CAIRN_WORKERS[0], database_url=url))
            for _ in range(CAIRN_NODES[0])
        ]
        return await _drive_cairn(total, [int(s.url.rsplit(":", 1)[1]) for s in servers])


async def _drive_cairn(total: int, ports: list[int]) -> dict[str, float]:
    producers = [Http(ports[i % len(ports)]) for i in range(PRODUCERS)]
    idle = list(producers)

    async def publish() -> None:
        client = idle.pop()
        try:
            if BATCH[0] == 1:
                payload = b'{"body": %s}' % body()
                status, _ = await client.post("/v1/queues/bench/messages", payload)
            else:
                entries = b",".join(b'{"body": %s}' % body() for _ in range(BATCH[0]))
                payload = b'{"messages": [%s]}' % entries
                status, _ = await client.post("/v1/queues/bench/messages/batch", payload)
            assert status == 201, status
        finally:
            idle.append(client)

    consumers = iter(range(CONSUMERS))

    async def consume(tally: Tally) -> None:
        client = Http(ports[next(consumers) % len(ports)])
        try:
            while not tally.done.is_set():
                _, answer = await client.post(
                    "/v1/queues/bench/receive", b'{"max_messages": 10, "wait_s": 1}'
                )
                messages = json.loads(answer)["messages"]
                if not messages:
                    continue
                tally.received([json.dumps(m["body"]).encode() for m in messages])
                acks = [{"id": m["id"], "receipt": m["receipt"]} for m in messages]
                _, answer = await client.post(
                    "/v1/queues/bench/ack", json.dumps({"acks": acks}).encode()
                )
                tally.ack(sum(r["status"] == 204 for r in json.loads(answer)["results"]))
        finally:
            await client.close()

    try:
        return await drive(total, publish, consume)
    finally:
        for client in producers:
            await client.close()


class RabbitAcks:
    """One RabbitMQ consumer's deliveries, acknowledged together: one ``basic.ack`` with
    ``multiple`` once ``most`` are pending, or ``wait_s`` after the first pending one."""

    most = 10  # the prefetch count: the broker sends no more before an ack, so a full window
    wait_s = 0.05

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.pending: list[AbstractIncomingMessage] = []
        self.timer: asyncio.Task[None] | None = None
        # An ack with ``multiple`` on an older tag after one on a newer tag names a tag the
        # broker no longer holds, a channel error: acks leave in the order they were taken.
        self.in_order = asyncio.Lock()

    async def delivered(self, message: AbstractIncomingMessage) -> None:
        # aiormq starts one task per delivery, in delivery order, and this runs before any
        # await: pending is in delivery-tag order, its last one the highest.
        self.tally.received([message.body])
        self.pending.append(message)
        if len(self.pending) >= self.most:
            await self.ack_pending()
        elif self.timer is None:
            self.timer = asyncio.create_task(self.ack_later())

    async def ack_later(self) -> None:
        await asyncio.sleep(self.wait_s)
        self.timer = None  # past its sleep: ack_pending must not cancel it mid-ack
        await self.ack_pending()

    async def ack_pending(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        # Taken before any await: what arrives during the ack waits for the next one.
        taken, self.pending = self.pending, []
        if not taken:
            return
        async with self.in_order:
            await taken[-1].ack(multiple=True)  # this one and every earlier one unacked
        self.tally.ack(len(taken))


async def bench_rabbitmq(total: int) -> dict[str, float]:
    import aio_pika

    connection = await aio_pika.connect_robust("amqp://guest:guest@127.0.0.1/")
    try:
        setup = await connection.channel()
        queue = await setup.declare_queue("cairn-bench", durable=True)
        await queue.purge()
        channels = [await connection.channel(publisher_confirms=True) for _ in range(PRODUCERS)]
        idle = list(channels)

        async def publish() -> None:
            channel = idle.pop()
            try:
                # Each publish returns once the broker confirmed it (persisted); BATCH of them
                # in flight at once is a confirm window of BATCH.
                await asyncio.gather(
                    *(
                        channel.default_exchange.publish(
                            aio_pika.Message(
                                body(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                            ),
                            routing_key="cairn-bench",
                        )
                        for _ in range(BATCH[0])
                    )
                )
            finally:
                idle.append(channel)

        async def consume(tally: Tally) -> None:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=10)
            mine = await channel.declare_queue("cairn-bench", durable=True)
            if BATCH[0] == 1:
                async with mine.iterator() as messages:
                    async for message in messages:
                        tally.received([message.body])
                        await message.ack()
                        tally.ack(1)
                        if tally.done.is_set():
                            break
                return
            # A callback, not the iterator under a timeout: aio_pika's iterator treats a
            # cancelled __anext__ as the end, so a 50 ms flush by asyncio.wait_for cancelled the
            # consumer on the broker at its first idle gap and the run could hang.
            acks = RabbitAcks(tally)
            tag = await mine.consume(acks.delivered)
            await tally.done.wait()
            await mine.cancel(tag)

        return await drive(total, publish, consume)
    finally:
        await connection.close()


async def bench_postgres(total: int) -> dict[str, float]:
    import asyncpg

    pool = await asyncpg.create_pool(
        "postgresql://postgres@127.0.0.1/test",
        min_size=PRODUCERS + CONSUMERS,
        max_size=PRODUCERS + CONSUMERS,
    )
    try:
        await pool.execute("DROP TABLE IF EXISTS cairn_bench_queue")
        await pool.execute(
            "CREATE TABLE cairn_bench_queue (id bigserial PRIMARY KEY,"
            " vt timestamptz NOT NULL DEFAULT now(), body jsonb NOT NULL)"
        )

        async def publish() -> None:
            await pool.execute(
                "INSERT INTO cairn_bench_queue (body) SELECT * FROM unnest($1::jsonb[])",
                [body().decode() for _ in range(BATCH[0])],
            )

        async def consume(tally: Tally) -> None:
            while not tally.done.is_set():
                rows = await pool.fetch(
                    "WITH c AS (SELECT id FROM cairn_bench_queue WHERE vt <= now() ORDER BY id"
                    " FOR UPDATE SKIP LOCKED LIMIT 10)"
                    " UPDATE cairn_bench_queue q SET vt = now() + interval '30 seconds'"
                    " FROM c WHERE q.id = c.id RETURNING q.id, q.body"
                )
                if not rows:
                    await asyncio.sleep(0.005)  # an empty table: poll again, as pgmq readers do
                    continue
                tally.received([row["body"].encode() for row in rows])
                await pool.execute(
                    "DELETE FROM cairn_bench_queue WHERE id = ANY($1::bigint[])",
                    [row["id"] for row in rows],
                )
                tally.ack(len(rows))

        return await drive(total, publish, consume)
    finally:
        await pool.execute("DROP TABLE IF EXISTS cairn_bench_queue")
        await pool.close()


async def bench_redis(total: int) -> dict[str, float]:
    from redis.asyncio import Redis

    client = Redis.from_url("redis://127.0.0.1:6379/15", max_connections=PRODUCERS + CONSUMERS)
    stream, group = "cairn-bench:stream", "bench"
    try:
        await client.delete(stream)
        await client.xgroup_create(stream, group, id="0", mkstream=True)

        async def publish() -> None:
            async with client.pipeline(transaction=False) as pipe:
                for _ in range(BATCH[0]):
                    pipe.xadd(stream, {"body": body()})
                await pipe.execute()

        async def consume(tally: Tally) -> None:
            name = f"c{id(tally)}-{os.urandom(4).hex()}"
            while not tally.done.is_set():
                response = await client.xreadgroup(group, name, {stream: ">"}, count=10, block=200)
                for _, entries in response or []:
                    tally.received([fields[b"body"] for _, fields in entries])
                    await client.xack(stream, group, *[entry_id for entry_id, _ in entries])
                    tally.ack(len(entries))

        return await drive(total, publish, consume)
    finally:
        await client.delete(stream)
        await client.aclose()


SYSTEMS = {
    "cairn": ("yes (fsync per commit)", bench_cairn),
    "cairn-pg": ("yes (synchronous_commit)", bench_cairn_postgres),
    "rabbitmq": ("yes (confirms, persistent)", bench_rabbitmq),
    "postgres": ("yes (synchronous_commit)", bench_postgres),
    "redis": ("no (this Redis keeps no disk)", bench_redis),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--only", default=",".join(SYSTEMS))
    parser.add_argument("--cairn-workers", type=int, default=1)
    parser.add_argument("--cairn-nodes", type=int, default=1, help="nodes for cairn-pg")
    parser.add_argument("--batch", type=int, default=1, help="messages per publish call")
    args = parser.parse_args()
    CAIRN_WORKERS[0] = args.cairn_workers
    CAIRN_NODES[0] = args.cairn_nodes
    BATCH[0] = args.batch
    total = args.messages - args.messages % (PRODUCERS * args.batch)
    print(
        f"{total:,} messages, {PRODUCERS} producers, {CONSUMERS} consumers,"
        f" {args.batch} per publish call\n"
    )
    print("| system | durable | messages/s | p50 latency | p99 latency |")
    print("|---|---|---|---|---|")
    for name in args.only.split(","):
        durable, run = SYSTEMS[name]
        result = asyncio.run(run(total))
        print(
            f"| {name} | {durable} | {result['per_s']:,.0f} | {result['p50_ms']:.1f} ms |"
            f" {result['p99_ms']:.1f} ms |",
            flush=True,
        )


if __name__ == "__main__":
    main()
