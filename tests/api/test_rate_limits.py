"""Rate limits through real servers: per subject or client address, headers, exemptions, and
one budget shared by every worker through Redis."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.api.conftest import Server, make_server, problem
from tests.api.test_redis import _require
from tests.api.test_security import SECRET, bearer, token


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Server]:
    server = make_server(tmp_path, "--rate-limit", "5/minute").start()
    yield server
    server.stop()


def test_the_sixth_request_in_the_window_is_429_with_headers(limited: Server) -> None:
    with httpx.Client(base_url=limited.url) as client:
        remaining = []
        for _ in range(5):
            response = client.get("/v1/queues")
            assert response.status_code == 200
            assert response.headers["ratelimit-limit"] == "5"
            remaining.append(int(response.headers["ratelimit-remaining"]))
            assert 0 < int(response.headers["ratelimit-reset"]) <= 60
        assert remaining == [4, 3, 2, 1, 0]
        refused = client.get("/v1/queues")
        body = problem(refused, 429)
        assert "5 per 1 minute" in body["detail"]
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["ratelimit-remaining"] == "0"
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert client.get(path).status_code == 200  # never limited


def test_each_subject_has_its_own_budget(tmp_path: Path) -> None:
    server = make_server(tmp_path, "--jwt-secret", SECRET, "--rate-limit", "3/minute").start()
    try:
        with httpx.Client(base_url=server.url) as client:
            alice = bearer(token(sub="alice", aud=None, iss=None))
            bob = bearer(token(sub="bob", aud=None, iss=None))
            assert [client.get("/v1/queues", headers=alice).status_code for _ in range(4)] == [
                200,
                200,
                200,
                429,
            ]
            assert client.get("/v1/queues", headers=bob).status_code == 200
            # Refused tokens are limited by address, so guessing is throttled too.
            statuses = [
                client.get("/v1/queues", headers=bearer("guess")).status_code for _ in range(4)
            ]
            assert statuses == [401, 401, 401, 429]
    finally:
        server.stop()


def test_workers_share_one_budget_through_redis(tmp_path: Path) -> None:
    url = "redis://127.0.0.1:6379/14"
    shared = _require(url)
    shared.flushdb()
    server = make_server(
        tmp_path,
        "--workers",
        "2",
        "--redis-url",
        url,
        "--jwt-secret",
        SECRET,
        "--rate-limit",
        "20/minute",
    ).start()
    try:
        headers = bearer(token(sub="carol", aud=None, iss=None))
        allowed: Counter[str] = Counter()
        refused: Counter[str] = Counter()
        for _ in range(400):
            with httpx.Client(base_url=server.url) as client:  # a new connection each time
                response = client.get("/v1/projections", headers=headers)
            worker = response.headers["x-cairn-worker"]
            if response.status_code == 200:
                allowed[worker] += 1
            else:
                assert response.status_code == 429
                refused[worker] += 1
            if len(refused) == 2:
                break
        assert sum(allowed.values()) == 20, allowed
        assert len(refused) == 2, "both workers must have refused once the budget was spent"
    finally:
        server.stop()
        shared.flushdb()
        shared.close()


def test_a_limit_in_redis_is_not_shared_between_subjects(tmp_path: Path) -> None:
    url = "redis://127.0.0.1:6379/14"
    shared: redis.Redis = _require(url)
    shared.flushdb()
    server = make_server(
        tmp_path, "--redis-url", url, "--jwt-secret", SECRET, "--rate-limit", "2/minute"
    ).start()
    try:
        with httpx.Client(base_url=server.url) as client:
            for sub in ("dave", "erin"):
                headers = bearer(token(sub=sub, aud=None, iss=None))
                assert [
                    client.get("/v1/projections", headers=headers).status_code for _ in range(3)
                ] == [200, 200, 429]
    finally:
        server.stop()
        shared.flushdb()
        shared.close()
