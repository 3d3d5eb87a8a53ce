"""Requests whose framing is broken, over raw sockets (API.md v1.2, "Clarifications of v1.1"): a
body longer or shorter than its ``Content-Length`` is a ``400`` problem, never a ``501`` or a
hang, and writes nothing; a body with a ``Content-Encoding`` is a ``415``."""

from __future__ import annotations

import gzip
import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.conftest import Server, make_server, problem
from tests.api.v11 import head, new_queue, publish, stats


def exchange(server: Server, data: bytes, *, close_writing: bool = False) -> bytes:
    """Send ``data`` in one write and read the answer until the server closes (at most 15 s)."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(data)
        if close_writing:
            sock.shutdown(socket.SHUT_WR)
        sock.settimeout(15)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def parsed(answer: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


def post(path: str, body: bytes, length: int, *extra: str) -> bytes:
    headers = [
        f"POST {path} HTTP/1.1",
        "Host: cairn",
        "Content-Type: application/json",
        f"Content-Length: {length}",
        *extra,
    ]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def bad_request(answer: bytes, says: str) -> None:
    status, headers, body = parsed(answer)
    assert status == 400, answer
    assert headers["content-type"] == "application/problem+json"
    assert body["status"] == 400 and says in body["detail"], body


def test_a_body_longer_than_its_content_length_is_400_and_writes_nothing(
    server: Server, http: httpx.Client
) -> None:
    name = f"framed-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"name": name}).encode()
    # Content-Length covers a whole, valid request; more bytes follow it.
    answer = exchange(server, post("/v1/queues", body + b'{"more": 1}', len(body)))
    bad_request(answer, "Content-Length")
    problem(http.get(f"/v1/queues/{name}"), 404)


def test_a_complete_command_followed_by_stray_bytes_is_400_and_does_nothing(
    server: Server, http: httpx.Client
) -> None:
    queue = new_queue(http)
    publish(http, queue)
    before = head(http)
    for method, path in (("POST", f"/v1/queues/{queue}/purge"), ("DELETE", f"/v1/queues/{queue}")):
        request = f"{method} {path} HTTP/1.1\r\nHost: cairn\r\nContent-Length: 0\r\n\r\n"
        bad_request(exchange(server, request.encode() + b"zzz"), "Content-Length")
    assert head(http) == before  # neither the purge nor the delete happened
    assert stats(http, queue)["available"] == 1


def test_a_body_shorter_than_its_content_length_then_closed_is_400(
    server: Server, http: httpx.Client
) -> None:
    name = f"framed-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"name": name}).encode()
    answer = exchange(server, post("/v1/queues", body, len(body) + 20), close_writing=True)
    bad_request(answer, "ended before its Content-Length")
    problem(http.get(f"/v1/queues/{name}"), 404)
    assert '"unhandled_error"' not in server.log.read_text()


def test_an_unknown_method_is_still_501_alone_or_pipelined(server: Server) -> None:
    alone = exchange(server, b"FOO / HTTP/1.1\r\nHost: cairn\r\n\r\n")
    assert parsed(alone)[0] == 501
    pipelined = exchange(
        server, b"GET /healthz HTTP/1.1\r\nHost: cairn\r\n\r\nFOO / HTTP/1.1\r\nHost: cairn\r\n\r\n"
    )
    assert b"HTTP/1.1 501 " in pipelined and b"FOO is not implemented" in pipelined


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = make_server(tmp_path_factory.mktemp("impatient"), env={"CAIRN_BODY_IDLE_S": "1"})
    yield server.start()
    server.stop()


def test_a_body_that_stops_arriving_is_400_after_the_idle_time(impatient: Server) -> None:
    body = b'{"name": "never-fini'
    started = time.monotonic()
    answer = exchange(impatient, post("/v1/queues", body, 100))
    waited = time.monotonic() - started
    bad_request(answer, "shorter than its Content-Length")
    assert 0.9 < waited < 5
    with httpx.Client(base_url=impatient.url) as client:
        assert client.get("/v1/queues").json()["queues"] == []


def test_a_slow_body_that_keeps_arriving_is_read(impatient: Server) -> None:
    host, port = impatient.url.removeprefix("http://").split(":")
    body = json.dumps({"name": "slow-but-steady"}).encode()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(post("/v1/queues", b"", len(body)))
        for byte in range(len(body)):  # 1.5 s in all, 0.1 s between bytes: never idle for 1 s
            sock.sendall(body[byte : byte + 1])
            time.sleep(0.1)  # the point of the test: a slow sender
        sock.settimeout(15)
        assert sock.recv(65536).startswith(b"HTTP/1.1 201 ")


@pytest.mark.parametrize("encoding", ["gzip", "identity", "br"])
def test_a_body_with_a_content_encoding_is_415_and_writes_nothing(
    http: httpx.Client, encoding: str
) -> None:
    name = f"encoded-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"name": name}).encode()
    sent = gzip.compress(body) if encoding == "gzip" else body
    answer = http.post(
        "/v1/queues",
        content=sent,
        headers={"content-type": "application/json", "content-encoding": encoding},
    )
    assert encoding in problem(answer, 415)["detail"]
    problem(http.get(f"/v1/queues/{name}"), 404)
