"""Operational endpoints, OpenAPI, metrics and the request log."""

from __future__ import annotations

import json

import httpx

from tests.api.conftest import Server


def test_health_and_readiness(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"store": "ok", "projections": "ok"}


def test_openapi_describes_every_v1_route_with_schemas(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    expected = {
        ("post", "/v1/queues"),
        ("get", "/v1/queues"),
        ("get", "/v1/queues/{name}"),
        ("patch", "/v1/queues/{name}"),
        ("delete", "/v1/queues/{name}"),
        ("post", "/v1/queues/{name}/purge"),
        ("post", "/v1/queues/{name}/messages"),
        ("post", "/v1/queues/{name}/messages/batch"),
        ("post", "/v1/queues/{name}/receive"),
        ("post", "/v1/queues/{name}/messages/{id}/ack"),
        ("post", "/v1/queues/{name}/messages/{id}/nack"),
        ("post", "/v1/queues/{name}/messages/{id}/extend"),
        ("post", "/v1/queues/{name}/ack"),
        ("get", "/v1/queues/{name}/messages/{id}"),
        ("get", "/v1/queues/{name}/messages"),
        ("post", "/v1/queues/{name}/redrive"),
        ("get", "/v1/projections"),
    }
    found = {(method, path) for path, ops in paths.items() for method in ops}
    assert expected <= found
    publish = paths["/v1/queues/{name}/messages"]["post"]
    schema_ref = publish["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    request = document["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
    assert request["required"] == ["body"]
    assert request["properties"]["delay_s"]["anyOf"][0]["maximum"] == 900
    assert "application/problem+json" in publish["responses"]["422"]["content"]


def test_metrics_cover_requests_events_batches_depth_and_lag(
    http: httpx.Client, queue: str
) -> None:
    http.post(f"/v1/queues/{queue}/messages", json={"body": 1})
    last = http.post(f"/v1/queues/{queue}/messages", json={"body": 2, "delay_s": 60}).json()
    http.get(
        f"/v1/queues/{queue}", params={"min_position": last["position"]}
    )  # read model caught up
    response = http.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert (
        'cairn_http_requests_total{method="POST",route="/v1/queues/{name}/messages",status="201"}'
        in text
    )
    assert "cairn_http_request_duration_seconds_bucket{" in text
    assert 'cairn_events_appended_total{type="message.published"}' in text
    assert "cairn_group_commit_commands_bucket" in text
    assert f'cairn_queue_messages{{queue="{queue}",state="delayed"}} 1.0' in text
    assert 'cairn_projection_lag_events{projection="views"}' in text


def test_each_request_gets_one_canonical_log_line(http: httpx.Client, server: Server) -> None:
    response = http.get("/v1/queues", headers={"x-request-id": "trace-me-123"})
    assert response.headers["x-request-id"] == "trace-me-123"
    http.get("/healthz")  # the line above is written by now: this request came after it
    lines = [json.loads(line) for line in server.log.read_text().splitlines()]
    mine = [line for line in lines if line.get("request_id") == "trace-me-123"]
    assert len(mine) == 1
    assert mine[0]["event"] == "request"
    assert (mine[0]["method"], mine[0]["route"], mine[0]["status"]) == ("GET", "/v1/queues", 200)
    assert mine[0]["duration_ms"] >= 0 and mine[0]["level"] == "info"


def test_unknown_routes_and_methods_are_problems(http: httpx.Client) -> None:
    missing = http.get("/v1/nothing")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong = http.put("/v1/queues")
    assert wrong.status_code == 405 and wrong.json()["status"] == 405
