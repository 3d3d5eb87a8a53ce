"""Priorities and FIFO groups (API.md v1.1, "Priorities and FIFO groups") through real HTTP:
delivery order by priority, validation of the new fields, what the resources show, and the
SQS-FIFO rules of groups (head only, one batch in flight per group, nack and expiry put a
message back at its group's head, a nack delay holds the group back)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.api.conftest import problem
from tests.api.v11 import (
    ack,
    events,
    head,
    listing,
    message,
    nack,
    new_queue,
    publish,
    publish_batch,
    receive,
    receive_within,
)


def bodies(messages: list[dict[str, Any]]) -> list[Any]:
    return [m["body"] for m in messages]


def test_higher_priority_first_and_publish_order_within_a_priority(
    http: httpx.Client, queue: str
) -> None:
    """Available messages come highest priority first (default 4), and in publish order among
    messages of one priority, whether published one by one or in a batch."""
    publish(http, queue, "default-1")
    publish(http, queue, "nine-1", priority=9)
    publish(http, queue, "zero", priority=0)
    publish_batch(
        http,
        queue,
        [
            {"body": "nine-2", "priority": 9},
            {"body": "default-2", "priority": 4},
            {"body": "seven", "priority": 7},
            {"body": "default-3"},
        ],
    )
    got = receive(http, queue, max_messages=10)
    assert bodies(got) == [
        "nine-1",
        "nine-2",
        "seven",
        "default-1",
        "default-2",
        "default-3",
        "zero",
    ]
    assert [m["priority"] for m in got] == [9, 9, 7, 4, 4, 4, 0]


def test_a_later_higher_priority_message_overtakes_one_at_a_time(
    http: httpx.Client, queue: str
) -> None:
    """Receiving one message at a time follows the same order, and a message published with a
    higher priority after the others goes before the waiting ones."""
    publish(http, queue, "low", priority=1)
    publish(http, queue, "mid", priority=5)
    assert bodies(receive(http, queue)) == ["mid"]
    publish(http, queue, "top", priority=8)
    assert bodies(receive(http, queue)) == ["top"]
    assert bodies(receive(http, queue)) == ["low"]
    assert receive(http, queue) == []


@pytest.mark.parametrize("value", [-1, 10, 100, "5", 4.5, True, None, 2**64])
def test_a_priority_outside_0_to_9_is_a_422_naming_it(
    http: httpx.Client, queue: str, value: Any
) -> None:
    """Out-of-range or non-integer priorities are refused, naming ``body.priority`` (and
    ``messages[i].priority`` in a batch); nothing is written."""
    logged = events(http, queue)
    body = problem(
        http.post(f"/v1/queues/{queue}/messages", json={"body": 1, "priority": value}), 422
    )
    assert [e["field"] for e in body["errors"]] == ["body.priority"]
    entries: list[dict[str, Any]] = [{"body": i, "priority": 9} for i in range(3)]
    entries[2]["priority"] = value
    body = problem(http.post(f"/v1/queues/{queue}/messages/batch", json={"messages": entries}), 422)
    assert [e["field"] for e in body["errors"]] == ["messages[2].priority"]
    assert events(http, queue) == logged


def test_priorities_0_and_9_are_accepted(http: httpx.Client, queue: str) -> None:
    """The bounds themselves are valid priorities."""
    publish(http, queue, "zero", priority=0)
    publish(http, queue, "nine", priority=9)
    assert bodies(receive(http, queue, max_messages=2)) == ["nine", "zero"]


@pytest.mark.parametrize(
    "value",
    ["", "has space", "x" * 129, "sla/sh", "é", "new\nline", 5, ["g"]],
    ids=["empty", "space", "129-chars", "slash", "non-ascii", "newline", "int", "list"],
)
def test_a_bad_group_id_is_a_422_naming_it(http: httpx.Client, queue: str, value: Any) -> None:
    """A group_id outside ``[A-Za-z0-9_.:-]{1,128}`` is refused, naming ``body.group_id``
    (``messages[i].group_id`` in a batch); nothing is written."""
    logged = events(http, queue)
    body = problem(
        http.post(f"/v1/queues/{queue}/messages", json={"body": 1, "group_id": value}), 422
    )
    assert [e["field"] for e in body["errors"]] == ["body.group_id"]
    entries: list[dict[str, Any]] = [{"body": i, "group_id": "ok"} for i in range(2)]
    entries[1]["group_id"] = value
    body = problem(http.post(f"/v1/queues/{queue}/messages/batch", json={"messages": entries}), 422)
    assert [e["field"] for e in body["errors"]] == ["messages[1].group_id"]
    assert events(http, queue) == logged


def test_every_group_id_character_and_128_characters_are_accepted(
    http: httpx.Client, queue: str
) -> None:
    """Letters, digits, ``_ . : -`` and 128 characters make valid group ids."""
    for group in ("Az09_.:-", "g" * 128, ":"):
        publish(http, queue, group, group_id=group)
    got = receive(http, queue, max_messages=10)
    assert sorted(m["group_id"] for m in got) == sorted(["Az09_.:-", "g" * 128, ":"])


def test_resources_show_priority_and_group_id(http: httpx.Client, queue: str) -> None:
    """The message resource (by queue and by id alone), list items and received messages all
    show ``priority`` and ``group_id``; ``group_id`` is null (and priority 4) when not given."""
    grouped = publish(http, queue, "grouped", priority=8, group_id="orders:42")
    plain = publish(http, queue, "plain")
    at = head(http)
    expected = {grouped["id"]: (8, "orders:42"), plain["id"]: (4, None)}
    for message_id, shown in expected.items():
        resource = message(http, queue, message_id)
        assert (resource["priority"], resource["group_id"]) == shown
        by_id = http.get(f"/v1/messages/{message_id}", params={"min_position": at})
        assert by_id.status_code == 200, by_id.text
        assert (by_id.json()["priority"], by_id.json()["group_id"]) == shown
        assert "group_id" in by_id.json() and "group_id" in resource
    items = {m["id"]: (m["priority"], m["group_id"]) for m in listing(http, queue)}
    assert items == expected
    got = receive(http, queue, max_messages=10)
    assert {m["id"]: (m["priority"], m["group_id"]) for m in got} == expected
    assert all("group_id" in m for m in got)


def test_one_receive_takes_a_group_from_its_head_in_order(http: httpx.Client, queue: str) -> None:
    """A receive with room takes consecutive messages of a group from its head, in publish
    order; another receive gets nothing of the group while they are in flight; acking them
    frees the group for the rest."""
    publish_batch(http, queue, [{"body": f"g{i}", "group_id": "g"} for i in range(4)])
    first = receive(http, queue, max_messages=2)
    assert bodies(first) == ["g0", "g1"]
    assert receive(http, queue, max_messages=10) == []
    for leased in first:
        ack(http, queue, leased)
    assert bodies(receive(http, queue, max_messages=10)) == ["g2", "g3"]


def test_a_group_in_flight_blocks_only_itself(http: httpx.Client, queue: str) -> None:
    """While a message of a group is in flight no receive gets that group; other groups and
    ungrouped messages are delivered meanwhile; an ack frees the group's next message."""
    publish(http, queue, "a1", group_id="a")
    publish(http, queue, "a2", group_id="a")
    publish(http, queue, "b1", group_id="b")
    publish(http, queue, "free")
    [a1] = receive(http, queue)
    assert a1["body"] == "a1" and a1["group_id"] == "a"
    others = receive(http, queue, max_messages=10)
    assert bodies(others) == ["b1", "free"]
    assert receive(http, queue, max_messages=10) == []
    ack(http, queue, a1)
    assert bodies(receive(http, queue, max_messages=10)) == ["a2"]


def test_a_group_head_goes_first_whatever_the_priorities(http: httpx.Client, queue: str) -> None:
    """Within a group, publish order wins over priority: a later, higher-priority member is
    not delivered before the group's head."""
    publish(http, queue, "head", group_id="g", priority=0)
    publish(http, queue, "urgent-follower", group_id="g", priority=9)
    assert bodies(receive(http, queue)) == ["head"]
    assert receive(http, queue, max_messages=10) == []


def test_a_nack_puts_the_message_back_at_its_group_head(http: httpx.Client, queue: str) -> None:
    """A nacked message is redelivered before later members of its group; while another
    member is still in flight the group stays blocked."""
    publish_batch(http, queue, [{"body": f"g{i}", "group_id": "g"} for i in range(3)])
    g0, g1 = receive(http, queue, max_messages=2)
    nack(http, queue, g0)
    assert receive(http, queue, max_messages=10) == []  # g1 is still in flight
    ack(http, queue, g1)
    again = receive(http, queue, max_messages=10)
    assert bodies(again) == ["g0", "g2"]
    assert again[0]["receive_count"] == 2 and again[1]["receive_count"] == 1


def test_a_nack_alone_in_flight_comes_back_before_the_rest(http: httpx.Client, queue: str) -> None:
    """Nacking the only in-flight member (delay 0) makes it the group's head again, ahead of
    the members published after it."""
    publish_batch(http, queue, [{"body": f"g{i}", "group_id": "g"} for i in range(3)])
    [g0] = receive(http, queue)
    nack(http, queue, g0)
    assert bodies(receive(http, queue, max_messages=10)) == ["g0", "g1", "g2"]


def test_a_nack_delay_holds_the_whole_group_back(http: httpx.Client, queue: str) -> None:
    """After a nack with a delay no member of the group is delivered until the delay ends,
    while other messages are; then the nacked one comes first, with the rest behind it."""
    publish(http, queue, "g0", group_id="g")
    publish(http, queue, "g1", group_id="g")
    publish(http, queue, "free")
    [g0] = receive(http, queue)
    nack(http, queue, g0, delay_s=1)
    assert bodies(receive(http, queue, max_messages=10)) == ["free"]
    assert receive(http, queue, max_messages=10) == []
    back = receive_within(http, queue, max_messages=10)
    assert bodies(back) == ["g0", "g1"]


def test_a_lease_expiry_puts_the_message_back_at_its_group_head(
    http: httpx.Client, queue: str
) -> None:
    """A lease that ends without an ack returns the message to its group's head: it is
    redelivered before the members behind it, with its receive count incremented."""
    publish_batch(http, queue, [{"body": f"g{i}", "group_id": "g"} for i in range(2)])
    [g0] = receive(http, queue, visibility_timeout_s=1)
    assert receive(http, queue, max_messages=10) == []
    back = receive_within(http, queue, max_messages=10)
    assert bodies(back) == ["g0", "g1"]
    assert back[0]["receive_count"] == 2 and back[0]["id"] == g0["id"]


def test_dead_lettering_and_purging_free_the_group(http: httpx.Client) -> None:
    """A group member that is dead-lettered leaves the way for the next one; a purge empties
    the group so new members are delivered."""
    dlq = new_queue(http, "dlq")
    queue = new_queue(http, max_receive_count=1, dead_letter_queue=dlq)
    publish_batch(http, queue, [{"body": f"g{i}", "group_id": "g"} for i in range(3)])
    [g0] = receive(http, queue)
    nack(http, queue, g0)  # its one receive used up: dead-lettered
    assert bodies(receive(http, queue)) == ["g1"]
    [dead] = receive(http, dlq)
    assert (dead["body"], dead["group_id"], dead["priority"]) == ("g0", "g", 4)
    assert http.post(f"/v1/queues/{queue}/purge").status_code == 200
    publish(http, queue, "g-new", group_id="g")
    assert bodies(receive(http, queue, max_messages=10)) == ["g-new"]


def test_groups_are_delivered_by_priority_of_their_heads(http: httpx.Client, queue: str) -> None:
    """Between groups, priority still decides: a group whose head has a higher priority is
    taken first."""
    low, high = f"low-{uuid.uuid4().hex[:4]}", f"high-{uuid.uuid4().hex[:4]}"
    publish(http, queue, "low-head", group_id=low, priority=2)
    publish(http, queue, "high-head", group_id=high, priority=7)
    assert bodies(receive(http, queue)) == ["high-head"]
    assert bodies(receive(http, queue)) == ["low-head"]


def test_a_delayed_group_head_holds_its_group_back(http: httpx.Client, queue: str) -> None:
    """A group's members wait for their head: while the head is delayed nothing of the group
    is delivered, then the head and the member behind it come in order."""
    publish(http, queue, "g0", group_id="g", delay_s=1)
    publish(http, queue, "g1", group_id="g")
    assert receive(http, queue, max_messages=10) == []
    assert bodies(receive_within(http, queue, max_messages=10)) == ["g0", "g1"]


def test_expired_leases_of_a_whole_batch_come_back_in_order(http: httpx.Client, queue: str) -> None:
    """When every in-flight member of a group loses its lease, the group is redelivered from
    its head in publish order."""
    publish_batch(http, queue, [{"body": f"g{i}", "group_id": "g"} for i in range(3)])
    assert bodies(receive(http, queue, max_messages=2, visibility_timeout_s=1)) == ["g0", "g1"]
    back = receive_within(http, queue, max_messages=10)
    assert bodies(back) == ["g0", "g1", "g2"]
    assert [m["receive_count"] for m in back] == [2, 2, 1]
