"""Analytics (API.md v1.1, "Analytics") through real HTTP, on SQLite and PostgreSQL: counts,
dwell times and nack reasons per bucket, every bucket size agreeing, the window's bad input,
the projection listed and rebuilt by ``cairn projections rebuild analytics``."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.api.conftest import Server, problem
from tests.api.v11 import ack, head, nack, new_queue, publish, receive, rfc3339

COUNTS = ("published", "received", "acked", "nacked", "dead_lettered", "expired", "purged")


def analytics(http: httpx.Client, queue: str, **params: Any) -> dict[str, Any]:
    position = head(http)
    response = http.get(
        f"/v1/queues/{queue}/analytics", params={"min_position": position, **params}
    )
    assert response.status_code == 200, response.text
    assert int(response.headers["X-Cairn-Position"]) >= position, http.get("/v1/projections").text
    result: dict[str, Any] = response.json()
    return result


def summed(found: dict[str, Any]) -> dict[str, Any]:
    totals = {name: sum(b[name] for b in found["buckets"]) for name in COUNTS}
    reasons: dict[str, int] = {}
    for bucket in found["buckets"]:
        for entry in bucket["nack_reasons"]:
            reasons[entry["reason"]] = reasons.get(entry["reason"], 0) + entry["count"]
    return totals | {"reasons": reasons}


def test_a_queue_s_activity_is_counted_in_every_bucket_size(http: httpx.Client) -> None:
    dlq = new_queue(http, "dlq")
    queue = new_queue(http, max_receive_count=2, dead_letter_queue=dlq)
    started = datetime.now(UTC)
    for i in range(6):
        publish(http, queue, {"n": i})
    got = receive(http, queue, max_messages=6)
    assert len(got) == 6
    for message in got[:3]:
        ack(http, queue, message)
    nack(http, queue, got[3], reason="timeout calling payments")
    nack(http, queue, got[4], reason="timeout calling payments")
    nack(http, queue, got[5], reason="card declined")
    again = receive(http, queue, max_messages=6)
    assert len(again) == 3
    for message in again:  # the second failure of each: to the dead-letter queue
        nack(http, queue, message, reason="timeout calling payments")
    publish(http, queue, "left behind")
    assert http.post(f"/v1/queues/{queue}/purge").status_code == 200

    window = {"from": rfc3339(started - timedelta(seconds=5))}
    want = {
        "published": 7,
        "received": 9,
        "acked": 3,
        "nacked": 6,
        "dead_lettered": 3,
        "expired": 0,
        "purged": 1,
        "reasons": {"timeout calling payments": 5, "card declined": 1},
    }
    for size in (10, 60, 300, 3600):
        found = analytics(http, queue, bucket_s=size, **window)
        assert found["queue"] == queue and found["bucket_s"] == size
        starts = [datetime.fromisoformat(b["start"]) for b in found["buckets"]]
        assert all(int(s.timestamp()) % size == 0 for s in starts)
        assert starts == sorted(starts) and starts[0] <= started - timedelta(seconds=5)
        assert summed(found) == want, size
        dwells = [b["dwell_s"] for b in found["buckets"] if b["acked"]]
        assert dwells and all(d is not None for d in dwells)
        for dwell in dwells:
            assert 0 <= dwell["p50"] <= dwell["p95"] <= dwell["p99"] <= dwell["max"] < 60
        assert all(b["dwell_s"] is None for b in found["buckets"] if not b["acked"])
        for bucket in found["buckets"]:
            counts = [r["count"] for r in bucket["nack_reasons"]]
            assert counts == sorted(counts, reverse=True)
    # The dead-letter copies were published into the dead-letter queue.
    assert summed(analytics(http, dlq, bucket_s=60, **window))["published"] == 3


def test_empty_buckets_are_there_with_zeros_over_the_default_hour(http: httpx.Client) -> None:
    queue = new_queue(http)
    found = analytics(http, queue)
    assert found["bucket_s"] == 60
    assert len(found["buckets"]) in (60, 61)
    first, last = (datetime.fromisoformat(found["buckets"][i]["start"]) for i in (0, -1))
    assert timedelta(minutes=58) <= last - first <= timedelta(minutes=60)
    assert all(b[name] == 0 for b in found["buckets"] for name in COUNTS)
    assert all(b["dwell_s"] is None and b["nack_reasons"] == [] for b in found["buckets"])


def test_a_window_in_the_past_is_answered_by_its_buckets(http: httpx.Client) -> None:
    queue = new_queue(http)
    publish(http, queue)
    now = datetime.now(UTC)
    before = analytics(
        http,
        queue,
        bucket_s=10,
        **{"from": rfc3339(now - timedelta(minutes=10)), "to": rfc3339(now - timedelta(minutes=5))},
    )
    assert len(before["buckets"]) in (30, 31)
    assert summed(before)["published"] == 0


def test_bad_windows_are_422_naming_the_parameter(http: httpx.Client, queue: str) -> None:
    url = f"/v1/queues/{queue}/analytics"
    now = datetime.now(UTC)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"bucket_s": 7}, "query.bucket_s"),
        ({"bucket_s": "x"}, "query.bucket_s"),
        ({"from": "yesterday"}, "query.from"),
        ({"to": "2026-02-30T00:00:00Z"}, "query.to"),
        ({"from": rfc3339(now), "to": rfc3339(now - timedelta(hours=1))}, "query.from"),
        ({"from": rfc3339(now - timedelta(hours=3)), "bucket_s": 10}, "query.bucket_s"),
        (
            {
                "from": rfc3339(now - timedelta(hours=30)),
                "to": rfc3339(now - timedelta(hours=29)),
                "bucket_s": 10,
            },
            "query.bucket_s",
        ),  # fewer than 1,000 buckets, but not kept
        (
            {
                "from": rfc3339(now - timedelta(days=16)),
                "to": rfc3339(now - timedelta(days=16) + timedelta(hours=10)),
                "bucket_s": 60,
            },
            "query.bucket_s",
        ),
    ]
    for params, field in cases:
        body = problem(http.get(url, params=params), 422)
        assert [e["field"] for e in body["errors"]] == [field], (params, body)
    # A window the contract keeps, at the largest size, is fine.
    ok = http.get(url, params={"from": rfc3339(now - timedelta(days=40)), "bucket_s": 3600})
    assert ok.status_code == 200 and len(ok.json()["buckets"]) in (960, 961)


def test_an_unknown_or_deleted_queue_is_404(http: httpx.Client) -> None:
    problem(http.get("/v1/queues/nope-never/analytics"), 404)
    queue = new_queue(http)
    assert http.delete(f"/v1/queues/{queue}").status_code == 204
    problem(http.get(f"/v1/queues/{queue}/analytics"), 404)


def test_the_projection_is_listed_and_a_rebuild_answers_the_same(
    http: httpx.Client, server: Server
) -> None:
    listed = http.get("/v1/projections").json()
    assert "analytics" in [p["name"] for p in listed["projections"]]
    queue = new_queue(http)
    publish(http, queue, 1)
    publish(http, queue, 2)
    got = receive(http, queue, max_messages=2)
    ack(http, queue, got[0])
    nack(http, queue, got[1], reason="nope")
    now = datetime.now(UTC)
    window = {
        "from": rfc3339(now - timedelta(minutes=2)),
        "to": rfc3339(now + timedelta(minutes=1)),
        "bucket_s": 10,
    }
    before = analytics(http, queue, **window)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "projections",
            "rebuild",
            "analytics",
            "--database-url",
            server.database_url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "analytics:" in result.stderr and "views:" not in result.stderr
    after = analytics(http, queue, **window)
    assert after == before
    assert summed(after)["acked"] == 1 and summed(after)["reasons"] == {"nope": 1}


def test_the_buckets_run_from_the_one_holding_from_to_the_one_holding_to(
    http: httpx.Client, queue: str
) -> None:
    aligned = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    aligned -= timedelta(seconds=aligned.second % 10)
    for start, end, count in [
        (aligned, aligned + timedelta(seconds=25.5), 3),
        (aligned + timedelta(seconds=3), aligned + timedelta(seconds=30), 3),
        (aligned, aligned + timedelta(seconds=30, microseconds=1), 4),
        (aligned + timedelta(seconds=1), aligned + timedelta(seconds=2), 1),
    ]:
        found = analytics(http, queue, bucket_s=10, **{"from": rfc3339(start), "to": rfc3339(end)})
        starts = [datetime.fromisoformat(b["start"]) for b in found["buckets"]]
        assert starts == [aligned + timedelta(seconds=10 * i) for i in range(count)], (start, end)
