"""The SQS door's query protocol (API.md v1.2, "SQS-compatible endpoint: the rest of SQS"),
driven by a real SDK that speaks it: boto3/botocore 1.34.89 (the last whose SQS model says
``protocol: query``), in a venv of its own (``.venv-sqs-query``, made by scripts/test), against a
real ``cairn serve`` on both stores.

The JSON protocol's tests (tests/api/test_sqs.py) that cover every action boto3 uses run here
again through the query protocol: the ``sqs`` fixture of this module is a query client, and the
tests are imported below so that pytest collects them with it. What is the query protocol's own
(its XML, its errors, the queue URL as the request path, GET) is tested after them.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.api.conftest import Server, make_server

# Every action boto3 uses, through the query protocol (collected here with this module's sqs).
from tests.api.test_sqs import (  # noqa: F401
    SECRET,
    error_of,
    new_name,
    test_a_dead_letter_queue_through_redrive_policy,
    test_a_fifo_queue_takes_no_standard_dead_letter_queue,
    test_a_move_task_moves_the_dead_letters_back,
    test_a_receipt_whose_lease_ended_is_not_in_flight,
    test_a_redrive_policy_is_echoed_as_sent_while_it_holds,
    test_a_slow_move_task_can_be_cancelled,
    test_an_entry_the_queue_refuses_fails_alone,
    test_an_older_receipt_deletes_nothing_and_the_lease_stays_with_its_holder,
    test_approximate_counts_follow_the_clock,
    test_attributes_sqs_refuses_are_refused,
    test_bad_batches_are_refused_whole,
    test_bad_messages_are_refused_and_write_nothing,
    test_bad_queue_attributes_are_refused_and_create_nothing,
    test_batches_report_each_entry,
    test_change_visibility,
    test_content_based_deduplication,
    test_create_get_list_and_delete_queues,
    test_creating_an_existing_queue_answers_its_url_unless_attributes_differ,
    test_empty_tags_and_tag_keys_are_refused,
    test_every_attribute_sqs_accepts_is_kept_and_shown_natively,
    test_fifo_queues_keep_group_order_and_deduplicate,
    test_fifo_rules_as_sqs_has_them,
    test_message_group_deduplication_scope_deduplicates_per_group,
    test_only_the_attributes_asked_for_are_returned,
    test_permissions_edit_the_stored_policy,
    test_queue_attributes_round_trip_and_show_in_the_native_resource,
    test_send_receive_delete_with_md5s_and_every_attribute_type,
    test_tags,
    test_trace_headers_and_attribute_name_patterns_round_trip,
)
from tests.api.test_sqs import client as json_client

ROOT = Path(__file__).resolve().parents[2]
QUERY_PYTHON = ROOT / ".venv-sqs-query" / "bin" / "python"
WORKER = Path(__file__).with_name("sqs_query_worker.py")
NAMESPACE = "{http://queue.amazonaws.com/doc/2012-11-05/}"


def _bytes_hook(value: dict[str, Any]) -> Any:
    if set(value) == {"__bytes__"}:
        return base64.b64decode(value["__bytes__"])
    return value


def _bytes_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    raise TypeError(type(value))


class QueryClient:
    """boto3's SQS client as the query-protocol SDK in ``.venv-sqs-query`` runs it: the same
    methods, results and exceptions (``exceptions`` are the JSON client's classes, raised as the
    query SDK raised its own)."""

    def __init__(self, url: str, key: str = "test", secret: str = "test") -> None:
        if not QUERY_PYTHON.exists():
            reason = f"{QUERY_PYTHON} is missing: scripts/test makes it"
            if os.environ.get("CI") == "true":
                pytest.fail(reason)
            pytest.skip(reason)
        self._process = subprocess.Popen(
            [str(QUERY_PYTHON), str(WORKER), url, key, secret],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._json = json_client(url, key, secret)
        self.exceptions = self._json.exceptions
        hello = json.loads(self._line())
        assert hello["protocol"] == "query", hello

    def _line(self) -> str:
        stdout: IO[str] | None = self._process.stdout
        assert stdout is not None
        line = stdout.readline()
        assert line, "the query client exited"
        return line

    def __getattr__(self, operation: str) -> Any:
        if operation.startswith("_"):
            raise AttributeError(operation)

        def call(**params: Any) -> Any:
            stdin = self._process.stdin
            assert stdin is not None
            stdin.write(json.dumps([operation, params], default=_bytes_default) + "\n")
            stdin.flush()
            outcome = json.loads(self._line(), object_hook=_bytes_hook)
            if "failure" in outcome:
                raise AssertionError(f"the query SDK refused the call: {outcome['failure']}")
            if "error" in outcome:
                response = outcome["error"]
                name = self._json.meta.method_to_api_mapping[operation]
                raise getattr(self.exceptions, outcome["shape"])(response, name)
            return outcome["ok"]

        return call

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=10)
        if self._process.stdout is not None:
            self._process.stdout.close()


@pytest.fixture(scope="module")
def query_client(server: Server) -> Iterator[QueryClient]:
    running = QueryClient(server.url)
    yield running
    running.close()


@pytest.fixture
def sqs(query_client: QueryClient) -> QueryClient:
    return query_client


# -- the query protocol's own -----------------------------------------------------------------


def test_purge_and_dead_letter_sources_through_the_query_protocol(sqs: QueryClient) -> None:
    dlq = sqs.create_queue(QueueName=new_name("dlq"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]
    policy = json.dumps({"deadLetterTargetArn": arn["QueueArn"], "maxReceiveCount": 2})
    source = sqs.create_queue(QueueName=new_name(), Attributes={"RedrivePolicy": policy})
    assert sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"] == [source["QueueUrl"]]
    for i in range(3):
        sqs.send_message(QueueUrl=source["QueueUrl"], MessageBody=f"m{i}")
    sqs.purge_queue(QueueUrl=source["QueueUrl"])
    assert "Messages" not in sqs.receive_message(QueueUrl=source["QueueUrl"], WaitTimeSeconds=0)


def _xml(response: httpx.Response) -> ET.Element:
    assert response.headers["content-type"].startswith("text/xml")
    return ET.fromstring(response.content)


def _error_code(response: httpx.Response) -> tuple[str, str]:
    error = _xml(response).find(f"{NAMESPACE}Error")
    assert error is not None
    return (error.findtext(f"{NAMESPACE}Type") or "", error.findtext(f"{NAMESPACE}Code") or "")


def test_sqs_xml_and_its_errors(http: httpx.Client) -> None:
    name = f"raw-{uuid.uuid4().hex[:10]}"
    created = http.post(
        "/", data={"Action": "CreateQueue", "Version": "2012-11-05", "QueueName": name}
    )
    assert created.status_code == 200
    root = _xml(created)
    assert root.tag == f"{NAMESPACE}CreateQueueResponse"
    url = root.findtext(f"{NAMESPACE}CreateQueueResult/{NAMESPACE}QueueUrl")
    assert url is not None and url.endswith(f"/000000000000/{name}")
    assert root.findtext(f"{NAMESPACE}ResponseMetadata/{NAMESPACE}RequestId")

    # GET with the query string, and the queue named by the request's path alone.
    sent = http.post(
        f"/000000000000/{name}",
        data={"Action": "SendMessage", "MessageBody": "a <b> & \r\n"},
    )
    assert sent.status_code == 200, sent.text
    got = http.get(
        f"/000000000000/{name}", params={"Action": "ReceiveMessage", "AttributeName.1": "All"}
    )
    message = _xml(got).find(f"{NAMESPACE}ReceiveMessageResult/{NAMESPACE}Message")
    assert message is not None
    assert message.findtext(f"{NAMESPACE}Body") == "a <b> & \r\n"
    names = [a.findtext(f"{NAMESPACE}Name") for a in message.iter(f"{NAMESPACE}Attribute")]
    assert "ApproximateReceiveCount" in names

    missing_queue = http.get("/", params={"Action": "GetQueueUrl", "QueueName": f"{name}-no"})
    assert missing_queue.status_code == 400
    assert _error_code(missing_queue) == ("Sender", "AWS.SimpleQueueService.NonExistentQueue")
    assert _error_code(http.post("/", data={"Version": "2012-11-05"})) == (
        "Sender",
        "MissingAction",
    )
    unknown = http.post("/", data={"Action": "Frobnicate"})
    assert (unknown.status_code, _error_code(unknown)) == (400, ("Sender", "InvalidAction"))
    malformed = http.post(
        "/",
        data={
            "Action": "SendMessage",
            "QueueUrl": name,
            "MessageBody": "x",
            "MessageAttribute.x.Name": "a",
        },
    )
    assert _error_code(malformed) == ("Sender", "MalformedQueryString")
    # A native path is never taken for a queue URL.
    assert (
        http.get("/v1/queues", params={"Action": "ListQueues"})
        .headers["content-type"]
        .startswith("application/json")
    )


def test_a_signed_query_request_with_auth_on(tmp_path: Path) -> None:
    credentials = tmp_path / "keys.json"
    credentials.write_text(
        json.dumps(
            {
                "AKQUERY": {"secret": "s3cret", "sub": "svc", "scope": "queues:manage publish:q-*"},
            }
        )
    )
    secure = make_server(
        tmp_path, "--jwt-secret", SECRET, "--sqs-credentials", str(credentials)
    ).start()
    try:
        good = QueryClient(secure.url, "AKQUERY", "s3cret")
        url = good.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        assert good.send_message(QueueUrl=url, MessageBody="signed")["MessageId"]
        assert error_of(good.send_message, QueueUrl="other", MessageBody="x")["Code"] == (
            "AccessDenied"
        )
        good.close()
        forged = QueryClient(secure.url, "AKQUERY", "wrong")
        assert error_of(forged.list_queues)["Code"] == "SignatureDoesNotMatch"
        forged.close()
    finally:
        secure.stop()
