"""Authentication on: SASL/PLAIN with Cairn's tokens, scopes per topic, and nothing served
before it (aiokafka, confluent-kafka and raw frames)."""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
from collections.abc import Iterator

import confluent_kafka as ck
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from api.auth import mint
from tests.kafka.conftest import Node, kafka_node, read_exactly

SECRET = "kafka-door-test-secret-of-32-bytes!!"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    running = kafka_node(tmp_path_factory.mktemp("cairn"), "--jwt-secret", SECRET).start()
    yield running
    running.stop()


def token(scope: str, ttl: int = 600) -> str:
    return mint(SECRET, "tester", scope, ttl)


@pytest.fixture(scope="module")
def queue(node: Node) -> str:
    with httpx.Client(base_url=node.url, timeout=30) as http:
        headers = {"Authorization": f"Bearer {token('admin')}"}
        assert http.post("/v1/queues", json={"name": "secured"}, headers=headers).status_code == 201
        http.post("/v1/queues/secured/messages", json={"body": "hello"}, headers=headers)
    return "secured"


def sasl(password: str) -> dict[str, str]:
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "anyone",
        "sasl_plain_password": password,
    }


def test_a_good_token_reads_and_produces_as_its_scopes_allow(node: Node, queue: str) -> None:
    async def run() -> list[bytes | None]:
        producer = AIOKafkaProducer(
            bootstrap_servers=node.bootstrap, **sasl(token(f"publish:{queue}"))
        )
        await producer.start()
        try:
            await producer.send_and_wait(queue, b"from aiokafka")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            queue,
            bootstrap_servers=node.bootstrap,
            auto_offset_reset="earliest",
            **sasl(token(f"read:{queue}")),
        )
        await consumer.start()
        try:
            got = await consumer.getmany(timeout_ms=5000)
            while sum(len(v) for v in got.values()) < 2:
                more = await consumer.getmany(timeout_ms=5000)
                assert more, "both records arrive"
                for tp, records in more.items():
                    got.setdefault(tp, []).extend(records)
            return [r.value for records in got.values() for r in records]
        finally:
            await consumer.stop()

    assert asyncio.run(run()) == [b"hello", b"from aiokafka"]


def _ck(node: Node, password: str, **extra: object) -> dict[str, object]:
    return {
        "bootstrap.servers": node.bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": "x",
        "sasl.password": password,
        **extra,
    }


def test_a_token_without_the_scope_is_refused_the_topic(node: Node, queue: str) -> None:
    sasl_options = [
        *("-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=PLAIN"),
        *("-X", "sasl.username=x", "-X", f"sasl.password={token('read:other-*')}"),
    ]
    done = subprocess.run(
        ["kcat", "-b", node.bootstrap, *sasl_options, "-C", "-t", queue, "-o", "beginning", "-e"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert b"Topic authorization failed" in done.stderr
    producer = ck.Producer(_ck(node, token(f"read:{queue}"), **{"message.timeout.ms": 5000}))
    errors: list[ck.KafkaError] = []
    producer.produce(queue, b"no", on_delivery=lambda e, m: errors.append(e))
    producer.flush(10)
    assert errors[0] is not None
    assert errors[0].code() == ck.KafkaError.TOPIC_AUTHORIZATION_FAILED


@pytest.mark.parametrize("password", ["not-a-token", "expired"])
def test_a_bad_token_fails_sasl_and_closes_the_connection(node: Node, password: str) -> None:
    if password == "expired":
        password = mint(SECRET, "tester", "admin", -60)
    plain = b"\0anyone\0" + password.encode()
    with socket.create_connection(("127.0.0.1", node.kafka_port), timeout=10) as sock:
        _ask(sock, 17, 1, struct.pack(">h", 5) + b"PLAIN")
        answer = _ask(sock, 36, 1, struct.pack(">i", len(plain)) + plain)
        assert struct.unpack_from(">h", answer)[0] == 58  # SASL_AUTHENTICATION_FAILED
        sock.settimeout(5)
        assert sock.recv(1) == b""


def _frame(key: int, version: int, body: bytes = b"") -> bytes:
    header = struct.pack(">hhih", key, version, 1, 1) + b"t"
    return struct.pack(">i", len(header) + len(body)) + header + body


def test_nothing_but_versions_and_sasl_is_served_before_authentication(node: Node) -> None:
    with socket.create_connection(("127.0.0.1", node.kafka_port), timeout=5) as sock:
        sock.sendall(_frame(18, 0))  # ApiVersions: answered
        size = struct.unpack(">i", read_exactly(sock, 4))[0]
        assert struct.unpack_from(">ih", read_exactly(sock, size)) == (1, 0)
        sock.sendall(_frame(3, 1, struct.pack(">i", -1)))  # Metadata: the connection closes
        sock.settimeout(5)
        assert sock.recv(1) == b""
    with socket.create_connection(("127.0.0.1", node.kafka_port), timeout=5) as sock:
        sock.sendall(struct.pack(">i", 512 * 1024 + 1))  # a frame too large before auth
        assert sock.recv(1) == b""


def _ask(sock: socket.socket, key: int, version: int, body: bytes) -> bytes:
    sock.sendall(_frame(key, version, body))
    size = struct.unpack(">i", read_exactly(sock, 4))[0]
    return read_exactly(sock, size)[4:]  # after the correlation id


def test_the_session_lasts_as_long_as_the_token(node: Node) -> None:
    plain = b"\0anyone\0" + token("events:read", ttl=2).encode()
    with socket.create_connection(("127.0.0.1", node.kafka_port), timeout=10) as sock:
        mechanism = b"PLAIN"
        handshake = _ask(sock, 17, 1, struct.pack(">h", len(mechanism)) + mechanism)
        assert struct.unpack_from(">h", handshake)[0] == 0
        answer = _ask(sock, 36, 1, struct.pack(">i", len(plain)) + plain)
        error, message_length = struct.unpack_from(">hh", answer)
        assert (error, message_length) == (0, -1)
        (lifetime_ms,) = struct.unpack_from(">q", answer, 4 + 4)
        assert 0 < lifetime_ms <= 2000
        sock.settimeout(10)
        assert sock.recv(1) == b"", "closed when the token expired"
