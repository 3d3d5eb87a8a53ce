"""kcat (librdkafka) produces to and reads queues as topics, and reads the log as
``cairn.events``, on both stores."""

from __future__ import annotations

import json
import subprocess
import time

import boto3
import httpx
import msgspec
import pytest
from botocore.exceptions import ClientError

from tests.kafka.conftest import Node, kcat, new_queue
from tests.kafka.wire import produce_batch


def _value(i: int) -> str:
    # Text of all kinds: JSON-looking, quotes and backslashes, non-ASCII, a tab.
    kinds = [f"plain {i}", f'{{"n": {i}, "s": "q\\"uote"}}', f"ünïcødé ✓ {i}", f"a\tb\\c {i}"]
    return kinds[i % len(kinds)]


def test_a_thousand_keyed_records_with_headers_round_trip_byte_for_byte(
    node: Node, http: httpx.Client, queue: str
) -> None:
    records = [(f"key-{i}", _value(i)) for i in range(1000)]
    stdin = "".join(f"{k}\x1f{v}\n" for k, v in records).encode()
    kcat(node, "-P", "-t", queue, "-K", "\x1f", "-H", "source=kcat", "-H", "run=1", stdin=stdin)

    out = kcat(node, "-C", "-t", queue, "-o", "beginning", "-e", "-f", "%k\x1f%s\x1f%h\x1e")
    read = [tuple(line.split(b"\x1f")) for line in out.split(b"\x1e") if line]
    assert read == [(k.encode(), v.encode(), b"source=kcat,run=1") for k, v in records]

    # The same messages, through HTTP: the body is the value's text, the headers attributes.
    received = []
    while len(received) < len(records):
        answer = http.post(f"/v1/queues/{queue}/receive", json={"max_messages": 100})
        messages = answer.json()["messages"]
        assert messages, "every record is a message to receive"
        received += messages
        acks = [{"id": m["id"], "receipt": m["receipt"]} for m in messages]
        results = http.post(f"/v1/queues/{queue}/ack", json={"acks": acks}).json()["results"]
        assert {r["status"] for r in results} == {204}
    assert [(m["key"], m["body"]) for m in received] == records
    assert {json.dumps(m["attributes"], sort_keys=True) for m in received} == {
        json.dumps({"source": "kcat", "run": "1"}, sort_keys=True)
    }
    # Acked messages stay records while their publish event is readable.
    again = kcat(node, "-C", "-t", queue, "-o", "beginning", "-e", "-f", "%k\x1e")
    assert len([k for k in again.split(b"\x1e") if k]) == 1000


def test_offsets_are_the_positions_of_the_publish_events(
    node: Node, http: httpx.Client, queue: str
) -> None:
    published = [
        http.post(f"/v1/queues/{queue}/messages", json={"body": {"n": i}}).json()["position"]
        for i in range(3)
    ]
    other = new_queue(http)
    http.post(f"/v1/queues/{other}/messages", json={"body": "elsewhere"})
    out = kcat(node, "-C", "-t", queue, "-o", "beginning", "-e", "-f", "%o %s\n")
    assert out.decode().splitlines() == [f'{p} {{"n":{i}}}' for i, p in enumerate(published)]


def test_cairn_events_is_the_log_as_get_v1_events_serves_it(
    node: Node, http: httpx.Client, queue: str
) -> None:
    for i in range(5):
        http.post(f"/v1/queues/{queue}/messages", json={"body": i, "attributes": {"i": str(i)}})
    out = kcat(node, "-C", "-t", "cairn.events", "-o", "beginning", "-e", "-f", "%o\x1f%s\x1e")
    records = [line.split(b"\x1f", 1) for line in out.split(b"\x1e") if line]
    served: list[bytes] = []
    after = 0
    while True:
        page = http.get("/v1/events", params={"after": after, "limit": 1000})
        events = msgspec.json.decode(page.content, type=dict[str, list[msgspec.Raw] | int])
        batch = events["events"]
        assert isinstance(batch, list)
        if not batch:
            break
        served += [bytes(raw) for raw in batch]
        after = json.loads(served[-1])["position"]
    assert len(records) == len(served)
    assert [int(offset) for offset, _ in records] == [json.loads(e)["position"] for e in served]
    assert [value for _, value in records] == served


def test_reading_from_a_time_starts_at_the_first_record_published_then(
    node: Node, http: httpx.Client, queue: str
) -> None:
    for i in range(3):
        http.post(f"/v1/queues/{queue}/messages", json={"body": f"m{i}"})
        time.sleep(0.01)  # distinct publish milliseconds, so that a time names one record
    out = kcat(node, "-C", "-t", queue, "-o", "beginning", "-e", "-f", "%T %s\n")
    stamped = [line.split() for line in out.decode().splitlines()]
    second = int(stamped[1][0])
    assert second > int(stamped[0][0])
    after = kcat(node, "-C", "-t", queue, "-o", f"s@{second}", "-e", "-f", "%s\n")
    assert after.decode().splitlines() == ["m1", "m2"]
    late = kcat(node, "-C", "-t", queue, "-o", f"s@{int(stamped[2][0]) + 60_000}", "-e")
    assert late == b""


def test_a_deleted_queue_is_no_topic_and_a_restored_one_has_its_messages_again(
    node: Node, http: httpx.Client, queue: str
) -> None:
    http.post(f"/v1/queues/{queue}/messages", json={"body": "first life"})
    deleted(http, queue)
    gone = kcat(node, "-L", "-t", queue, "-J")
    assert json.loads(gone)["topics"][0]["error"] == "Broker: Unknown topic or partition"
    # A new queue of the name is a new topic: the old queue's records are not its.
    http.post("/v1/queues", json={"name": queue})
    http.post(f"/v1/queues/{queue}/messages", json={"body": "second queue"})
    out = kcat(node, "-C", "-t", queue, "-o", "beginning", "-e", "-f", "%s\n")
    assert out.decode().splitlines() == ["second queue"]
    deleted(http, queue)
    restored = http.post(f"/v1/queues/{queue}/restore")
    assert restored.status_code == 200
    http.post(f"/v1/queues/{queue}/messages", json={"body": "back again"})
    out = kcat(node, "-C", "-t", queue, "-o", "beginning", "-e", "-f", "%s\n")
    assert out.decode().splitlines() == ["second queue", "back again"]


def deleted(http: httpx.Client, queue: str) -> None:
    """Delete the queue, and wait until reads (the Kafka door's too) no longer see it."""
    answer = http.delete(f"/v1/queues/{queue}")
    assert answer.status_code == 204
    position = answer.headers["X-Cairn-Position"]
    found = http.get(f"/v1/queues/{queue}", params={"min_position": position})
    assert found.status_code == 404


def test_records_produced_by_kcat_are_answered_after_they_are_durable(
    node: Node, http: httpx.Client, queue: str
) -> None:
    kcat(node, "-P", "-t", queue, "-K", ":", stdin=b"a:1\nb:2\n")
    # kcat exits once its records are acknowledged: they are in the log already.
    head = http.get("/v1/projections").json()["head"]
    events = http.get("/v1/events", params={"queue": queue, "types": "message.published"})
    published = events.json()["events"]
    assert [e["data"]["key"] for e in published] == ["a", "b"]
    assert all(e["position"] <= head for e in published)


def test_a_native_publish_takes_a_key_and_shows_it(
    node: Node, http: httpx.Client, queue: str
) -> None:
    sent = http.post(f"/v1/queues/{queue}/messages", json={"body": "b", "key": "order-42"})
    assert sent.status_code == 201
    message_id, position = sent.json()["id"], sent.json()["position"]
    shown = http.get(f"/v1/queues/{queue}/messages/{message_id}?min_position={position}")
    assert shown.json()["key"] == "order-42"
    received = http.post(f"/v1/queues/{queue}/receive", json={}).json()["messages"]
    assert received[0]["key"] == "order-42"
    assert kcat(node, "-C", "-t", queue, "-o", "beginning", "-e", "-f", "%k") == b"order-42"
    too_long = http.post(f"/v1/queues/{queue}/messages", json={"body": "b", "key": "é" * 200})
    assert too_long.status_code == 422
    assert too_long.json()["errors"][0]["field"] == "body.key"


def test_the_logs_topic_name_and_kafkas_prefix_are_no_queue_names(
    node: Node, http: httpx.Client
) -> None:
    sqs = boto3.client(
        "sqs",
        endpoint_url=node.url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    for name in ("cairn.events", "__consumer_offsets"):
        refused = http.post("/v1/queues", json={"name": name})
        assert refused.status_code == 422
        assert "reserved" in refused.json()["detail"]
        with pytest.raises(ClientError) as through_sqs:
            sqs.create_queue(QueueName=name)
        assert through_sqs.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_an_unknown_topic_is_unknown_to_a_producer(node: Node) -> None:
    # librdkafka waits for such a topic to appear until its message times out: ask directly.
    refused = produce_batch(node.kafka_port, "no-such-queue", [b"x"])
    assert refused.error == 3  # UNKNOWN_TOPIC_OR_PARTITION
    done = subprocess.run(
        [
            "kcat",
            "-b",
            node.bootstrap,
            "-P",
            "-t",
            "no-such-queue",
            "-X",
            "message.timeout.ms=2000",
        ],
        input=b"x\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
