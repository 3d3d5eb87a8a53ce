"""A queue's kind (API.md v1.2, "Clarifications of v1.1"), through both doors and both stores:
``fifo`` defaults to whether the name ends in ``.fifo`` and a ``fifo`` that disagrees is a
``422``; a dead-letter queue is of its source's kind; and the SQS door's CreateQueue of a name
that exists compares only the attributes the request names, whichever door made the queue."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from tests.api.conftest import problem
from tests.api.test_sqs import error_of, new_name
from tests.api.test_sqs import sqs as sqs  # the fixture
from tests.api.v11 import events, head, nack, new_queue, receive, stats


def name(suffix: str = "") -> str:
    return f"kind-{uuid.uuid4().hex[:10]}{suffix}"


def test_a_name_ending_in_fifo_makes_a_fifo_queue(http: httpx.Client) -> None:
    fifo = http.post("/v1/queues", json={"name": name(".fifo")})
    assert fifo.status_code == 201 and fifo.json()["fifo"] is True
    standard = http.post("/v1/queues", json={"name": name()})
    assert standard.status_code == 201 and standard.json()["fifo"] is False
    explicit = http.post("/v1/queues", json={"name": name(".fifo"), "fifo": True})
    assert explicit.status_code == 201 and explicit.json()["fifo"] is True
    published = http.post(
        f"/v1/queues/{fifo.json()['name']}/messages",
        json={"body": 1, "group_id": "g", "dedup_id": "d"},
    )
    assert published.status_code == 201


@pytest.mark.parametrize(("suffix", "fifo"), [(".fifo", False), ("", True)])
def test_a_fifo_that_disagrees_with_the_name_is_422_and_writes_nothing(
    http: httpx.Client, suffix: str, fifo: bool
) -> None:
    before = head(http)
    refused = problem(http.post("/v1/queues", json={"name": name(suffix), "fifo": fifo}), 422)
    assert [e["field"] for e in refused["errors"]] == ["body.fifo"]
    assert ".fifo" in refused["detail"]
    assert head(http) == before


@pytest.mark.parametrize("source_suffix", [".fifo", ""])
def test_a_dead_letter_queue_of_the_other_kind_is_422(
    http: httpx.Client, source_suffix: str
) -> None:
    other = new_queue(http, "dlq") if source_suffix else name(".fifo")
    if not source_suffix:
        assert http.post("/v1/queues", json={"name": other}).status_code == 201
    policy = {"dead_letter_queue": other, "max_receive_count": 2}
    before = head(http)
    refused = problem(http.post("/v1/queues", json={"name": name(source_suffix), **policy}), 422)
    assert [e["field"] for e in refused["errors"]] == ["body.dead_letter_queue"]
    assert "FIFO" in refused["detail"] and "standard" in refused["detail"]
    source = name(source_suffix)
    assert http.post("/v1/queues", json={"name": source}).status_code == 201
    before = head(http)
    refused = problem(http.patch(f"/v1/queues/{source}", json=policy), 422)
    assert [e["field"] for e in refused["errors"]] == ["body.dead_letter_queue"]
    assert head(http) == before


def test_a_dead_letter_queue_of_the_same_kind_takes_the_messages_as_they_were(
    http: httpx.Client,
) -> None:
    dlq = name(".fifo")
    assert http.post("/v1/queues", json={"name": dlq}).status_code == 201
    source = name(".fifo")
    created = http.post(
        "/v1/queues",
        json={"name": source, "dead_letter_queue": dlq, "max_receive_count": 1},
    )
    assert created.status_code == 201
    http.post(f"/v1/queues/{source}/messages", json={"body": "x", "group_id": "g", "dedup_id": "d"})
    [message] = receive(http, source)
    nack(http, source, message)  # the lease that used up max_receive_count ends: dead-lettered
    moved = http.post(f"/v1/queues/{dlq}/receive", json={"wait_s": 5}).json()["messages"]
    assert [m["group_id"] for m in moved] == ["g"]


# -- the SQS door -------------------------------------------------------------------------------


def test_the_readme_boto3_example_works_after_the_curl_walk_through(
    http: httpx.Client, sqs: Any
) -> None:
    queue = name()
    # the README's walk-through, natively: a queue with Cairn's defaults
    created = http.post("/v1/queues", json={"name": queue, "visibility_timeout_s": 30})
    assert created.status_code == 201
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]  # the README's boto3 example
    assert url.endswith(f"/000000000000/{queue}")
    sqs.send_message(QueueUrl=url, MessageBody="hello")
    # what a request names is compared, and only that
    assert (
        sqs.create_queue(QueueName=queue, Attributes={"VisibilityTimeout": "30"})["QueueUrl"] == url
    )
    for differing in ({"VisibilityTimeout": "31"}, {"MessageRetentionPeriod": "345600"}):
        with pytest.raises(sqs.exceptions.QueueNameExists):
            sqs.create_queue(QueueName=queue, Attributes=differing)
    assert http.get(f"/v1/queues/{queue}").json()["retention_s"] == 1209600  # unchanged


def test_a_queue_sqs_made_answers_its_url_to_a_create_naming_nothing(sqs: Any) -> None:
    queue = new_name()
    url = sqs.create_queue(QueueName=queue, Attributes={"DelaySeconds": "5"})["QueueUrl"]
    assert sqs.create_queue(QueueName=queue)["QueueUrl"] == url
    with pytest.raises(sqs.exceptions.QueueNameExists):
        sqs.create_queue(QueueName=queue, Attributes={"DelaySeconds": "0"})


def test_a_native_queue_with_periods_in_its_name_is_reachable_through_sqs(
    http: httpx.Client, sqs: Any
) -> None:
    queue = new_queue(http, "orders.eu")
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="from sqs")
    assert stats(http, queue)["published_total"] == 1


def test_through_sqs_a_dead_letter_queue_of_the_other_kind_is_refused(
    http: httpx.Client, sqs: Any
) -> None:
    fifo = sqs.create_queue(QueueName=new_name() + ".fifo", Attributes={"FifoQueue": "true"})
    arn = sqs.get_queue_attributes(QueueUrl=fifo["QueueUrl"], AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 3})
    before = head(http)
    error = error_of(sqs.create_queue, QueueName=new_name(), Attributes={"RedrivePolicy": policy})
    assert error["Code"] == "InvalidParameterValue"
    assert error["Message"].startswith("Value for parameter RedrivePolicy is invalid. Reason:")
    assert "FIFO" in error["Message"]
    standard = sqs.create_queue(QueueName=new_name())["QueueUrl"]
    error = error_of(
        sqs.set_queue_attributes, QueueUrl=standard, Attributes={"RedrivePolicy": policy}
    )
    assert error["Code"] == "InvalidParameterValue" and "RedrivePolicy" in error["Message"]
    created = [(e["type"], e["queue"]) for e in events(http, after=before)]
    assert created == [("queue.created", standard.rsplit("/", 1)[-1])]  # nothing else


def test_through_sqs_a_fifo_name_without_fifo_queue_is_refused_in_sqs_words(sqs: Any) -> None:
    error = error_of(sqs.create_queue, QueueName=new_name() + ".fifo")
    assert error["Code"] == "InvalidParameterValue" and "FifoQueue" in error["Message"]
    error = error_of(sqs.create_queue, QueueName=new_name(), Attributes={"FifoQueue": "true"})
    assert error["Code"] == "InvalidParameterValue"
    assert error["Message"].startswith("The name of a FIFO queue can only include")
