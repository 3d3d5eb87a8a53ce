"""confluent-kafka (librdkafka) producers: acks=all, idempotence, gzip and zstd, retries, FIFO
queues, and the records a queue refuses; through a proxy that can lose an answer, on both
stores."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import confluent_kafka as ck
import httpx
import pytest

from tests.kafka.conftest import Node, kafka_node, new_queue
from tests.kafka.proxy import DroppingProxy
from tests.kafka.wire import produce_batch
from tests.postgres import drop
from tests.postgres import fresh_database as fresh_postgres


class Proxied:
    def __init__(self, node: Node, proxy: DroppingProxy) -> None:
        self.node = node
        self.proxy = proxy
        self.bootstrap = f"127.0.0.1:{proxy.port}"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def proxied(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxied]:
    url = fresh_postgres() if request.param == "postgres" else None
    directory = tmp_path_factory.mktemp("cairn")
    node = kafka_node(directory, "--kafka-auto-create", database_url=url)
    proxy = DroppingProxy(node.kafka_port)
    node.server.args += ["--kafka-advertised-port", str(proxy.port)]
    node.start()
    yield Proxied(node, proxy)
    node.stop()
    proxy.close()
    if url is not None:
        drop(url)


@pytest.fixture
def http(proxied: Proxied) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxied.node.url, timeout=30.0) as client:
        yield client


def producer(proxied: Proxied, **config: Any) -> ck.Producer:
    settings = {
        "bootstrap.servers": proxied.bootstrap,
        "acks": "all",
        "message.timeout.ms": 20_000,
        **config,
    }
    return ck.Producer(settings)


def send(
    p: ck.Producer,
    topic: str,
    records: list[tuple[str | None, bytes | str | None]],
    headers: list[tuple[str, bytes]] | None = None,
) -> list[tuple[ck.KafkaError | None, int]]:
    """Produce and wait: each record's error (None when delivered) and offset."""
    reports: list[tuple[ck.KafkaError | None, int]] = []
    for key, value in records:
        p.produce(
            topic,
            key=key,
            value=value,
            headers=headers or [],
            on_delivery=lambda error, message: reports.append((error, message.offset())),
        )
    assert p.flush(30) == 0
    return reports


def published(http: httpx.Client, queue: str) -> list[dict[str, Any]]:
    answer = http.get(
        "/v1/events", params={"queue": queue, "types": "message.published", "limit": 1000}
    )
    events: list[dict[str, Any]] = answer.json()["events"]
    return events


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_an_idempotent_producer_publishes_each_record_once_with_acks_all(
    proxied: Proxied, http: httpx.Client, codec: str
) -> None:
    queue = new_queue(http)
    p = producer(proxied, **{"enable.idempotence": True, "compression.type": codec})
    records = [(f"k{i}", f"{codec} value {i}") for i in range(50)]
    reports = send(p, queue, records, headers=[("codec", codec.encode())])
    assert [error for error, _ in reports] == [None] * 50
    events = published(http, queue)
    assert [e["position"] for e in events] == [offset for _, offset in reports]
    assert [(e["data"]["key"], e["data"]["body"]) for e in events] == records
    assert {e["data"]["attributes"]["codec"] for e in events} == {codec}
    assert {e["data"]["producer"]["epoch"] for e in events} == {0}


def test_a_retried_batch_appends_nothing_and_gets_the_first_answer(
    proxied: Proxied, http: httpx.Client
) -> None:
    queue = new_queue(http)
    p = producer(proxied, **{"enable.idempotence": True, "linger.ms": 50})
    assert send(p, queue, [("warm", "up")])[0][0] is None  # connections and producer id
    proxied.proxy.drop_next_produce_answer()
    reports = send(p, queue, [(f"k{i}", f"v{i}") for i in range(10)])
    assert proxied.proxy.dropped.is_set(), "the first answer was lost"
    assert [error for error, _ in reports] == [None] * 10
    events = published(http, queue)
    assert len(events) == 11, "the retry published nothing again"
    assert [e["position"] for e in events[1:]] == [offset for _, offset in reports]


def test_an_idempotent_producer_that_skips_a_sequence_or_goes_back_an_epoch_is_refused(
    proxied: Proxied, http: httpx.Client
) -> None:
    queue = new_queue(http)
    port = proxied.node.kafka_port
    ok = produce_batch(port, queue, [b"a", b"b"], producer_id=7, sequence=0, epoch=0)
    assert ok.error == 0
    again = produce_batch(port, queue, [b"a", b"b"], producer_id=7, sequence=0, epoch=0)
    assert (again.error, again.base_offset) == (0, ok.base_offset)
    gap = produce_batch(port, queue, [b"d"], producer_id=7, sequence=3, epoch=0)
    assert gap.error == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
    assert gap.message is not None and "expected 2" in gap.message
    bumped = produce_batch(port, queue, [b"e"], producer_id=7, sequence=0, epoch=1)
    assert bumped.error == 0, "a new epoch starts its sequence again"
    fenced = produce_batch(port, queue, [b"f"], producer_id=7, sequence=2, epoch=0)
    assert fenced.error == 47  # INVALID_PRODUCER_EPOCH
    assert [e["data"]["body"] for e in published(http, queue)] == ["a", "b", "e"]


def test_a_fifo_queue_takes_an_idempotent_producers_records_in_key_groups(
    proxied: Proxied, http: httpx.Client
) -> None:
    queue = new_queue(http, name=f"f-{uuid.uuid4().hex[:8]}.fifo", fifo=True)
    p = producer(proxied, **{"enable.idempotence": True})
    reports = send(p, queue, [("g1", "one"), ("g2", "two"), ("g1", "three")])
    assert [error for error, _ in reports] == [None] * 3
    events = published(http, queue)
    assert [(e["data"]["group_id"], e["data"]["body"]) for e in events] == [
        ("g1", "one"),
        ("g2", "two"),
        ("g1", "three"),
    ]
    assert all(e["data"]["dedup_id"] for e in events)


def test_a_fifo_queue_refuses_a_plain_producer_unless_it_dedups_by_content(
    proxied: Proxied, http: httpx.Client
) -> None:
    strict = new_queue(http, name=f"s-{uuid.uuid4().hex[:8]}.fifo", fifo=True)
    plain = producer(proxied, **{"enable.idempotence": False, "retries": 0})
    [(error, _)] = send(plain, strict, [("g1", "one")])
    assert error is not None and error.code() == ck.KafkaError.INVALID_RECORD
    refused = produce_batch(proxied.node.kafka_port, strict, [(b"g1", b"one", [])])
    assert refused.error == 87 and refused.message is not None and "dedup" in refused.message
    assert published(http, strict) == []
    by_content = new_queue(
        http, name=f"c-{uuid.uuid4().hex[:8]}.fifo", fifo=True, content_based_dedup=True
    )
    [(error, _)] = send(plain, by_content, [("g1", "one")])
    assert error is None
    assert [e["data"]["body"] for e in published(http, by_content)] == ["one"]


def test_a_binary_value_is_an_invalid_record(proxied: Proxied, http: httpx.Client) -> None:
    queue = new_queue(http)
    p = producer(proxied, retries=0)
    [(error, _)] = send(p, queue, [("k", b"\xff\xfe binary")])
    assert error is not None and error.code() == ck.KafkaError.INVALID_RECORD
    assert published(http, queue) == []


@pytest.mark.parametrize(
    ("record", "says"),
    [
        ((b"k", b"\xff\xfe binary", []), "record 1: the value is not UTF-8"),
        ((b"k", None, []), "record 1: a null value"),
        ((b"\xff", b"v", []), "record 1: the key is not UTF-8"),
        ((b"k", b"v", [("bad name!", b"x")]), "attribute rules"),
        ((b"k", b"v", [("h", b"1"), ("h", b"2")]), "'h' is repeated"),
        ((b"k", b"v", [("h", None)]), "'h' has a null value"),
        ((b"k", b"v", [("h", b"\xff")]), "'h' is not UTF-8"),
        ((b"k", b"v", [(f"h{i}", b"x") for i in range(17)]), "attribute rules"),
        ((b"k" * 257, b"v", []), "key is at most 256 bytes"),
    ],
)
def test_a_record_a_message_cannot_be_is_an_invalid_record_naming_why(
    proxied: Proxied,
    http: httpx.Client,
    record: tuple[bytes, bytes | None, list[tuple[str, bytes | None]]],
    says: str,
) -> None:
    queue = new_queue(http)
    answer = produce_batch(proxied.node.kafka_port, queue, [(b"fine", b"fine", []), record])
    assert answer.error == 87, answer  # INVALID_RECORD
    assert answer.message is not None and says in answer.message
    assert published(http, queue) == [], "a batch is all or nothing"


def test_a_record_over_the_queues_size_limit_is_too_large(
    proxied: Proxied, http: httpx.Client
) -> None:
    queue = new_queue(http, max_message_bytes=1024)
    p = producer(proxied, retries=0)
    [(error, _)] = send(p, queue, [("k", "x" * 2000)])
    assert error is not None and error.code() == ck.KafkaError.MSG_SIZE_TOO_LARGE
    [(error, _)] = send(p, queue, [("k", "x" * 1000)])
    assert error is None


def test_the_log_cannot_be_produced_to(proxied: Proxied) -> None:
    p = producer(proxied, retries=0)
    [(error, _)] = send(p, "cairn.events", [("k", "v")])
    assert error is not None and error.code() == ck.KafkaError.TOPIC_EXCEPTION


def test_auto_create_makes_the_queue_of_an_unknown_topic(
    proxied: Proxied, http: httpx.Client
) -> None:
    name = f"auto-{uuid.uuid4().hex[:8]}"
    [(error, offset)] = send(producer(proxied), name, [("k", "made on the fly")])
    assert error is None
    queue = http.get(f"/v1/queues/{name}", params={"min_position": offset})
    assert queue.status_code == 200
    assert queue.json()["stats"]["published_total"] == 1
