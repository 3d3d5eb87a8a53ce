"""Bad input gets a precise 4xx problem and writes nothing; nothing served is invalid JSON."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import httpx
import pytest

from tests.api.conftest import Server, problem

JSON = {"content-type": "application/json"}
INT64_MAX = 2**63 - 1


def head(http: httpx.Client) -> int:
    position: int = http.get("/v1/projections").json()["head"]
    return position


@pytest.mark.parametrize(
    "raw",
    [
        b'{"body": "caf\xe9"}',  # Latin-1, not UTF-8
        b'{"body": {"k": "\xff\xfe"}}',
        b'{"body": "ok", "attributes": {"a": "\xc3"}}',  # a truncated sequence
        b'{"body": "\xed\xa0\x80"}',  # a UTF-8-encoded surrogate
    ],
)
def test_a_body_that_is_not_utf8_is_a_400_that_writes_nothing(
    http: httpx.Client, queue: str, raw: bytes
) -> None:
    before = head(http)
    body = problem(http.post(f"/v1/queues/{queue}/messages", content=raw, headers=JSON), 400)
    assert "UTF-8" in body["detail"]
    batch = b'{"messages": [{"body": 1}, ' + raw + b"]}"
    body = problem(
        http.post(f"/v1/queues/{queue}/messages/batch", content=batch, headers=JSON), 400
    )
    assert "UTF-8" in body["detail"]
    assert head(http) == before
    assert http.post(f"/v1/queues/{queue}/receive").json() == {"messages": []}


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\ud83d\\u0041", "x\\ud83d"])
def test_a_lone_surrogate_escape_is_named_as_such(
    http: httpx.Client, queue: str, escape: str
) -> None:
    raw = b'{"body": "' + escape.encode() + b'"}'
    body = problem(http.post(f"/v1/queues/{queue}/messages", content=raw, headers=JSON), 400)
    assert "surrogate" in body["detail"] and "truncated" not in body["detail"]


def test_a_surrogate_pair_and_an_escaped_backslash_are_fine(http: httpx.Client, queue: str) -> None:
    raw = b'{"body": ["\\ud83d\\ude00", "\\\\ud800"]}'
    published = http.post(f"/v1/queues/{queue}/messages", content=raw, headers=JSON)
    assert published.status_code == 201, published.text
    [got] = http.post(f"/v1/queues/{queue}/receive").json()["messages"]
    assert got["body"] == ["\U0001f600", "\\ud800"]


@pytest.mark.parametrize(
    "url", ["/v1/queues/{queue}/messages?after=caf%E9", "/v1/queues/caf%FF", "/v1/queues?x=%C3"]
)
def test_a_url_that_is_not_utf8_is_a_400(http: httpx.Client, queue: str, url: str) -> None:
    body = problem(http.get(url.format(queue=queue)), 400)
    assert "URL" in body["detail"] and "UTF-8" in body["detail"]
    assert http.get(f"/v1/queues/{queue}/messages?after=caf%C3%A9").status_code == 404


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/events?after={n}", "query.after"),
        ("/v1/events?limit={n}", "query.limit"),
        ("/v1/events?min_position={n}", "query.min_position"),
        ("/v1/queues?min_position={n}", "query.min_position"),
        ("/v1/queues/{queue}/messages?limit={n}", "query.limit"),
        ("/v1/events/stream?after={n}", "query.after"),
        ("/v1/events/stream?last_event_id={n}", "query.last_event_id"),
    ],
)
def test_integers_beyond_64_bits_are_a_422_naming_the_parameter(
    server: Server, queue: str, path: str, field: str
) -> None:
    # One kept-alive connection: after the 422 it must still serve the next request.
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for n in (INT64_MAX + 1, 10**30, -(2**63) - 1):
            with client.stream("GET", path.format(n=n, queue=queue)) as answer:
                if answer.status_code != 200:  # a feed that opened would never end
                    answer.read()
                body = problem(answer, 422)
            assert [e["field"] for e in body["errors"]] == [field]
        assert client.get("/v1/queues").status_code == 200


def test_a_last_event_id_beyond_64_bits_is_a_422(http: httpx.Client) -> None:
    headers = {"Last-Event-ID": str(INT64_MAX + 1)}
    with http.stream("GET", "/v1/events/stream", headers=headers) as answer:
        if answer.status_code != 200:  # a feed that opened would never end
            answer.read()
        body = problem(answer, 422)
    assert body["errors"][0]["field"] == "header.Last-Event-ID"


@pytest.mark.parametrize("name", [".", ".."])
def test_queue_names_that_urls_cannot_address_are_refused(http: httpx.Client, name: str) -> None:
    body = problem(http.post("/v1/queues", json={"name": name}), 422)
    assert body["errors"][0]["field"] == "body.name"
    assert http.post("/v1/queues", json={"name": "..."}).status_code in (201, 409)


def _raw(server: Server, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes no HTTP client library would send; read the whole answer."""
    url = urlsplit(server.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, body


def _problem_of(status: int, headers: dict[str, str], body: bytes, expected: int) -> str:
    assert status == expected, body
    assert headers["content-type"] == "application/problem+json"
    document = json.loads(body)
    assert document["status"] == expected
    detail: str = document["detail"]
    return detail


@pytest.mark.parametrize("method", [b"FOO", b"PROPFIND", b"BREW"])
def test_an_unknown_method_is_a_501_problem(server: Server, method: bytes) -> None:
    answer = _raw(server, method + b" /v1/queues HTTP/1.1\r\nHost: x\r\n\r\n")
    assert "not implemented" in _problem_of(*answer, 501)


def test_request_headers_past_16_kib_are_a_431_problem(server: Server) -> None:
    big = b"X-Big: " + b"a" * (17 * 1024) + b"\r\n"
    answer = _raw(server, b"GET /v1/queues HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
    assert "16384" in _problem_of(*answer, 431)
    many = b"".join(b"X-%d: %s\r\n" % (i, b"b" * 100) for i in range(200))
    answer = _raw(server, b"GET /v1/queues HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    _problem_of(*answer, 431)
    fine = b"X-Fine: " + b"c" * (12 * 1024) + b"\r\nConnection: close\r\n"
    status, _, _ = _raw(server, b"GET /v1/queues HTTP/1.1\r\nHost: x\r\n" + fine + b"\r\n")
    assert status == 200


def test_a_request_that_is_not_http_is_a_400_problem(server: Server) -> None:
    answer = _raw(server, b"GET /v1/queues HTTP/1.1\r\nHost x\r\n\r\n")
    _problem_of(*answer, 400)


def test_projections_say_the_position_they_reflect(http: httpx.Client, queue: str) -> None:
    response = http.get("/v1/projections")
    listed = response.json()["projections"]
    assert int(response.headers["x-cairn-position"]) == min(p["position"] for p in listed)
