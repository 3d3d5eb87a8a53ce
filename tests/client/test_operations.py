"""Every operation of the client against a real broker, on both stores: what it sends is what
the contract asks, and what comes back is typed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cairn_client import (
    AsyncClient,
    AsyncDelivery,
    Client,
    Conflict,
    Delivery,
    Invalid,
    Message,
    NotFound,
    Published,
    Purged,
    Queue,
    Redriven,
    RedrivePreview,
)

from tests.api.conftest import Server
from tests.client.conftest import new_queue


def test_queues_are_created_read_updated_listed_deleted_and_restored(client: Client) -> None:
    name = f"q-{uuid.uuid4().hex[:12]}"
    created = client.create_queue(name, visibility_timeout_s=45, max_message_bytes=2048)
    assert isinstance(created, Queue)
    assert (created.name, created.visibility_timeout_s, created.max_message_bytes) == (
        name,
        45,
        2048,
    )
    assert created.stats.available == 0 and created.position > 0
    with pytest.raises(Conflict) as taken:
        client.create_queue(name)
    assert taken.value.status == 409 and taken.value.problem.status == 409

    updated = client.update_queue(name, delay_s=5, tags={"team": "billing"})
    assert (updated.delay_s, updated.tags, updated.visibility_timeout_s) == (
        5,
        {"team": "billing"},
        45,
    )
    assert client.get_queue(name, min_position=updated.position).delay_s == 5
    assert client.get_queue(name, as_of=created.position).delay_s == 0  # the past
    assert name in [q.name for q in client.list_queues()]
    assert [q.name for q in client.list_queues(prefix=name)] == [name]

    deleted_at = client.delete_queue(name)
    assert deleted_at is not None and deleted_at > updated.position
    with pytest.raises(NotFound):
        client.get_queue(name)
    assert name not in [q.name for q in client.list_queues(min_position=deleted_at)]
    assert client.restore_queue(name).delay_s == 5
    assert client.get_queue(name).name == name


def test_invalid_values_are_invalid_naming_the_field(client: Client, queue: str) -> None:
    with pytest.raises(Invalid) as refused:
        client.update_queue(queue, visibility_timeout_s=-1)
    assert refused.value.status == 422
    assert [e.field for e in refused.value.problem.errors] == ["body.visibility_timeout_s"]
    with pytest.raises(NotFound):
        client.publish("no-such-queue", 1)


def test_publish_receive_ack_and_read_your_write(client: Client, queue: str) -> None:
    published = client.publish(
        queue, {"order": 42}, attributes={"source": "web"}, priority=9, group_id="customer-7"
    )
    assert isinstance(published, Published) and not published.duplicate
    again = client.publish(queue, {"order": 43}, dedup_id="d-1")
    assert client.publish(queue, {"order": 43}, dedup_id="d-1") == Published(
        id=again.id, position=again.position, duplicate=True
    )
    deliveries = client.receive(queue, max_messages=10, wait_s=1)
    assert all(isinstance(d, Delivery) for d in deliveries)
    first = deliveries[0]  # the higher priority comes first
    assert (first.id, first.body, first.attributes) == (
        published.id,
        {"order": 42},
        {"source": "web"},
    )
    assert (first.priority, first.group_id, first.receive_count, first.queue) == (
        9,
        "customer-7",
        1,
        queue,
    )
    acked_at = first.ack()
    assert first.settled and acked_at is not None
    message = client.get_message(queue, published.id, min_position=acked_at)
    assert isinstance(message, Message) and message.status == "acked"
    assert [h.type for h in message.history] == [
        "message.published",
        "message.leased",
        "message.acked",
    ]
    assert client.find_message(published.id, min_position=acked_at).queue == queue
    assert client.get_message(queue, published.id, as_of=published.position).status == "available"


def test_nack_extend_and_batch_ack(client: Client, queue: str) -> None:
    client.publish_batch(queue, [{"body": n} for n in range(3)])
    one, two, three = client.receive(queue, max_messages=3, wait_s=1)
    later = one.extend(120)
    assert later > datetime.now(UTC) + timedelta(seconds=100)
    nacked_at = one.nack(reason="try later", delay_s=0)
    results = client.ack_batch(queue, [two, three])
    assert [r.status for r in results] == [204, 204] and two.settled and three.settled
    again = client.receive(queue, wait_s=1)
    assert [(d.id, d.receive_count) for d in again] == [(one.id, 2)]
    nacked = client.get_message(queue, one.id, min_position=nacked_at)
    assert any(
        h.data.get("reason") == "try later" for h in nacked.history if h.type == "message.nacked"
    )
    assert client.ack(queue, again[0].id, again[0].receipt) is not None
    with pytest.raises(Conflict):
        client.ack(queue, one.id, one.receipt)  # its lease was lost to the second receive


def test_listings_follow_every_page(client: Client, queue: str) -> None:
    published = client.publish_batch(queue, [{"body": n} for n in range(7)])
    listed = list(client.list_messages(queue, page_size=2, min_position=published[-1].position))
    assert [m.id for m in listed] == [p.id for p in published]
    assert [m.body for m in listed] == list(range(7))
    assert list(client.list_messages(queue, status="acked")) == []
    page = client.events(after=published[0].position - 1, limit=3, queue=queue)
    assert [e.position for e in page.events] == [p.position for p in published[:3]]
    assert page.next_after == published[2].position
    types = client.events(after=0, queue=queue, types=["queue.*"]).events
    assert [e.type for e in types] == ["queue.created"]


def test_purge_undo_redrive_and_analytics(client: Client) -> None:
    dlq = new_queue(client)
    queue = f"q-{uuid.uuid4().hex[:12]}"
    client.create_queue(queue, max_receive_count=1, dead_letter_queue=dlq)
    client.publish_batch(queue, [{"body": n, "attributes": {"n": str(n)}} for n in range(3)])
    purged = client.purge(queue)
    assert isinstance(purged, Purged) and purged.purged == 3
    undone = client.undo_purge(queue, purged.purge_id)
    assert (undone.restored, undone.skipped) == (3, 0)
    for delivery in client.receive(queue, max_messages=3, wait_s=1):
        delivery.nack(reason="timeout calling payments")
    client.receive(queue, max_messages=3, wait_s=0)  # the 2nd receive dead-letters them
    preview = client.redrive(dlq, where={"attributes": {"n": "1"}}, dry_run=True)
    assert isinstance(preview, RedrivePreview) and preview.would_move == 1
    moved = client.redrive(dlq, to=queue, max_messages=10)
    assert isinstance(moved, Redriven) and moved.moved == 3
    analytics = client.analytics(queue, bucket_s=10)
    assert analytics.queue == queue and analytics.bucket_s == 10
    assert sum(b.published for b in analytics.buckets) >= 3


async def test_the_async_client_has_the_same_operations(server: Server) -> None:
    async with AsyncClient(server.url, retries=2) as client:
        name = f"q-{uuid.uuid4().hex[:12]}"
        await client.create_queue(name)
        published = await client.publish(name, {"order": 1})
        [delivery] = await client.receive(name, wait_s=1)
        assert isinstance(delivery, AsyncDelivery) and delivery.id == published.id
        await delivery.extend(60)
        acked_at = await delivery.ack()
        assert delivery.settled
        message = await client.get_message(name, published.id, min_position=acked_at)
        assert message.status == "acked"
        listed = [m.id async for m in client.list_messages(name, page_size=1)]
        assert listed == [published.id]
        assert name in [q.name for q in await client.list_queues()]
        page = await client.events(after=published.position - 1, limit=1)
        assert page.events[0].message_id == published.id
        with pytest.raises(NotFound):
            await client.get_queue("no-such-queue")
