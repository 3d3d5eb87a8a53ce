"""History (API.md v1.1, "History: as-of reads, undo, restore") through real HTTP: as-of reads
of a queue, a message and a listing by position and by time, their bad input; purge undo,
queue restore and filtered or dry-run redrive, each as new events in the log; and as-of reads
that answer the same after ``cairn projections rebuild``."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import make_server, problem
from tests.api.v11 import (
    ack,
    between,
    events,
    head,
    listing,
    message,
    nack,
    new_queue,
    publish,
    receive,
    rfc3339,
    stats,
)


def queue_as_of(http: httpx.Client, queue: str, as_of: int | str) -> dict[str, Any]:
    response = http.get(f"/v1/queues/{queue}", params={"as_of": as_of})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def message_as_of(http: httpx.Client, queue: str, message_id: str, as_of: int) -> dict[str, Any]:
    response = http.get(f"/v1/queues/{queue}/messages/{message_id}", params={"as_of": as_of})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def ids_as_of(http: httpx.Client, queue: str, as_of: int, **params: Any) -> list[str]:
    """Every message id of the listing as of ``as_of`` (all pages)."""
    found: list[str] = []
    query: dict[str, Any] = {"as_of": as_of, "limit": 2, **params}
    while True:
        response = http.get(f"/v1/queues/{queue}/messages", params=query)
        assert response.status_code == 200, response.text
        assert response.headers["X-Cairn-Position"] == str(as_of)
        page = response.json()
        found += [m["id"] for m in page["messages"]]
        if page["next"] is None:
            return found
        query["after"] = page["next"]


# -- as-of reads ---------------------------------------------------------------------------------


def test_a_queue_as_of_each_position_shows_its_stats_then(http: httpx.Client) -> None:
    queue = new_queue(http)
    created = head(http)
    first = publish(http, queue, "a")
    second = publish(http, queue, "b")
    [leased] = receive(http, queue)
    ack(http, queue, leased)
    acked = head(http)

    then = queue_as_of(http, queue, first["position"])
    assert then["stats"]["available"] == 1 and then["stats"]["published_total"] == 1
    then = queue_as_of(http, queue, second["position"])
    assert then["stats"]["available"] == 2 and then["stats"]["acked_total"] == 0
    then = queue_as_of(http, queue, acked)
    assert then["stats"]["available"] == 1 and then["stats"]["acked_total"] == 1
    assert then["stats"]["in_flight"] == 0
    assert queue_as_of(http, queue, created)["stats"]["published_total"] == 0

    response = http.get(f"/v1/queues/{queue}", params={"as_of": first["position"]})
    assert response.headers["X-Cairn-Position"] == str(first["position"])
    # A read of the present agrees with the last as-of read.
    now = http.get(f"/v1/queues/{queue}", params={"min_position": acked}).json()
    assert now["stats"] == queue_as_of(http, queue, acked)["stats"] | {
        "oldest_available_age_s": now["stats"]["oldest_available_age_s"]
    }


def test_a_queue_as_of_a_time_is_as_of_the_last_event_at_or_before_it(
    http: httpx.Client,
) -> None:
    queue = new_queue(http)
    first = publish(http, queue, "a")
    second = publish(http, queue, "b")
    first_at = message(http, queue, first["id"])["published_at"]
    second_at = message(http, queue, second["id"])["published_at"]

    response = http.get(f"/v1/queues/{queue}", params={"as_of": between(first_at, second_at)})
    assert response.status_code == 200, response.text
    assert response.headers["X-Cairn-Position"] == str(first["position"])
    assert response.json()["stats"]["published_total"] == 1
    # An offset other than Z names the same instant.
    at = datetime.fromisoformat(second_at.replace("Z", "+00:00")).astimezone(
        timezone(timedelta(hours=2))
    )
    response = http.get(f"/v1/queues/{queue}", params={"as_of": at.isoformat()})
    assert response.status_code == 200, response.text
    assert response.json()["stats"]["published_total"] == 2


def test_a_queue_is_404_as_of_before_it_existed_and_readable_after_deletion(
    http: httpx.Client,
) -> None:
    before = head(http)
    queue = new_queue(http)
    publish(http, queue, "kept")
    published = head(http)
    assert http.delete(f"/v1/queues/{queue}").status_code == 204

    body = problem(http.get(f"/v1/queues/{queue}", params={"as_of": before}), 404)
    assert queue in body["detail"]
    # The queue is gone now, but the past still has it.
    assert queue_as_of(http, queue, published)["stats"]["available"] == 1
    problem(http.get(f"/v1/queues/{queue}", params={"as_of": head(http)}), 404)


def test_a_message_as_of_each_of_its_events_shows_its_status_and_history_then(
    http: httpx.Client, queue: str
) -> None:
    before = head(http)
    published = publish(http, queue, {"n": 1}, attributes={"k": "v"})
    [got] = receive(http, queue)
    leased = head(http)
    nack(http, queue, got, reason="retry later")
    nacked = head(http)
    [again] = receive(http, queue)
    ack(http, queue, again)
    acked = head(http)

    then = message_as_of(http, queue, published["id"], published["position"])
    assert then["status"] == "available" and then["receive_count"] == 0
    assert [h["type"] for h in then["history"]] == ["message.published"]
    assert then["body"] == {"n": 1} and then["attributes"] == {"k": "v"}
    then = message_as_of(http, queue, published["id"], leased)
    assert then["status"] == "in_flight" and then["receive_count"] == 1
    then = message_as_of(http, queue, published["id"], nacked)
    assert then["status"] == "available"
    assert then["history"][-1]["data"]["reason"] == "retry later"
    then = message_as_of(http, queue, published["id"], acked)
    assert then["status"] == "acked" and then["receive_count"] == 2
    assert then["history"] == message(http, queue, published["id"])["history"]

    url = f"/v1/queues/{queue}/messages/{published['id']}"
    problem(http.get(url, params={"as_of": before}), 404)


def test_a_listing_as_of_a_position_lists_the_messages_as_they_were(
    http: httpx.Client, queue: str
) -> None:
    ids = [publish(http, queue, i)["id"] for i in range(5)]
    all_published = head(http)
    got = receive(http, queue, max_messages=2)
    for m in got:
        ack(http, queue, m)
    acked = head(http)

    assert ids_as_of(http, queue, all_published) == ids
    assert ids_as_of(http, queue, all_published, status="available") == ids
    assert ids_as_of(http, queue, acked, status="available") == ids[2:]
    assert ids_as_of(http, queue, acked, status="acked") == ids[:2]
    assert ids_as_of(http, queue, acked, status="in_flight") == []
    # The present listing agrees.
    assert [m["id"] for m in listing(http, queue, status="acked")] == ids[:2]


@pytest.mark.parametrize(
    ("as_of", "says"),
    [
        ("yesterday", "neither a position nor an RFC 3339 time"),
        ("2026-02-30T00:00:00Z", "neither a position nor an RFC 3339 time"),
        ("2026-12-01T20:15:23", "neither a position nor an RFC 3339 time"),
        ("-1", "neither a position nor an RFC 3339 time"),
        ("9223372036854775808", "does not fit in 64 bits"),
        ("9223372036854775807", "is after the last position"),
        (rfc3339(datetime.now(UTC) + timedelta(days=1)), "is in the future"),
    ],
)
def test_a_bad_as_of_is_a_422_naming_it_on_every_read(
    http: httpx.Client, queue: str, as_of: str, says: str
) -> None:
    published = publish(http, queue)
    for url in (
        f"/v1/queues/{queue}",
        f"/v1/queues/{queue}/messages/{published['id']}",
        f"/v1/queues/{queue}/messages",
    ):
        body = problem(http.get(url, params={"as_of": as_of}), 422)
        assert [e["field"] for e in body["errors"]] == ["query.as_of"], body
        assert says in body["detail"], body


# -- purge undo ------------------------------------------------------------------------------


def test_undoing_a_purge_restores_what_it_removed_once(http: httpx.Client, queue: str) -> None:
    ids = [publish(http, queue, i, priority=i % 10)["id"] for i in range(3)]
    [leased] = receive(http, queue)
    before = {i: message(http, queue, i) for i in ids}

    purged = http.post(f"/v1/queues/{queue}/purge")
    assert purged.status_code == 200, purged.text
    assert purged.json()["purged"] == 3
    purge_id = purged.json()["purge_id"]
    assert purge_id == str(purged.json()["position"])
    assert stats(http, queue)["available"] == 0

    undone = http.post(f"/v1/queues/{queue}/purges/{purge_id}/undo")
    assert undone.status_code == 200, undone.text
    assert undone.json()["restored"] == 3 and undone.json()["skipped"] == 0
    assert undone.headers["X-Cairn-Position"] == str(undone.json()["position"])
    assert stats(http, queue)["available"] == 3
    for message_id, was in before.items():
        now = message(http, queue, message_id)
        assert now["status"] == "available"
        for field in ("published_at", "body", "attributes", "priority", "group_id"):
            assert now[field] == was[field], field
        assert now["history"][-1]["type"] == "message.restored"
        assert now["history"][-1]["data"]["purge"] == int(purge_id)
    logged = events(http, queue, after=int(purge_id))
    assert [e["type"] for e in logged] == ["queue.purge_undone"] + ["message.restored"] * 3
    assert logged[0]["data"] == {"purge": int(purge_id), "restored": 3, "skipped": 0}
    # The consumer that held the lease at the purge may still ack, as after a lease expiry,
    # until someone else leases the message.
    late = http.post(
        f"/v1/queues/{queue}/messages/{leased['id']}/ack", json={"receipt": leased["receipt"]}
    )
    assert late.status_code == 204, late.text
    assert stats(http, queue)["available"] == 2

    position = head(http)
    again = http.post(f"/v1/queues/{queue}/purges/{purge_id}/undo")
    assert again.status_code == 200, again.text
    assert again.json()["restored"] == 0
    assert events(http, queue, after=position) == []  # nothing left to undo: nothing written
    assert len(receive(http, queue, max_messages=10)) == 2


def test_an_undo_of_an_unknown_purge_is_a_404_and_writes_nothing(
    http: httpx.Client, queue: str
) -> None:
    published = publish(http, queue)
    other = new_queue(http)
    publish(http, other)
    other_purge = http.post(f"/v1/queues/{other}/purge").json()["purge_id"]
    position = head(http)
    for purge_id in (str(published["position"]), other_purge, "abc", "0", "99999999999"):
        body = problem(http.post(f"/v1/queues/{queue}/purges/{purge_id}/undo"), 404)
        assert body["type"].endswith("purge-not-found"), body
    problem(http.post(f"/v1/queues/nope-{queue}/purges/{other_purge}/undo"), 404)
    problem(http.post(f"/v1/queues/{queue}/purges/{other_purge}/undo", json={"x": 1}), 422)
    assert head(http) == position


# -- queue restore ------------------------------------------------------------------------------


def test_a_deleted_queue_comes_back_with_its_settings_and_messages(http: httpx.Client) -> None:
    queue = new_queue(http, visibility_timeout_s=77, delay_s=0)
    ids = [publish(http, queue, i)["id"] for i in range(3)]
    [done] = receive(http, queue)
    ack(http, queue, done)
    assert http.delete(f"/v1/queues/{queue}").status_code == 204
    problem(http.get(f"/v1/queues/{queue}"), 404)

    restored = http.post(f"/v1/queues/{queue}/restore")
    assert restored.status_code == 200, restored.text
    assert restored.json()["name"] == queue
    assert restored.json()["visibility_timeout_s"] == 77
    assert restored.json()["stats"]["available"] == 2
    assert restored.json()["stats"]["acked_total"] == 1
    assert [e["type"] for e in events(http, queue)][-1] == "queue.restored"
    assert sorted(m["id"] for m in receive(http, queue, max_messages=10)) == sorted(ids[1:])


def test_a_restore_is_refused_when_the_name_is_taken_or_was_never_deleted(
    http: httpx.Client,
) -> None:
    never = new_queue(http)
    body = problem(http.post(f"/v1/queues/{never}/restore"), 409)
    assert never in body["detail"]
    problem(http.post(f"/v1/queues/never-{never}/restore"), 404)

    deleted = new_queue(http)
    publish(http, deleted, "old")
    assert http.delete(f"/v1/queues/{deleted}").status_code == 204
    assert http.post("/v1/queues", json={"name": deleted}).status_code == 201
    position = head(http)
    problem(http.post(f"/v1/queues/{deleted}/restore"), 409)
    assert head(http) == position
    assert stats(http, deleted)["available"] == 0  # the new queue kept its own (no) messages


# -- filtered and dry-run redrive --------------------------------------------------------------


def dead_letters(http: httpx.Client) -> tuple[str, str]:
    """A queue whose messages go to its dead-letter queue after one receive, and that queue
    holding three dead letters: two nacked with "timeout" and attribute kind=a, one with
    "bad input" and kind=b."""
    dlq = new_queue(http, "dlq")
    source = new_queue(http, "src", max_receive_count=1, dead_letter_queue=dlq)
    for kind, reason in (("a", "payments timeout"), ("b", "bad input"), ("a", "db timeout")):
        publish(http, source, {"kind": kind}, attributes={"kind": kind})
        [got] = receive(http, source)
        nack(http, source, got, reason=reason)
    assert stats(http, dlq)["available"] == 3
    return source, dlq


def test_a_dry_run_says_what_would_move_and_writes_nothing(http: httpx.Client) -> None:
    _source, dlq = dead_letters(http)
    position = head(http)
    response = http.post(
        f"/v1/queues/{dlq}/redrive", json={"where": {"reason": "timeout"}, "dry_run": True}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["would_move"] == 2 and len(answer["sample"]) == 2
    # The two nacked with "timeout" are the two of kind a.
    timeouts = [m["id"] for m in listing(http, dlq) if m["attributes"]["kind"] == "a"]
    assert sorted(answer["sample"]) == sorted(timeouts)
    assert head(http) == position
    assert stats(http, dlq)["available"] == 3


def test_a_filtered_redrive_moves_only_matching_messages(http: httpx.Client) -> None:
    source, dlq = dead_letters(http)
    moved = http.post(f"/v1/queues/{dlq}/redrive", json={"where": {"attributes": {"kind": "b"}}})
    assert moved.status_code == 200, moved.text
    assert moved.json()["moved"] == 1
    [back] = receive(http, source)
    assert back["body"] == {"kind": "b"}
    moved = http.post(
        f"/v1/queues/{dlq}/redrive",
        json={"where": {"reason": "payments", "source_queue": source}},
    )
    assert moved.json()["moved"] == 1
    assert stats(http, dlq)["available"] == 1
    later = rfc3339(datetime.now(UTC))
    dry = http.post(
        f"/v1/queues/{dlq}/redrive",
        json={"where": {"published_after": later}, "dry_run": True},
    )
    assert dry.json() == {"would_move": 0, "sample": []}
    dry = http.post(
        f"/v1/queues/{dlq}/redrive",
        json={"where": {"published_before": later}, "dry_run": True},
    )
    assert dry.json()["would_move"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"where": {"color": "red"}}, "body.where.color"),
        ({"where": {"attributes": {"k": 1}}}, "body.where.attributes"),
        ({"where": {"published_after": "yesterday"}}, "body.where.published_after"),
        ({"where": []}, "body.where"),
        ({"dry_run": "yes"}, "body.dry_run"),
    ],
)
def test_a_bad_redrive_filter_is_a_422_naming_it_and_writes_nothing(
    http: httpx.Client, body: dict[str, Any], field: str
) -> None:
    _source, dlq = dead_letters(http)
    position = head(http)
    answer = problem(http.post(f"/v1/queues/{dlq}/redrive", json=body), 422)
    assert [e["field"] for e in answer["errors"]] == [field], answer
    assert head(http) == position


# -- the same past after a rebuild --------------------------------------------------------------


def test_as_of_reads_are_the_same_after_a_rebuild(tmp_path: Path) -> None:
    server = make_server(tmp_path).start()
    try:
        http = server.client()
        queue = new_queue(http, max_receive_count=2, dead_letter_queue=new_queue(http, "dlq"))
        ids = [publish(http, queue, i, group_id="g" if i % 2 else None)["id"] for i in range(6)]
        for m in receive(http, queue, max_messages=3):
            nack(http, queue, m, reason="again")
        for m in receive(http, queue, max_messages=2):
            ack(http, queue, m)
        purge_id = http.post(f"/v1/queues/{queue}/purge").json()["purge_id"]
        assert http.post(f"/v1/queues/{queue}/purges/{purge_id}/undo").status_code == 200
        last = head(http)

        def past() -> list[Any]:
            seen: list[Any] = []
            for position in range(1, last + 1):
                response = http.get(f"/v1/queues/{queue}", params={"as_of": position})
                seen.append((response.status_code, response.json()))
                for message_id in ids:
                    url = f"/v1/queues/{queue}/messages/{message_id}"
                    got = http.get(url, params={"as_of": position})
                    seen.append((got.status_code, got.json()))
            return seen

        before = past()
        assert any(status == 200 for status, _ in before)
        rebuilt = subprocess.run(
            [
                sys.executable,
                "-m",
                "api.cli",
                "projections",
                "rebuild",
                "--database-url",
                f"sqlite:///{server.database}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert rebuilt.returncode == 0, rebuilt.stderr
        http.get("/v1/projections", params={"min_position": last})
        assert past() == before
    finally:
        server.stop()
