"""``/metrics`` with authentication on (API.md v1.2, "Breaking changes"): its series name every
queue and its depth, so it needs a token with the scope ``metrics`` (or ``admin``) unless
``--metrics-public`` says otherwise; ``--no-metrics-per-queue`` keeps only broker-wide series;
``/healthz`` and ``/readyz`` stay open and name no queue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from tests.api.conftest import Server, make_server, problem
from tests.api.test_cli import cairn, one_line
from tests.api.test_security import SECRET, bearer, forbidden, unauthorized

QUEUE = "payroll.secret-project"


def mint(scope: str) -> str:
    minted = cairn("token", "--sub", "scraper", "--scope", scope, "--jwt-secret", SECRET)
    assert minted.returncode == 0, minted.stderr
    return minted.stdout.strip()


def serve(directory: Path, *extra: str, env: dict[str, str] | None = None) -> Server:
    server = make_server(directory, "--jwt-secret", SECRET, *extra, env=env).start()
    with httpx.Client(base_url=server.url, headers=bearer(mint("admin"))) as admin:
        assert admin.post("/v1/queues", json={"name": QUEUE}).status_code == 201
        published = admin.post(f"/v1/queues/{QUEUE}/messages", json={"body": 1}).json()
        # the read model shows it, so a scrape would show its depth
        admin.get(f"/v1/queues/{QUEUE}", params={"min_position": published["position"]})
    return server


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = serve(tmp_path_factory.mktemp("metrics"))
    yield server
    server.stop()


def test_with_auth_on_metrics_need_a_token(secured: Server) -> None:
    with httpx.Client(base_url=secured.url) as anonymous:
        paths = anonymous.get("/openapi.json").json()["paths"]
        assert paths["/metrics"]["get"]["security"] == [{"bearer": []}]
        unauthorized(anonymous.get("/metrics"), token_sent=False)
        unauthorized(anonymous.get("/metrics", headers=bearer("not-a-token")))


def test_a_token_without_the_metrics_scope_is_403(secured: Server) -> None:
    with httpx.Client(base_url=secured.url) as client:
        for scope in ("read:*", "events:read", "queues:manage publish:* consume:*"):
            forbidden(client.get("/metrics", headers=bearer(mint(scope))))


@pytest.mark.parametrize("scope", ["metrics", "admin"])
def test_the_metrics_or_admin_scope_may_scrape(secured: Server, scope: str) -> None:
    with httpx.Client(base_url=secured.url) as client:
        scraped = client.get("/metrics", headers=bearer(mint(scope)))
    assert scraped.status_code == 200
    assert f'cairn_queue_messages{{queue="{QUEUE}",state="available"}} 1.0' in scraped.text


def test_the_metrics_scope_grants_nothing_else(secured: Server) -> None:
    with httpx.Client(base_url=secured.url, headers=bearer(mint("metrics"))) as client:
        forbidden(client.get("/v1/queues/" + QUEUE))
        forbidden(client.get("/v1/events"))
        forbidden(client.post(f"/v1/queues/{QUEUE}/receive", json={}))


def test_health_and_readiness_stay_open_and_name_no_queue(secured: Server) -> None:
    with httpx.Client(base_url=secured.url) as anonymous:
        for path in ("/healthz", "/readyz"):
            answer = anonymous.get(path)
            assert answer.status_code == 200
            assert QUEUE not in answer.text


def test_metrics_public_restores_the_open_endpoint(tmp_path: Path) -> None:
    server = serve(tmp_path, "--metrics-public")
    try:
        with httpx.Client(base_url=server.url) as anonymous:
            scraped = anonymous.get("/metrics")
            assert scraped.status_code == 200 and QUEUE in scraped.text
            unauthorized(anonymous.get("/v1/queues"), token_sent=False)  # only /metrics opens
            # The OpenAPI document says so: /metrics asks for no bearer token, the rest do.
            paths = anonymous.get("/openapi.json").json()["paths"]
            assert "security" not in paths["/metrics"]["get"]
            assert paths["/v1/queues"]["get"]["security"] == [{"bearer": []}]
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("flag", "env"), [("--no-metrics-per-queue", {}), (None, {"CAIRN_NO_METRICS_PER_QUEUE": "1"})]
)
def test_no_metrics_per_queue_keeps_only_broker_wide_series(
    tmp_path: Path, flag: str | None, env: dict[str, str]
) -> None:
    server = serve(tmp_path, *([flag] if flag else []), env=env)
    try:
        with httpx.Client(base_url=server.url, headers=bearer(mint("metrics"))) as client:
            scraped = client.get("/metrics")
    finally:
        server.stop()
    assert scraped.status_code == 200
    assert QUEUE not in scraped.text and "cairn_queue_messages{" not in scraped.text
    assert "cairn_log_head_position " in scraped.text
    assert 'cairn_projection_lag_events{projection="views"}' in scraped.text


def test_cairn_token_knows_the_metrics_scope_and_refuses_unknown_words() -> None:
    claims = jwt.decode(mint("metrics"), SECRET, algorithms=["HS256"])
    assert claims["scope"] == "metrics"
    line = one_line(
        cairn("token", "--sub", "s", "--scope", "metrix", "--jwt-secret", SECRET), "--scope", 2
    )
    assert "'metrix'" in line and "metrics" in line


def test_without_auth_metrics_stay_open(tmp_path: Path) -> None:
    server = make_server(tmp_path).start()
    try:
        with httpx.Client(base_url=server.url) as anonymous:
            assert anonymous.get("/metrics").status_code == 200
            problem(anonymous.get("/v1/queues/nothing-here"), 404)
    finally:
        server.stop()
