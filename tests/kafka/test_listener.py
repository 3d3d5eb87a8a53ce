"""The listener: long polls woken by commits, and any bytes at all closing only their own
connection (hypothesis), on a running broker."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.kafka.conftest import Node, api_versions, read_exactly

API_KEYS = [0, 1, 2, 3, 17, 18, 22, 36]


def test_a_waiting_consumer_gets_a_record_within_a_second_of_its_commit(
    node: Node, http: httpx.Client, queue: str
) -> None:
    async def run() -> list[float]:
        # The consumer asks to wait up to 5 s: only a wake-up by the commit makes it quick.
        consumer = AIOKafkaConsumer(bootstrap_servers=node.bootstrap, fetch_max_wait_ms=5000)
        await consumer.start()
        try:
            partition = TopicPartition(queue, 0)
            consumer.assign([partition])
            await consumer.seek_to_end(partition)
            await consumer.position(partition)
            delays = []
            for i in range(3):
                await asyncio.sleep(0.3)  # let the consumer's fetch be waiting
                answer = await asyncio.to_thread(
                    http.post, f"/v1/queues/{queue}/messages", json={"body": f"m{i}"}
                )
                answered = time.monotonic()
                record = await asyncio.wait_for(consumer.getone(), 10)
                delays.append(time.monotonic() - answered)
                assert record.offset == answer.json()["position"]
                assert record.value == f"m{i}".encode()
            return delays
        finally:
            await consumer.stop()

    delays = asyncio.run(run())
    assert max(delays) < 1.0, delays


frames = st.one_of(
    st.binary(max_size=600),  # garbage
    st.builds(  # any key and version, any body
        lambda key, version, body: struct.pack(">ihhi", 8 + len(body), key, version, 1) + body,
        st.integers(-(2**15), 2**15 - 1),
        st.integers(-(2**15), 2**15 - 1),
        st.binary(max_size=300),
    ),
    st.builds(  # served keys, nearly served versions, random bodies
        lambda key, version, body: struct.pack(">ihhi", 8 + len(body), key, version, 1) + body,
        st.sampled_from(API_KEYS),
        st.integers(0, 13),
        st.binary(max_size=300),
    ),
    st.builds(  # lying sizes: 2 GiB, negative, short, just over the limit before auth
        lambda size, tail: struct.pack(">i", size) + tail,
        st.sampled_from([2**31 - 1, -1, -(2**31), 0, 3, 7, 512 * 1024 + 1]),
        st.binary(max_size=64),
    ),
    st.builds(
        lambda whole, cut: whole[:cut], st.binary(min_size=8, max_size=64), st.integers(1, 7)
    ),
)


def _send(port: int, raw: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(3)
        try:
            while sock.recv(65536):
                pass
        except (TimeoutError, ConnectionResetError):
            pass


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=frames)
def test_any_bytes_close_only_their_own_connection(node: Node, raw: bytes) -> None:
    _send(node.kafka_port, raw)
    assert api_versions(node.kafka_port) == (7, 0)


def test_a_two_gigabyte_size_closes_the_connection_at_once(node: Node) -> None:
    with socket.create_connection(("127.0.0.1", node.kafka_port), timeout=5) as sock:
        sock.sendall(struct.pack(">i", 2**31 - 1) + b"x" * 100)
        sock.settimeout(5)
        assert sock.recv(1) == b""  # closed, without waiting for (or allocating) 2 GiB
    assert api_versions(node.kafka_port) == (7, 0)


def test_an_apiversions_of_a_newer_version_is_answered_with_the_versions_served(
    node: Node,
) -> None:
    with socket.create_connection(("127.0.0.1", node.kafka_port), timeout=5) as sock:
        body = struct.pack(">hhih", 18, 9, 5, 1) + b"x" + b"\0"
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", read_exactly(sock, 4))[0]
        answer = read_exactly(sock, size)
    correlation, error, count = struct.unpack_from(">ihi", answer)
    assert (correlation, error) == (5, 35)  # UNSUPPORTED_VERSION, in version 0
    keys = {struct.unpack_from(">hhh", answer, 10 + 6 * i) for i in range(count)}
    assert (18, 0, 3) in keys and (1, 4, 12) in keys


def test_the_metrics_count_connections_requests_and_bytes(node: Node, http: httpx.Client) -> None:
    api_versions(node.kafka_port)
    text = http.get("/metrics").text
    assert 'cairn_kafka_requests_total{api="ApiVersions",error="none"}' in text
    assert "cairn_kafka_connections_closed_total" in text
    assert "cairn_kafka_fetch_bytes_total" in text
