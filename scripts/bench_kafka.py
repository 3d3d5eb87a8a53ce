#!/usr/bin/env python
"""The Kafka door beside the native API, measured in one run on one store (SQLite):

  1  catch-up read of a large log with kcat (-C -e -o beginning -q), records/s, for a queue's
     topic and for cairn.events; beside it, GET /v1/events paged (1000 a page), events/s
  2  produce with librdkafka's defaults (linger.ms 5, acks=all) of ~300-byte records,
     messages/s; beside it, native batch publish of 100 per request (8 at once), messages/s
  3  end to end: a record produced -> a consumer group member has it, p50/p99 latency

The log of 1 is loaded with native batch publishes, which are measured as they go (2's native
number). Usage: scripts/bench_kafka.py [--events 1000000] [--produce 100000] [--samples 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
ORDER = json.dumps(
    {
        "order": 123456,
        "customer": {"id": "c-98765", "name": "Ada Lovelace", "email": "ada@example.com"},
        "lines": [
            {"sku": "SKU-0001", "qty": 2, "price": 19.99, "note": "gift wrap"},
            {"sku": "SKU-0002", "qty": 1, "price": 5.49, "note": "none"},
        ],
        "currency": "EUR",
        "channel": "web",
    }
)  # ~300 bytes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(directory: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    port, kafka = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    process = subprocess.Popen(
        [
            sys.executable, "-m", "api.cli", "serve", "--port", str(port),
            "--kafka-port", str(kafka), "--database-url", f"sqlite:///{directory}/cairn.db",
            "--log-file", str(directory / "cairn.log"), "--log-level", "warning",
        ],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                with socket.create_connection(("127.0.0.1", kafka), timeout=1):
                    return process, url, f"127.0.0.1:{kafka}"
        except (httpx.TransportError, OSError):
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("cairn did not start")


async def load(url: str, queue: str, events: int, concurrency: int = 8) -> float:
    """Native batch publish of 100 ~300-byte messages per request; messages/s."""
    batches = events // 100
    body = {"messages": [{"body": json.loads(ORDER)} for _ in range(100)]}
    done = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while done < batches:
            done += 1
            answer = await client.post(f"/v1/queues/{queue}/messages/batch", json=body)
            assert answer.status_code == 201, answer.text

    began = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return batches * 100 / (time.perf_counter() - began)


def kcat_read(bootstrap: str, topic: str) -> tuple[int, float]:
    began = time.perf_counter()
    out = subprocess.run(
        ["kcat", "-b", bootstrap, "-C", "-t", topic, "-e", "-o", "beginning", "-q", "-f", "%o\n"],
        capture_output=True,
        check=True,
    ).stdout
    seconds = time.perf_counter() - began
    return out.count(b"\n"), seconds


def native_read(url: str) -> tuple[int, float]:
    count, after = 0, 0
    began = time.perf_counter()
    with httpx.Client(base_url=url, timeout=60) as client:
        while True:
            page = client.get("/v1/events", params={"after": after, "limit": 1000}).json()
            if not page["events"]:
                break
            count += len(page["events"])
            after = page["next_after"]
    return count, time.perf_counter() - began


def kafka_produce(bootstrap: str, topic: str, count: int) -> float:
    import confluent_kafka as ck

    producer = ck.Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    failed = []
    began = time.perf_counter()
    for i in range(count):
        while True:
            try:
                producer.produce(
                    topic, ORDER, key=str(i), on_delivery=lambda e, m: e and failed.append(e)
                )
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush(300)
    seconds = time.perf_counter() - began
    assert not failed, failed[:3]
    return count / seconds


def end_to_end(bootstrap: str, topic: str, samples: int) -> tuple[float, float]:
    import confluent_kafka as ck

    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{time.time_ns()}",
            "auto.offset.reset": "latest",
            "fetch.wait.max.ms": 500,
        }
    )
    consumer.subscribe([topic])
    while not consumer.assignment():
        consumer.poll(0.2)
    for _ in range(10):  # settle: the group formed, the position known
        consumer.poll(0.1)
    producer = ck.Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    latencies = []
    for i in range(samples):
        sent = time.perf_counter()
        producer.produce(topic, ORDER, key=f"e2e-{i}")
        producer.poll(0)
        while True:
            message = consumer.poll(5)
            if (
                message is not None
                and message.error() is None
                and message.key() == f"e2e-{i}".encode()
            ):
                break
        latencies.append(time.perf_counter() - sent)
    producer.flush(10)
    consumer.close()
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--produce", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        process, url, bootstrap = start(Path(folder))
        try:
            httpx.post(f"{url}/v1/queues", json={"name": "big"}).raise_for_status()
            httpx.post(f"{url}/v1/queues", json={"name": "produced"}).raise_for_status()
            httpx.post(f"{url}/v1/queues", json={"name": "e2e"}).raise_for_status()
            native_publish = asyncio.run(load(url, "big", args.events))
            print(f"native batch publish (100/request, 8 at once): {native_publish:,.0f} msg/s")
            for topic in ("big", "cairn.events"):
                count, seconds = kcat_read(bootstrap, topic)
                print(f"kcat catch-up read of {topic}: {count:,} records in {seconds:.1f} s"
                      f" = {count / seconds:,.0f} records/s")  # fmt: skip
            count, seconds = native_read(url)
            print(f"GET /v1/events paged: {count:,} events in {seconds:.1f} s"
                  f" = {count / seconds:,.0f} events/s")  # fmt: skip
            rate = kafka_produce(bootstrap, "produced", args.produce)
            print(f"kafka produce (librdkafka defaults, acks=all): {rate:,.0f} msg/s")
            p50, p99 = end_to_end(bootstrap, "e2e", args.samples)
            print(f"end to end produce -> group member: p50 {p50 * 1000:.1f} ms,"
                  f" p99 {p99 * 1000:.1f} ms ({args.samples} samples)")  # fmt: skip
        finally:
            process.terminate()
            process.wait(30)


if __name__ == "__main__":
    main()
