"""The SQS door (API.md, "SQS-compatible endpoint") driven by real SQS clients: boto3 against a
real ``cairn serve`` (SQLite and PostgreSQL), the AWS CLI, and SigV4 with auth on. What goes in
through one door comes out of the other, and both show in one message history."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import httpx
import jwt
import pytest

from tests.api.conftest import Server, make_server
from tests.api.v11 import events, head

SECRET = "sqs-door-secret-for-tests-0123456789"


def client(url: str, key: str = "test", secret: str = "test") -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=url,
        region_name="eu-west-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )


@pytest.fixture
def sqs(server: Server) -> Any:
    return client(server.url)


def new_name(prefix: str = "sqs") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def error_of(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        call(*args, **kwargs)
    error: dict[str, Any] = raised.value.response["Error"]
    return error


def attributes_md5(attributes: dict[str, dict[str, Any]]) -> str:
    """SQS's documented digest of message attributes, written here from the SQS developer
    guide ("Calculating the MD5 message digest for message attributes") as the test's oracle."""
    digest = hashlib.md5(usedforsecurity=False)
    for name in sorted(attributes):
        value = attributes[name]
        for part in (name.encode(), value["DataType"].encode()):
            digest.update(struct.pack(">I", len(part)) + part)
        if "BinaryValue" in value:
            data = value["BinaryValue"]
            digest.update(b"\x02" + struct.pack(">I", len(data)) + data)
        else:
            data = value["StringValue"].encode()
            digest.update(b"\x01" + struct.pack(">I", len(data)) + data)
    return digest.hexdigest()


# -- queues ---------------------------------------------------------------------------------------


def test_create_get_list_and_delete_queues(sqs: Any) -> None:
    prefix = new_name("list")
    urls = [sqs.create_queue(QueueName=f"{prefix}-{i}")["QueueUrl"] for i in range(3)]
    assert urls[0].endswith(f"/000000000000/{prefix}-0")
    assert sqs.get_queue_url(QueueName=f"{prefix}-1")["QueueUrl"] == urls[1]
    assert sqs.list_queues(QueueNamePrefix=prefix)["QueueUrls"] == urls

    first = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2)
    assert first["QueueUrls"] == urls[:2]
    rest = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2, NextToken=first["NextToken"])
    assert rest["QueueUrls"] == urls[2:] and "NextToken" not in rest

    sqs.delete_queue(QueueUrl=urls[0])
    assert sqs.list_queues(QueueNamePrefix=prefix)["QueueUrls"] == urls[1:]
    error = error_of(sqs.get_queue_url, QueueName=f"{prefix}-0")
    assert error["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message(QueueUrl=urls[0], MessageBody="x")


def test_creating_an_existing_queue_answers_its_url_unless_attributes_differ(sqs: Any) -> None:
    name = new_name()
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "40"})["QueueUrl"]
    again = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "40"})
    assert again["QueueUrl"] == url
    with pytest.raises(sqs.exceptions.QueueNameExists) as raised:
        sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "41"})
    assert raised.value.response["Error"]["Message"] == (
        "A queue already exists with the same name and a different value for attribute"
        " VisibilityTimeout"
    )


def test_queue_attributes_round_trip_and_show_in_the_native_resource(
    sqs: Any, http: httpx.Client
) -> None:
    dlq_url = sqs.create_queue(QueueName=new_name("dlq"))["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    assert dlq_arn.startswith("arn:aws:sqs:eu-west-1:000000000000:dlq-")
    name = new_name()
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": "45",
            "DelaySeconds": "2",
            "MessageRetentionPeriod": "3600",
            "MaximumMessageSize": "2048",
            "ReceiveMessageWaitTimeSeconds": "1",
            "RedrivePolicy": policy,
        },
        tags={"team": "payments"},
    )["QueueUrl"]
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert got["VisibilityTimeout"] == "45" and got["DelaySeconds"] == "2"
    assert got["MessageRetentionPeriod"] == "3600" and got["MaximumMessageSize"] == "2048"
    assert got["ReceiveMessageWaitTimeSeconds"] == "1"
    assert json.loads(got["RedrivePolicy"]) == {
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": 3,
    }
    assert "FifoQueue" not in got

    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "60"})
    native = http.get(f"/v1/queues/{name}").json()
    assert native["visibility_timeout_s"] == 60 and native["delay_s"] == 2
    assert native["max_message_bytes"] == 2048 and native["receive_wait_s"] == 1
    assert native["dead_letter_queue"] == dlq_arn.rsplit(":", 1)[1]
    assert native["max_receive_count"] == 3 and native["tags"] == {"team": "payments"}
    assert sqs.list_dead_letter_source_queues(QueueUrl=dlq_url)["queueUrls"] == [url]


@pytest.mark.parametrize(
    ("attributes", "code"),
    [
        ({"VisibilityTimeout": "43201"}, "InvalidAttributeValue"),
        ({"DelaySeconds": "ten"}, "InvalidAttributeValue"),
        ({"MaximumMessageSize": "1023"}, "InvalidAttributeValue"),
        ({"RedrivePolicy": "{not json"}, "InvalidAttributeValue"),
        ({"Colour": "blue"}, "InvalidAttributeName"),
        ({"FifoQueue": "maybe"}, "InvalidAttributeValue"),
    ],
)
def test_bad_queue_attributes_are_refused_and_create_nothing(
    sqs: Any, attributes: dict[str, str], code: str
) -> None:
    name = new_name()
    assert error_of(sqs.create_queue, QueueName=name, Attributes=attributes)["Code"] == code
    assert (
        "QueueUrls" not in sqs.list_queues(QueueNamePrefix=name)
        or not sqs.list_queues(QueueNamePrefix=name)["QueueUrls"]
    )


def test_tags(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=new_name())["QueueUrl"]
    assert "Tags" not in sqs.list_queue_tags(QueueUrl=url)
    sqs.tag_queue(QueueUrl=url, Tags={"a": "1", "b": "2"})
    sqs.tag_queue(QueueUrl=url, Tags={"b": "3"})
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"a": "1", "b": "3"}
    sqs.untag_queue(QueueUrl=url, TagKeys=["a"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"b": "3"}


# -- the rest of SQS's attributes (v1.2) --------------------------------------------------------


def test_every_attribute_sqs_accepts_is_kept_and_shown_natively(
    sqs: Any, http: httpx.Client
) -> None:
    name = f"{new_name('attrs')}.fifo"
    policy = json.dumps({"Version": "2012-10-17", "Statement": []})
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "FifoQueue": "true",
            "Policy": policy,
            "KmsMasterKeyId": "alias/aws/sqs",
            "KmsDataKeyReusePeriodSeconds": "600",
            "DeduplicationScope": "messageGroup",
            "FifoThroughputLimit": "perMessageGroupId",
        },
    )["QueueUrl"]
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert got["Policy"] == policy and got["KmsMasterKeyId"] == "alias/aws/sqs"
    assert got["KmsDataKeyReusePeriodSeconds"] == "600" and got["SqsManagedSseEnabled"] == "false"
    assert got["DeduplicationScope"] == "messageGroup"
    assert got["FifoThroughputLimit"] == "perMessageGroupId"
    native = http.get(f"/v1/queues/{name}").json()
    assert native["policy"] == policy and native["kms_data_key_reuse_period_s"] == 600
    assert native["deduplication_scope"] == "messageGroup"

    # Without names, no attributes (as SQS); a standard queue shows no FIFO attribute.
    assert "Attributes" not in sqs.get_queue_attributes(QueueUrl=url)
    plain = sqs.create_queue(QueueName=new_name(), Attributes={"SqsManagedSseEnabled": "true"})
    shown = sqs.get_queue_attributes(QueueUrl=plain["QueueUrl"], AttributeNames=["All"])
    assert shown["Attributes"]["SqsManagedSseEnabled"] == "true"
    assert not {"DeduplicationScope", "FifoThroughputLimit", "Policy"} & set(shown["Attributes"])
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": ""})
    assert (
        "Policy" not in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    )


@pytest.mark.parametrize(
    ("name", "attributes", "code"),
    [
        ("std", {"KmsDataKeyReusePeriodSeconds": "59"}, "InvalidAttributeValue"),
        ("q.fifo", {"DeduplicationScope": "everywhere"}, "InvalidAttributeValue"),
        ("q.fifo", {"FifoThroughputLimit": "perMessageGroupId"}, "InvalidParameterValue"),
        ("std", {"DeduplicationScope": "queue"}, "InvalidParameterValue"),
        ("std", {"Policy": "not a policy"}, "InvalidParameterValue"),
        (
            "std",
            {"KmsMasterKeyId": "alias/k", "SqsManagedSseEnabled": "true"},
            "InvalidParameterValue",
        ),
    ],
)
def test_attributes_sqs_refuses_are_refused(
    sqs: Any, name: str, attributes: dict[str, str], code: str
) -> None:
    queue = f"{new_name()}-{name}"
    fifo = {"FifoQueue": "true"} if queue.endswith(".fifo") else {}
    assert (
        error_of(sqs.create_queue, QueueName=queue, Attributes={**fifo, **attributes})["Code"]
        == code
    )


def test_a_redrive_policy_is_echoed_as_sent_while_it_holds(sqs: Any, http: httpx.Client) -> None:
    dlq = new_name("dlq")
    sqs.create_queue(QueueName=dlq)
    # As an SDK configured for AWS writes it: another account, another region, a string count.
    sent = json.dumps(
        {"maxReceiveCount": "4", "deadLetterTargetArn": f"arn:aws:sqs:us-west-2:123456789012:{dlq}"}
    )
    name = new_name()
    url = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": sent})["QueueUrl"]
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
    assert got["Attributes"]["RedrivePolicy"] == sent
    assert sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": sent})["QueueUrl"] == url
    # Changed natively, it says what the queue now does.
    assert http.patch(f"/v1/queues/{name}", json={"max_receive_count": 7}).status_code == 200
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy", "QueueArn"])
    arn = got["Attributes"]["QueueArn"].rsplit(":", 1)[0]
    assert json.loads(got["Attributes"]["RedrivePolicy"]) == {
        "deadLetterTargetArn": f"{arn}:{dlq}",
        "maxReceiveCount": 7,
    }


def test_message_group_deduplication_scope_deduplicates_per_group(sqs: Any) -> None:
    url = sqs.create_queue(
        QueueName=f"{new_name('scope')}.fifo",
        Attributes={"FifoQueue": "true", "DeduplicationScope": "messageGroup"},
    )["QueueUrl"]
    first = sqs.send_message(
        QueueUrl=url, MessageBody="1", MessageGroupId="a", MessageDeduplicationId="d"
    )
    other_group = sqs.send_message(
        QueueUrl=url, MessageBody="2", MessageGroupId="b", MessageDeduplicationId="d"
    )
    again = sqs.send_message(
        QueueUrl=url, MessageBody="3", MessageGroupId="a", MessageDeduplicationId="d"
    )
    assert other_group["MessageId"] != first["MessageId"]
    assert again["MessageId"] == first["MessageId"]


def test_permissions_edit_the_stored_policy(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=new_name("perm"))["QueueUrl"]
    sqs.add_permission(
        QueueUrl=url, Label="shop", AWSAccountIds=["111122223333"], Actions=["SendMessage"]
    )
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.loads(
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"]
    )
    assert policy["Statement"] == [
        {
            "Sid": "shop",
            "Effect": "Allow",
            "Principal": {"AWS": ["arn:aws:iam::111122223333:root"]},
            "Action": ["SQS:SendMessage"],
            "Resource": arn,
        }
    ]
    again = error_of(
        sqs.add_permission,
        QueueUrl=url,
        Label="shop",
        AWSAccountIds=["111122223333"],
        Actions=["ReceiveMessage"],
    )
    assert again["Code"] == "InvalidParameterValue"
    sqs.remove_permission(QueueUrl=url, Label="shop")
    assert "Attributes" not in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])
    assert error_of(sqs.remove_permission, QueueUrl=url, Label="shop")["Code"] == (
        "InvalidParameterValue"
    )


def test_approximate_counts_follow_the_clock(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=new_name("counts"))["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="held")
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
    [held] = sqs.receive_message(QueueUrl=url, VisibilityTimeout=30)["Messages"]
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]

    def counts() -> tuple[str, str, str]:
        got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return (*(got[n] for n in names), got["ApproximateNumberOfMessagesDelayed"])

    assert counts() == ("0", "1", "1")
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=held["ReceiptHandle"], VisibilityTimeout=1
    )
    time.sleep(1.2)  # the lease's own second: what is tested is the clock, not a race
    # Visible at once, whether or not the sweeper has made it available yet.
    assert counts() == ("1", "0", "1")
    assert held["Body"] == "held"


# -- messages -------------------------------------------------------------------------------------


def test_send_receive_delete_with_md5s_and_every_attribute_type(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=new_name())["QueueUrl"]
    attributes = {
        "text": {"DataType": "String", "StringValue": "héllo"},
        "count": {"DataType": "Number", "StringValue": "-12.5e3"},
        "blob": {"DataType": "Binary", "BinaryValue": bytes(range(256))},
        "custom": {"DataType": "String.json", "StringValue": '{"a": 1}'},
        "custom_bin": {"DataType": "Binary.gzip", "BinaryValue": b"\x1f\x8b"},
    }
    body = "body with ünïcode ✓ and \t tab"
    sent = sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attributes)
    assert sent["MD5OfMessageBody"] == hashlib.md5(body.encode()).hexdigest()
    assert sent["MD5OfMessageAttributes"] == attributes_md5(attributes)

    got = sqs.receive_message(
        QueueUrl=url, MessageAttributeNames=["All"], AttributeNames=["All"], WaitTimeSeconds=2
    )["Messages"]
    assert len(got) == 1
    message = got[0]
    assert message["Body"] == body and message["MessageId"] == sent["MessageId"]
    assert message["MD5OfBody"] == sent["MD5OfMessageBody"]
    assert message["MessageAttributes"] == attributes
    assert message["MD5OfMessageAttributes"] == attributes_md5(attributes)
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"
    assert abs(int(message["Attributes"]["SentTimestamp"]) / 1000 - time.time()) < 60
    first = int(message["Attributes"]["ApproximateFirstReceiveTimestamp"])
    assert int(message["Attributes"]["SentTimestamp"]) <= first

    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])  # idempotent
    assert "Messages" not in sqs.receive_message(QueueUrl=url)


def test_only_the_attributes_asked_for_are_returned(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=new_name())["QueueUrl"]
    attributes = {
        "app.a": {"DataType": "String", "StringValue": "1"},
        "app.b": {"DataType": "String", "StringValue": "2"},
        "other": {"DataType": "String", "StringValue": "3"},
    }
    sqs.send_message(QueueUrl=url, MessageBody="x", MessageAttributes=attributes)
    [message] = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["app.*"])["Messages"]
    shown = {k: v for k, v in attributes.items() if k.startswith("app.")}
    assert message["MessageAttributes"] == shown
    assert message["MD5OfMessageAttributes"] == attributes_md5(shown)
    assert "Attributes" not in message


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"MessageBody": ""}, "InvalidParameterValue"),
        ({"MessageBody": "bad \x00 char"}, "InvalidMessageContents"),
        ({"MessageBody": "x", "DelaySeconds": 901}, "InvalidParameterValue"),
        (
            {
                "MessageBody": "x",
                "MessageAttributes": {"n": {"DataType": "Number", "StringValue": "x1"}},
            },
            "InvalidParameterValue",
        ),
        (
            {
                "MessageBody": "x",
                "MessageAttributes": {"AWS.x": {"DataType": "String", "StringValue": "1"}},
            },
            "InvalidParameterValue",
        ),
        ({"MessageBody": "x", "MessageDeduplicationId": "d"}, "InvalidParameterValue"),
        ({"MessageBody": "x" * 2049}, "InvalidParameterValue"),
    ],
)
def test_bad_messages_are_refused_and_write_nothing(
    sqs: Any, http: httpx.Client, kwargs: dict[str, Any], code: str
) -> None:
    url = sqs.create_queue(QueueName=new_name(), Attributes={"MaximumMessageSize": "2048"})[
        "QueueUrl"
    ]
    position = head(http)
    assert error_of(sqs.send_message, QueueUrl=url, **kwargs)["Code"] == code
    assert head(http) == position


def test_batches_report_each_entry(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=new_name())["QueueUrl"]
    sent = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "a", "MessageBody": "one"},
            {"Id": "b", "MessageBody": "two", "DelaySeconds": 901},
            {"Id": "c", "MessageBody": "three"},
        ],
    )
    assert [s["Id"] for s in sent["Successful"]] == ["a", "c"]
    assert sent["Successful"][0]["MD5OfMessageBody"] == hashlib.md5(b"one").hexdigest()
    [failed] = sent["Failed"]
    assert failed["Id"] == "b" and failed["Code"] == "InvalidParameterValue"
    assert failed["SenderFault"] is True

    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in got) == ["one", "three"]
    deleted = sqs.delete_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "x", "ReceiptHandle": got[0]["ReceiptHandle"]},
            {"Id": "y", "ReceiptHandle": "not-a-handle"},
            {"Id": "z", "ReceiptHandle": got[1]["ReceiptHandle"]},
        ],
    )
    assert [s["Id"] for s in deleted["Successful"]] == ["x", "z"]
    assert [(f["Id"], f["Code"]) for f in deleted["Failed"]] == [("y", "ReceiptHandleIsInvalid")]


def test_an_entry_the_queue_refuses_fails_alone(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=new_name(), Attributes={"MaximumMessageSize": "1024"})[
        "QueueUrl"
    ]
    sent = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "small", "MessageBody": "a"},
            {"Id": "big", "MessageBody": "x" * 2000},
            {"Id": "also-small", "MessageBody": "b"},
        ],
    )
    assert [s["Id"] for s in sent["Successful"]] == ["small", "also-small"]
    assert [(f["Id"], f["Code"]) for f in sent["Failed"]] == [("big", "InvalidParameterValue")]
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in got) == ["a", "b"]


@pytest.mark.parametrize(
    ("entries", "code"),
    [
        ([], "AWS.SimpleQueueService.EmptyBatchRequest"),
        (
            [{"Id": str(i), "MessageBody": "x"} for i in range(11)],
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        ),
        ([{"Id": "a", "MessageBody": "x"}] * 2, "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"),
        ([{"Id": "a b", "MessageBody": "x"}], "AWS.SimpleQueueService.InvalidBatchEntryId"),
    ],
)
def test_bad_batches_are_refused_whole(sqs: Any, entries: list[dict[str, str]], code: str) -> None:
    url = sqs.create_queue(QueueName=new_name())["QueueUrl"]
    assert error_of(sqs.send_message_batch, QueueUrl=url, Entries=entries)["Code"] == code
    assert "Messages" not in sqs.receive_message(QueueUrl=url)


def test_change_visibility(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=new_name())["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="x")
    [first] = sqs.receive_message(QueueUrl=url)["Messages"]
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0
    )
    [again] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)["Messages"]
    assert again["MessageId"] == first["MessageId"]
    error = error_of(
        sqs.change_message_visibility,
        QueueUrl=url,
        ReceiptHandle=first["ReceiptHandle"],
        VisibilityTimeout=10,
    )
    # SQS's answer to a receipt of a message received again since.
    assert error["Code"] == "InvalidParameterValue"
    assert error["Message"] == (
        f"Value {first['ReceiptHandle']} for parameter ReceiptHandle is invalid. Reason: Message"
        " does not exist or is not available for visibility timeout change."
    )
    batch = sqs.change_message_visibility_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "ok", "ReceiptHandle": again["ReceiptHandle"], "VisibilityTimeout": 100},
            {"Id": "old", "ReceiptHandle": first["ReceiptHandle"], "VisibilityTimeout": 100},
        ],
    )
    assert [s["Id"] for s in batch["Successful"]] == ["ok"]
    assert [f["Id"] for f in batch["Failed"]] == ["old"]


def test_an_older_receipt_deletes_nothing_and_the_lease_stays_with_its_holder(
    sqs: Any, http: httpx.Client
) -> None:
    name = new_name("superseded")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="x")
    [first] = sqs.receive_message(QueueUrl=url)["Messages"]
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0
    )
    [again] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)["Messages"]
    # SQS: the request succeeds, and the message is not deleted.
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])
    batch = sqs.delete_message_batch(
        QueueUrl=url, Entries=[{"Id": "old", "ReceiptHandle": first["ReceiptHandle"]}]
    )
    assert [s["Id"] for s in batch["Successful"]] == ["old"] and not batch.get("Failed")
    assert "message.acked" not in [e["type"] for e in events(http, name)]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=again["ReceiptHandle"])
    assert [e["type"] for e in events(http, name)].count("message.acked") == 1


def test_a_receipt_whose_lease_ended_is_not_in_flight(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=new_name())["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="x")
    [got] = sqs.receive_message(QueueUrl=url)["Messages"]
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=got["ReceiptHandle"], VisibilityTimeout=0
    )
    error = error_of(
        sqs.change_message_visibility,
        QueueUrl=url,
        ReceiptHandle=got["ReceiptHandle"],
        VisibilityTimeout=5,
    )
    assert error["Code"] == "AWS.SimpleQueueService.MessageNotInflight"
    unknown = error_of(sqs.delete_message, QueueUrl=url, ReceiptHandle="not-a-handle")
    assert (unknown["Code"], unknown["Message"]) == (
        "ReceiptHandleIsInvalid",
        "The input receipt handle is invalid.",
    )


def test_long_polling_wakes_on_a_send(sqs: Any, server: Server) -> None:
    url = sqs.create_queue(QueueName=new_name())["QueueUrl"]
    other = client(server.url)
    sent_at: list[float] = []

    def send_later() -> None:
        time.sleep(0.5)  # the receive must already be waiting when the send arrives
        sent_at.append(time.monotonic())
        other.send_message(QueueUrl=url, MessageBody="late")

    sender = threading.Thread(target=send_later)
    sender.start()
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10)
    received_at = time.monotonic()
    sender.join()
    assert [m["Body"] for m in got["Messages"]] == ["late"]
    assert received_at - sent_at[0] < 1.0


def test_a_dead_letter_queue_through_redrive_policy(sqs: Any) -> None:
    dlq = sqs.create_queue(QueueName=new_name("dlq"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName=new_name(),
        Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "1"})
        },
    )["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    [got] = sqs.receive_message(QueueUrl=url)["Messages"]
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=got["ReceiptHandle"], VisibilityTimeout=0
    )
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
    [dead] = sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=2)["Messages"]
    assert dead["Body"] == "poison"


# -- FIFO -----------------------------------------------------------------------------------------


def test_fifo_rules_as_sqs_has_them(sqs: Any, http: httpx.Client) -> None:
    name = f"{new_name('rules')}.fifo"
    url = sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"})["QueueUrl"]
    # DelaySeconds=0 is no per-message delay: SQS takes it on a FIFO queue, and no other.
    sent = sqs.send_message(
        QueueUrl=url,
        MessageBody="a",
        MessageGroupId="g",
        MessageDeduplicationId="d",
        DelaySeconds=0,
    )
    batch = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {
                "Id": "zero",
                "MessageBody": "b",
                "MessageGroupId": "g",
                "MessageDeduplicationId": "e",
                "DelaySeconds": 0,
            },
            {
                "Id": "five",
                "MessageBody": "c",
                "MessageGroupId": "g",
                "MessageDeduplicationId": "f",
                "DelaySeconds": 5,
            },
        ],
    )
    assert [s["Id"] for s in batch["Successful"]] == ["zero"]
    assert [(f["Id"], f["Code"]) for f in batch["Failed"]] == [("five", "InvalidParameterValue")]
    # A dedup id is one whichever door used it first.
    native = http.post(
        f"/v1/queues/{name}/messages", json={"body": "n", "group_id": "g", "dedup_id": "native"}
    ).json()
    through_sqs = sqs.send_message(
        QueueUrl=url, MessageBody="s", MessageGroupId="g", MessageDeduplicationId="native"
    )
    assert through_sqs["MessageId"] == native["id"] != sent["MessageId"]
    # A standard queue takes no dedup id, per entry in a batch.
    plain = sqs.create_queue(QueueName=new_name())["QueueUrl"]
    batch = sqs.send_message_batch(
        QueueUrl=plain,
        Entries=[
            {"Id": "ok", "MessageBody": "x"},
            {"Id": "dedup", "MessageBody": "y", "MessageDeduplicationId": "d"},
        ],
    )
    assert [f["Id"] for f in batch["Failed"]] == ["dedup"]


def test_a_fifo_queue_takes_no_standard_dead_letter_queue(sqs: Any) -> None:
    standard = sqs.create_queue(QueueName=new_name("dlq"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=standard, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 2})
    error = error_of(
        sqs.create_queue,
        QueueName=f"{new_name()}.fifo",
        Attributes={"FifoQueue": "true", "RedrivePolicy": policy},
    )
    assert error["Code"] == "InvalidParameterValue"
    assert error["Message"].startswith("Value for parameter RedrivePolicy is invalid. Reason:")


def test_trace_headers_and_attribute_name_patterns_round_trip(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=new_name("trace"))["QueueUrl"]
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    sent = sqs.send_message(
        QueueUrl=url,
        MessageBody="traced",
        MessageAttributes={
            "app.colour": {"DataType": "String", "StringValue": "blue"},
            "app.size": {"DataType": "Number", "StringValue": "3"},
            "other": {"DataType": "String", "StringValue": "x"},
        },
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String", "StringValue": header}},
    )
    assert sent["MD5OfMessageSystemAttributes"] == attributes_md5(
        {"AWSTraceHeader": {"DataType": "String", "StringValue": header}}
    )
    [got] = sqs.receive_message(
        QueueUrl=url,
        MessageAttributeNames=["app.*"],
        AttributeNames=["AWSTraceHeader"],  # what the query SDKs call MessageSystemAttributeNames
    )["Messages"]
    assert got["Attributes"] == {"AWSTraceHeader": header}
    assert set(got["MessageAttributes"]) == {"app.colour", "app.size"}
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=got["ReceiptHandle"], VisibilityTimeout=0
    )
    [every] = sqs.receive_message(
        QueueUrl=url, MessageAttributeNames=[".*"], AttributeNames=[".*"], WaitTimeSeconds=2
    )["Messages"]
    assert set(every["MessageAttributes"]) == {"app.colour", "app.size", "other"}
    assert every["Attributes"]["AWSTraceHeader"] == header


def test_empty_tags_and_tag_keys_are_refused(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=new_name())["QueueUrl"]
    assert error_of(sqs.tag_queue, QueueUrl=url, Tags={})["Code"] == "MissingParameter"
    assert error_of(sqs.untag_queue, QueueUrl=url, TagKeys=[])["Code"] == "MissingParameter"


def test_fifo_queues_keep_group_order_and_deduplicate(sqs: Any) -> None:
    name = new_name() + ".fifo"
    url = sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"})["QueueUrl"]
    numbers: list[int] = []
    for i, group in enumerate(["a", "a", "b", "a"]):
        sent = sqs.send_message(
            QueueUrl=url,
            MessageBody=f"{group}{i}",
            MessageGroupId=group,
            MessageDeduplicationId=f"d{i}",
        )
        numbers.append(int(sent["SequenceNumber"]))
    assert numbers == sorted(numbers) and len(set(numbers)) == 4
    again = sqs.send_message(
        QueueUrl=url, MessageBody="a0", MessageGroupId="a", MessageDeduplicationId="d0"
    )
    assert "SequenceNumber" in again

    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])[
        "Messages"
    ]
    # Group a from its head, in order, and b: every message once (the duplicate was dropped).
    assert [m["Body"] for m in got if m["Attributes"]["MessageGroupId"] == "a"] == [
        "a0",
        "a1",
        "a3",
    ]
    assert [m["Body"] for m in got if m["Attributes"]["MessageGroupId"] == "b"] == ["b2"]
    assert got[0]["Attributes"]["MessageDeduplicationId"] == "d0"
    assert "Messages" not in sqs.receive_message(QueueUrl=url)  # all in flight

    error = error_of(sqs.send_message, QueueUrl=url, MessageBody="x", MessageDeduplicationId="z")
    assert error["Code"] == "MissingParameter"
    error = error_of(sqs.send_message, QueueUrl=url, MessageBody="x", MessageGroupId="g")
    assert error["Code"] == "InvalidParameterValue"  # no dedup id, no content-based dedup


def test_content_based_deduplication(sqs: Any) -> None:
    url = sqs.create_queue(
        QueueName=new_name() + ".fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    first = sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
    second = sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
    assert first["MessageId"] == second["MessageId"]
    sqs.send_message(QueueUrl=url, MessageBody="other", MessageGroupId="g")
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in got] == ["same", "other"]


def test_a_fifo_name_needs_the_fifo_attribute_and_back(sqs: Any) -> None:
    assert error_of(sqs.create_queue, QueueName=new_name() + ".fifo")["Code"] == (
        "InvalidParameterValue"
    )
    error = error_of(sqs.create_queue, QueueName=new_name(), Attributes={"FifoQueue": "true"})
    assert error["Code"] == "InvalidParameterValue"


# -- one broker, two doors ------------------------------------------------------------------------


def test_messages_cross_doors_and_share_one_history(sqs: Any, http: httpx.Client) -> None:
    name = new_name()
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    sent = sqs.send_message(
        QueueUrl=url,
        MessageBody="from sqs",
        MessageAttributes={
            "k": {"DataType": "Number", "StringValue": "7"},
            "origin": {"DataType": "String", "StringValue": "sqs"},
        },
    )
    native = http.post(f"/v1/queues/{name}/receive", json={"wait_s": 2}).json()["messages"]
    assert [(m["id"], m["body"]) for m in native] == [(sent["MessageId"], "from sqs")]
    typed = {"k": {"data_type": "Number", "string_value": "7"}}
    assert native[0]["typed_attributes"] == typed
    assert native[0]["attributes"] == {"origin": "sqs"}  # a plain String one is a native one
    resource = http.get(
        f"/v1/queues/{name}/messages/{sent['MessageId']}", params={"min_position": head(http)}
    ).json()
    assert resource["typed_attributes"] == typed and resource["body"] == "from sqs"
    acked = http.post(
        f"/v1/queues/{name}/messages/{native[0]['id']}/ack", json={"receipt": native[0]["receipt"]}
    )
    assert acked.status_code == 204

    published = http.post(
        f"/v1/queues/{name}/messages",
        json={"body": {"order": 42}, "attributes": {"source": "web"}},
    ).json()
    [message] = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"], WaitTimeSeconds=2)[
        "Messages"
    ]
    assert message["MessageId"] == published["id"]
    assert json.loads(message["Body"]) == {"order": 42}
    assert message["MessageAttributes"] == {"source": {"DataType": "String", "StringValue": "web"}}
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    history = http.get(
        f"/v1/queues/{name}/messages/{published['id']}", params={"min_position": head(http)}
    ).json()
    assert [h["type"] for h in history["history"]] == [
        "message.published",
        "message.leased",
        "message.acked",
    ]
    types = [e["type"] for e in events(http, name)]
    assert types.count("message.acked") == 2


def test_an_unknown_action_and_the_raw_error_shape(server: Server) -> None:
    response = httpx.post(
        server.url,
        headers={
            "X-Amz-Target": "AmazonSQS.Frobnicate",
            "Content-Type": "application/x-amz-json-1.0",
        },
        content=b"{}",
    )
    assert response.status_code == 400
    assert (
        response.headers["x-amzn-query-error"]
        == "AWS.SimpleQueueService.UnsupportedOperation;Sender"
    )
    assert response.json()["__type"] == "com.amazonaws.sqs#UnsupportedOperation"
    response = httpx.post(
        server.url,
        headers={
            "X-Amz-Target": "AmazonSQS.GetQueueUrl",
            "Content-Type": "application/x-amz-json-1.0",
        },
        content=b"{not json",
    )
    assert response.status_code == 400
    assert response.json()["__type"] == "com.amazonaws.sqs#SerializationException"


def test_an_encoded_body_is_refused_by_both_protocols(server: Server) -> None:
    """API.md v1.2: a request with a Content-Encoding is a 415, whatever the door; nothing
    reads the body as if it were plain."""
    name = new_name("encoded")
    json_protocol = httpx.post(
        server.url,
        headers={
            "X-Amz-Target": "AmazonSQS.CreateQueue",
            "Content-Type": "application/x-amz-json-1.0",
            "Content-Encoding": "gzip",
        },
        content=json.dumps({"QueueName": name}).encode(),
    )
    assert json_protocol.status_code == 415
    assert json_protocol.json()["__type"] == "com.amazonaws.sqs#UnsupportedMediaType"
    query_protocol = httpx.post(
        server.url,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Content-Encoding": "gzip",
        },
        content=f"Action=CreateQueue&QueueName={name}&Version=2012-11-05".encode(),
    )
    assert query_protocol.status_code == 415
    assert "<Code>UnsupportedMediaType</Code>" in query_protocol.text
    assert httpx.get(f"{server.url}/v1/queues/{name}").status_code == 404  # nothing made


def test_the_aws_cli(server: Server, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }

    def aws(*args: str) -> dict[str, Any]:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "awscli",
                "sqs",
                *args,
                "--endpoint-url",
                server.url,
                "--output",
                "json",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout) if result.stdout.strip() else {}

    name = new_name("cli")
    url = aws("create-queue", "--queue-name", name)["QueueUrl"]
    aws("send-message", "--queue-url", url, "--message-body", "via the cli")
    got = aws("receive-message", "--queue-url", url, "--wait-time-seconds", "2")
    assert [m["Body"] for m in got["Messages"]] == ["via the cli"]


# -- auth -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("sqs-auth")
    keys = directory / "keys.json"
    keys.write_text(
        json.dumps(
            {
                "AKIAADMIN": {"secret": "admin-secret", "sub": "ops", "scope": "admin"},
                "AKIAPRODUCER": {
                    "secret": "producer-secret",
                    "sub": "shop",
                    "scope": "publish:orders-*",
                },
            }
        )
    )
    running = make_server(directory, "--jwt-secret", SECRET, "--sqs-credentials", str(keys)).start()
    yield running
    running.stop()


def test_signed_requests_with_auth_on(secure: Server) -> None:
    admin = client(secure.url, "AKIAADMIN", "admin-secret")
    url = admin.create_queue(QueueName="orders-1")["QueueUrl"]
    producer = client(secure.url, "AKIAPRODUCER", "producer-secret")
    producer.send_message(QueueUrl=url, MessageBody="signed")
    assert error_of(producer.receive_message, QueueUrl=url)["Code"] == "AccessDenied"
    assert error_of(producer.purge_queue, QueueUrl=url)["Code"] == "AccessDenied"
    [got] = admin.receive_message(QueueUrl=url)["Messages"]
    assert got["Body"] == "signed"

    wrong = client(secure.url, "AKIAPRODUCER", "not-the-secret")
    assert error_of(wrong.send_message, QueueUrl=url, MessageBody="x")["Code"] == (
        "SignatureDoesNotMatch"
    )
    unknown = client(secure.url, "AKIANOBODY", "whatever")
    assert error_of(unknown.list_queues)["Code"] == "InvalidClientTokenId"
    unsigned = httpx.post(
        secure.url,
        headers={
            "X-Amz-Target": "AmazonSQS.ListQueues",
            "Content-Type": "application/x-amz-json-1.0",
        },
        content=b"{}",
    )
    assert unsigned.status_code == 403
    assert unsigned.headers["x-amzn-query-error"] == "InvalidClientTokenId;Sender"
    # The native API still takes tokens, and sees what came through the door.
    token = jwt.encode({"sub": "t", "scope": "admin", "exp": time.time() + 60}, SECRET)
    native = httpx.get(
        f"{secure.url}/v1/queues/orders-1", headers={"Authorization": f"Bearer {token}"}
    )
    assert native.json()["stats"]["published_total"] == 1


# -- move tasks -----------------------------------------------------------------------------------


def dead_lettered(sqs: Any, n: int) -> tuple[str, str, str]:
    """A source queue and its dead-letter queue holding ``n`` messages; their URLs and the
    dead-letter queue's ARN."""
    dlq = sqs.create_queue(QueueName=new_name("dlq"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 1})
    url = sqs.create_queue(QueueName=new_name(), Attributes={"RedrivePolicy": policy})["QueueUrl"]
    for start in range(0, n, 10):
        entries = [{"Id": str(i), "MessageBody": f"m{i}"} for i in range(start, min(n, start + 10))]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            break
        sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(got)
            ],
        )
    return url, dlq, arn


def wait_for_task(sqs: Any, arn: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        [task] = sqs.list_message_move_tasks(SourceArn=arn)["Results"]
        if task["Status"] == status:
            return dict(task)
        time.sleep(0.1)  # polling the task's status, as SQS clients do, with a deadline
    raise AssertionError(f"the task did not reach {status}: {task}")


def test_a_move_task_moves_the_dead_letters_back(sqs: Any, http: httpx.Client) -> None:
    url, dlq, arn = dead_lettered(sqs, 30)
    assert (
        sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"
        ]["ApproximateNumberOfMessages"]
        == "30"
    )
    handle = sqs.start_message_move_task(SourceArn=arn)["TaskHandle"]
    task = wait_for_task(sqs, arn, "COMPLETED")
    assert task["ApproximateNumberOfMessagesMoved"] == 30
    assert task["ApproximateNumberOfMessagesToMove"] == 30 and "TaskHandle" not in task
    bodies = []
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        bodies += [m["Body"] for m in got]
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
            ],
        )
    assert sorted(bodies) == sorted(f"m{i}" for i in range(30))
    name = arn.rsplit(":", 1)[1]
    types = [e["type"] for e in events(http, name)]
    assert types.count("queue.move_task_started") == 1 and types.count("message.redriven") == 30
    error = error_of(sqs.cancel_message_move_task, TaskHandle=handle)
    assert error["Code"] == "ResourceNotFoundException"


def test_a_slow_move_task_can_be_cancelled(sqs: Any) -> None:
    _url, _dlq, arn = dead_lettered(sqs, 20)
    other = sqs.create_queue(QueueName=new_name("to"))["QueueUrl"]
    other_arn = sqs.get_queue_attributes(QueueUrl=other, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    handle = sqs.start_message_move_task(
        SourceArn=arn, DestinationArn=other_arn, MaxNumberOfMessagesPerSecond=2
    )["TaskHandle"]
    running = wait_for_task(sqs, arn, "RUNNING")
    assert running["TaskHandle"] == handle and running["DestinationArn"] == other_arn
    assert running["MaxNumberOfMessagesPerSecond"] == 2
    assert error_of(sqs.start_message_move_task, SourceArn=arn)["Code"] == "InvalidParameterValue"
    moved = sqs.cancel_message_move_task(TaskHandle=handle)["ApproximateNumberOfMessagesMoved"]
    assert moved < 20
    task = wait_for_task(sqs, arn, "CANCELLED")
    assert task["ApproximateNumberOfMessagesMoved"] == moved
    in_other = sqs.get_queue_attributes(QueueUrl=other, AttributeNames=["All"])["Attributes"]
    assert int(in_other["ApproximateNumberOfMessages"]) == moved


def test_a_move_task_needs_a_dead_letter_queue(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=new_name())["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    assert error_of(sqs.start_message_move_task, SourceArn=arn)["Code"] == "InvalidParameterValue"
    missing = arn.rsplit(":", 1)[0] + ":nope-" + uuid.uuid4().hex[:6]
    error = error_of(sqs.start_message_move_task, SourceArn=missing)
    assert error["Code"] == "ResourceNotFoundException"


def test_the_rate_limit_applies_to_the_door(tmp_path: Path) -> None:
    server = make_server(tmp_path, "--rate-limit", "3/minute").start()
    try:
        answers = [
            httpx.post(
                server.url,
                headers={
                    "X-Amz-Target": "AmazonSQS.ListQueues",
                    "Content-Type": "application/x-amz-json-1.0",
                },
                content=b"{}",
            )
            for _ in range(5)
        ]
    finally:
        server.stop()
    assert [a.status_code for a in answers] == [200, 200, 200, 400, 400]
    assert answers[-1].headers["x-amzn-query-error"] == "RequestThrottled;Sender"
    assert answers[-1].json()["__type"] == "com.amazonaws.sqs#RequestThrottled"
