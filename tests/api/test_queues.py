"""Queue management through real HTTP."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.api.conftest import problem


def unique(prefix: str = "q") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_creating_a_queue_answers_the_resource_with_defaults(http: httpx.Client) -> None:
    name = unique()
    response = http.post("/v1/queues", json={"name": name})
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == name
    assert body["visibility_timeout_s"] == 30
    assert body["delay_s"] == 0
    assert body["retention_s"] == 1209600
    assert body["max_receive_count"] is None and body["dead_letter_queue"] is None
    assert body["created_at"].endswith("Z") and body["created_at"] == body["updated_at"]
    assert body["position"] >= 1
    assert body["stats"] == {
        "available": 0,
        "delayed": 0,
        "in_flight": 0,
        "published_total": 0,
        "acked_total": 0,
        "dead_lettered_total": 0,
        "expired_total": 0,
        "oldest_available_age_s": 0.0,
    }
    assert int(response.headers["x-cairn-position"]) >= body["position"]


def test_a_taken_name_is_a_conflict(http: httpx.Client, queue: str) -> None:
    problem(http.post("/v1/queues", json={"name": queue}), 409)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "has space"}, "body.name"),
        ({"name": "x" * 81}, "body.name"),
        ({"name": "ok", "visibility_timeout_s": 43201}, "body.visibility_timeout_s"),
        ({"name": "ok", "delay_s": 901}, "body.delay_s"),
        ({"name": "ok", "retention_s": 59}, "body.retention_s"),
        (
            {"name": "ok", "max_receive_count": 0, "dead_letter_queue": "x"},
            "body.max_receive_count",
        ),
        ({"name": "ok", "visibility": 3}, "body.visibility"),
        ({"delay_s": 1}, "body.name"),
        ({"name": "ok", "max_receive_count": 3}, "body.dead_letter_queue"),
        (
            {"name": "ok", "max_receive_count": 3, "dead_letter_queue": "no-such-queue"},
            "body.dead_letter_queue",
        ),
    ],
)
def test_invalid_settings_are_422_naming_the_field(
    http: httpx.Client, payload: dict[str, object], field: str
) -> None:
    before = http.get("/v1/projections").json()["head"]
    body = problem(http.post("/v1/queues", json=payload), 422)
    assert body["errors"][0]["field"] == field
    assert http.get("/v1/projections").json()["head"] == before


def test_reads_list_get_and_404(http: httpx.Client) -> None:
    names = sorted(unique("list") for _ in range(3))
    for name in reversed(names):
        http.post("/v1/queues", json={"name": name})
    listed = [q["name"] for q in http.get("/v1/queues").json()["queues"]]
    assert [n for n in listed if n in names] == names
    assert listed == sorted(listed)
    assert http.get(f"/v1/queues/{names[0]}").json()["name"] == names[0]
    problem(http.get(f"/v1/queues/{unique()}"), 404)
    problem(http.get("/v1/queues/bad%20name"), 404)


def test_patch_changes_only_the_named_settings(http: httpx.Client, queue: str) -> None:
    dlq = unique("dlq")
    http.post("/v1/queues", json={"name": dlq})
    response = http.patch(
        f"/v1/queues/{queue}",
        json={"visibility_timeout_s": 5, "max_receive_count": 2, "dead_letter_queue": dlq},
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["visibility_timeout_s"], body["max_receive_count"], body["dead_letter_queue"]) == (
        5,
        2,
        dlq,
    )
    assert body["delay_s"] == 0
    assert body["updated_at"] > body["created_at"]
    cleared = http.patch(
        f"/v1/queues/{queue}", json={"max_receive_count": None, "dead_letter_queue": None}
    ).json()
    assert cleared["max_receive_count"] is None and cleared["visibility_timeout_s"] == 5
    problem(http.patch(f"/v1/queues/{queue}", json={"max_receive_count": 3}), 422)
    problem(http.patch(f"/v1/queues/{queue}", json={"delay_s": "soon"}), 422)
    problem(http.patch(f"/v1/queues/{unique()}", json={"delay_s": 1}), 404)


def test_delete_is_soft_and_frees_the_name(http: httpx.Client, queue: str) -> None:
    http.post(f"/v1/queues/{queue}/messages", json={"body": "old"})
    assert http.delete(f"/v1/queues/{queue}").status_code == 204
    problem(http.get(f"/v1/queues/{queue}"), 404)
    problem(http.post(f"/v1/queues/{queue}/messages", json={"body": 1}), 404)
    problem(http.delete(f"/v1/queues/{queue}"), 404)
    assert queue not in [q["name"] for q in http.get("/v1/queues").json()["queues"]]
    events = http.get("/v1/projections").json()
    assert events["head"] > 0
    again = http.post("/v1/queues", json={"name": queue})
    assert again.status_code == 201
    assert again.json()["stats"]["published_total"] == 0
    received = http.post(f"/v1/queues/{queue}/receive", json={"max_messages": 10}).json()
    assert received["messages"] == []


def test_purge_removes_every_live_message(http: httpx.Client, queue: str) -> None:
    http.post(
        f"/v1/queues/{queue}/messages/batch", json={"messages": [{"body": i} for i in range(3)]}
    )
    http.post(f"/v1/queues/{queue}/messages", json={"body": "later", "delay_s": 600})
    http.post(f"/v1/queues/{queue}/receive", json={})
    response = http.post(f"/v1/queues/{queue}/purge")
    assert response.status_code == 200
    body = response.json()
    assert body["purged"] == 4
    stats = http.get(f"/v1/queues/{queue}", params={"min_position": body["position"]}).json()[
        "stats"
    ]
    assert (stats["available"], stats["delayed"], stats["in_flight"]) == (0, 0, 0)
    listed = http.get(f"/v1/queues/{queue}/messages", params={"status": "purged"}).json()
    assert len(listed["messages"]) == 4


def test_min_position_waits_for_the_read_model_and_refuses_one_beyond_the_head(
    http: httpx.Client, queue: str
) -> None:
    published = http.post(f"/v1/queues/{queue}/messages", json={"body": 1}).json()
    read = http.get(f"/v1/queues/{queue}", params={"min_position": published["position"]})
    assert read.status_code == 200
    assert int(read.headers["x-cairn-position"]) >= published["position"]
    assert read.json()["stats"]["published_total"] == 1
    far = published["position"] + 1_000_000  # no command answered it: 422 (v1.2), not a wait
    body = problem(http.get(f"/v1/queues/{queue}", params={"min_position": far}), 422)
    assert str(far) in body["detail"]
    assert read.headers["x-cairn-position"]
    problem(http.get(f"/v1/queues/{queue}", params={"min_position": -1}), 422)
