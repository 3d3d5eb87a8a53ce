"""Undoing mistakes (API.md "History: as-of reads, undo, restore"): undo a purge, restore a
deleted queue, and redrive only what a filter names (or only say what would move)."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest

from broker.commands import (
    DeleteQueue,
    NackMessage,
    NewMessage,
    PurgeQueue,
    RedriveFilter,
    RedriveMessages,
    RestoreQueue,
    Sweep,
    UndoPurge,
)
from broker.decide import (
    DryRunReply,
    PurgeReply,
    QueueReply,
    RedriveReply,
    UndoReply,
)
from broker.errors import PurgeNotFoundError, QueueExistsError, QueueNotFoundError
from broker.events import MessageDeadLettered, MessageExpired, MessageRestored
from broker.state import to_us
from tests.conftest import Broker
from tests.helpers import START
from tests.unit.steps import ack, new, publish, receive


async def purge(broker: Broker, queue: str) -> PurgeReply:
    reply = await broker.run(PurgeQueue(queue=queue))
    assert isinstance(reply, PurgeReply)
    return reply


async def undo(broker: Broker, queue: str, purge_id: int) -> UndoReply:
    reply = await broker.run(UndoPurge(queue=queue, purge=purge_id))
    assert isinstance(reply, UndoReply)
    return reply


async def head(broker: Broker) -> int:
    return await broker.store.head()


async def status(broker: Broker, message_id: str) -> str:
    state = await broker.message(message_id)
    assert state is not None
    return state.status


# --- undo a purge ---------------------------------------------------------------------------


async def test_undo_restores_every_message_the_purge_removed(broker: Broker) -> None:
    await broker.create("q")
    a, b = await publish(broker, "q", new("a"), new("b"))
    [delayed] = await publish(broker, "q", new("c", delay_s=600))
    await receive(broker, "q")  # a is in flight when the purge comes
    purged = await purge(broker, "q")
    assert purged.purged == 3
    broker.clock.advance(10)
    reply = await undo(broker, "q", purged.position)
    assert (reply.restored, reply.skipped) == (3, 0)
    assert reply.position == await head(broker)
    types = await broker.types()
    assert types[-4:] == ["queue.purge_undone", *["message.restored"] * 3]
    restored = [e for e in await broker.events() if isinstance(e, MessageRestored)]
    assert sorted(e.message_id for e in restored) == sorted([a, b, delayed])
    assert {e.purge for e in restored} == {purged.position}
    # "available again": the delay and the lease the purge cut short are over
    assert sorted(d.id for d in await receive(broker, "q", 10)) == sorted([a, b, delayed])


async def test_restored_messages_keep_published_at_attributes_priority_and_group(
    broker: Broker,
) -> None:
    await broker.create("q")
    [grouped] = await publish(
        broker, "q", new({"x": 1}, priority=8, group="g", attributes={"k": "v"})
    )
    broker.clock.advance(5)
    [plain] = await publish(broker, "q", new("p", priority=1))
    purged = await purge(broker, "q")
    broker.clock.advance(100)
    await undo(broker, "q", purged.position)
    got = {d.id: d for d in await receive(broker, "q", 10)}
    assert got[grouped].published_at == START
    assert got[plain].published_at == START + timedelta(seconds=5)
    assert (got[grouped].attributes, got[grouped].priority, got[grouped].group_id) == (
        {"k": "v"},
        8,
        "g",
    )
    assert (got[plain].priority, got[plain].group_id) == (1, None)
    assert bytes(got[grouped].body) == b'{"x":1}'
    state = await broker.message(grouped)
    assert state is not None and state.published_at == to_us(START)


async def test_undo_skips_messages_whose_retention_has_passed(broker: Broker) -> None:
    await broker.create("q", retention_s=60)
    [old] = await publish(broker, "q", new("old"))
    broker.clock.advance(40)
    [young] = await publish(broker, "q", new("young"))
    purged = await purge(broker, "q")
    broker.clock.advance(30)  # old is 70 s old, young 30 s
    reply = await undo(broker, "q", purged.position)
    assert (reply.restored, reply.skipped) == (1, 1)
    assert await status(broker, old) == "purged"
    assert [d.id for d in await receive(broker, "q", 10)] == [young]
    restored = [e.message_id for e in await broker.events() if isinstance(e, MessageRestored)]
    assert restored == [young]


async def test_a_second_undo_restores_nothing_and_appends_nothing(broker: Broker) -> None:
    await broker.create("q")
    await publish(broker, "q", new(), new())
    purged = await purge(broker, "q")
    first = await undo(broker, "q", purged.position)
    assert first.restored == 2
    before = await broker.types()
    again = await undo(broker, "q", purged.position)
    assert (again.restored, again.skipped) == (0, 0)
    assert again.position == await head(broker)
    assert await broker.types() == before


async def test_an_undo_after_the_messages_were_received_again_does_not_duplicate(
    broker: Broker,
) -> None:
    await broker.create("q")
    await publish(broker, "q", new())
    purged = await purge(broker, "q")
    await undo(broker, "q", purged.position)
    got = await receive(broker, "q")
    assert await ack(broker, "q", *got) == ["acked"]
    assert (await undo(broker, "q", purged.position)).restored == 0
    assert await receive(broker, "q", 10) == []


async def test_an_unknown_purge_is_not_found_and_appends_nothing(broker: Broker) -> None:
    await broker.create("q")
    await broker.create("other")
    await publish(broker, "q", new())
    purged_other = await purge(broker, "other")
    before = await broker.types()
    for purge_id in (999, 1, purged_other.position):  # never, a queue.created, another queue's
        with pytest.raises(PurgeNotFoundError):
            await broker.run(UndoPurge(queue="q", purge=purge_id))
    with pytest.raises(QueueNotFoundError):
        await broker.run(UndoPurge(queue="missing", purge=purged_other.position))
    assert await broker.types() == before


async def test_undo_undoes_only_its_own_purge(broker: Broker) -> None:
    await broker.create("q")
    [first] = await publish(broker, "q", new())
    one = await purge(broker, "q")
    [second] = await publish(broker, "q", new())
    two = await purge(broker, "q")
    assert (await undo(broker, "q", two.position)).restored == 1
    assert await status(broker, first) == "purged"
    assert [d.id for d in await receive(broker, "q", 10)] == [second]
    assert (await undo(broker, "q", one.position)).restored == 1
    assert [d.id for d in await receive(broker, "q", 10)] == [first]


async def test_a_restored_group_goes_before_what_was_published_into_it_since(
    broker: Broker,
) -> None:
    await broker.create("q")
    a, b = await publish(broker, "q", new(group="g"), new(group="g"))
    purged = await purge(broker, "q")
    [c] = await publish(broker, "q", new(group="g"))
    await undo(broker, "q", purged.position)
    assert [d.id for d in await receive(broker, "q", 10)] == [a, b, c]


async def test_a_restored_group_waits_while_a_newer_member_is_in_flight(broker: Broker) -> None:
    await broker.create("q")
    a, b = await publish(broker, "q", new(group="g"), new(group="g"))
    purged = await purge(broker, "q")
    await publish(broker, "q", new(group="g"))
    newer = await receive(broker, "q")
    await undo(broker, "q", purged.position)
    assert await receive(broker, "q", 10) == []  # the group is in flight
    await ack(broker, "q", *newer)
    assert [d.id for d in await receive(broker, "q", 10)] == [a, b]


# --- restore a deleted queue ----------------------------------------------------------------


async def test_restore_brings_a_deleted_queue_back_with_its_settings_and_messages(
    broker: Broker,
) -> None:
    await broker.create("dlq")
    await broker.create(
        "q", visibility_timeout_s=7, retention_s=3600, max_receive_count=3, dead_letter_queue="dlq"
    )
    before = await broker.store.transact(lambda tx: tx.queue("q"))
    a, b = await publish(broker, "q", new("a"), new("b", priority=9, group="g"))
    [c] = await publish(broker, "q", new("c", group="g"))
    [held] = await receive(broker, "q")  # b (priority 9), and its group with it, is in flight
    assert held.id == b
    await broker.run(DeleteQueue(queue="q"))
    reply = await broker.run(RestoreQueue(queue="q"))
    assert isinstance(reply, QueueReply) and reply.name == "q"
    assert reply.position == await head(broker)
    assert (await broker.types())[-1] == "queue.restored"
    after = await broker.store.transact(lambda tx: tx.queue("q"))
    assert after is not None and before is not None
    assert msgspec.structs.replace(after, updated_at=before.updated_at) == before
    assert [d.id for d in await receive(broker, "q", 10)] == [a]  # the group is still in flight
    assert await ack(broker, "q", held) == ["acked"]  # the lease survived
    assert [d.id for d in await receive(broker, "q", 10)] == [c]


async def test_restore_refuses_while_a_live_queue_has_the_name(broker: Broker) -> None:
    await broker.create("q")
    await broker.run(DeleteQueue(queue="q"))
    await broker.create("q")
    before = await broker.types()
    with pytest.raises(QueueExistsError):
        await broker.run(RestoreQueue(queue="q"))
    assert await broker.types() == before


async def test_restore_of_a_name_never_deleted_is_not_found(broker: Broker) -> None:
    with pytest.raises(QueueNotFoundError):
        await broker.run(RestoreQueue(queue="never"))
    await broker.create("live")
    with pytest.raises(QueueExistsError):
        await broker.run(RestoreQueue(queue="live"))
    assert await broker.types() == ["queue.created"]


async def test_a_restored_queue_cannot_be_restored_twice(broker: Broker) -> None:
    await broker.create("q")
    await broker.run(DeleteQueue(queue="q"))
    await broker.run(RestoreQueue(queue="q"))
    with pytest.raises(QueueExistsError):
        await broker.run(RestoreQueue(queue="q"))


async def test_restore_expires_messages_whose_retention_passed_while_deleted(
    broker: Broker,
) -> None:
    await broker.create("q", retention_s=60)
    [old] = await publish(broker, "q", new("old", group="g"))
    broker.clock.advance(40)
    [young] = await publish(broker, "q", new("young", group="g"))
    await broker.run(DeleteQueue(queue="q"))
    broker.clock.advance(30)
    await broker.run(RestoreQueue(queue="q"))
    expired = [e.message_id for e in await broker.events() if isinstance(e, MessageExpired)]
    assert expired == [old]
    assert await status(broker, old) == "expired"
    assert [d.id for d in await receive(broker, "q", 10)] == [young]


async def test_restore_brings_back_the_most_recently_deleted_queue_of_the_name(
    broker: Broker,
) -> None:
    await broker.create("q")
    await publish(broker, "q", new("first life"))
    await broker.run(DeleteQueue(queue="q"))
    await broker.create("q", visibility_timeout_s=9)
    await publish(broker, "q", new("second life"))
    await broker.run(DeleteQueue(queue="q"))
    await broker.run(RestoreQueue(queue="q"))
    assert [bytes(d.body) for d in await receive(broker, "q", 10)] == [b'"second life"']
    queue = await broker.store.transact(lambda tx: tx.queue("q"))
    assert queue is not None and queue.visibility_timeout_s == 9


async def test_a_restored_queue_keeps_its_purges_undoable(broker: Broker) -> None:
    await broker.create("q")
    [mid] = await publish(broker, "q", new())
    purged = await purge(broker, "q")
    await broker.run(DeleteQueue(queue="q"))
    await broker.run(RestoreQueue(queue="q"))
    assert (await undo(broker, "q", purged.position)).restored == 1
    assert [d.id for d in await receive(broker, "q")] == [mid]


# --- redrive with filters, and dry runs -----------------------------------------------------


async def dead_letter(broker: Broker, source: str, *messages: NewMessage) -> list[str]:
    """Publish into ``source`` (max_receive_count 1, lease 1 s), let every lease expire: the
    dead-letter queue's copies, in order."""
    await publish(broker, source, *messages)
    await receive(broker, source, 100, vt=1)
    broker.clock.advance(1)
    await broker.run(Sweep())
    moved = [
        e.dead_letter_message_id
        for e in await broker.events()
        if isinstance(e, MessageDeadLettered) and e.queue == source
    ]
    return moved[-len(messages) :]


async def dlq_setup(broker: Broker) -> None:
    await broker.create("dlq")
    for source in ("a", "b"):
        await broker.create(source, max_receive_count=1, dead_letter_queue="dlq")


async def redrive(broker: Broker, queue: str, **kwargs: object) -> RedriveReply:
    reply = await broker.run(RedriveMessages(queue=queue, **kwargs))  # type: ignore[arg-type]
    assert isinstance(reply, RedriveReply)
    return reply


async def dry_run(broker: Broker, queue: str, **kwargs: object) -> DryRunReply:
    reply = await broker.run(
        RedriveMessages(queue=queue, dry_run=True, **kwargs)  # type: ignore[arg-type]
    )
    assert isinstance(reply, DryRunReply)
    return reply


async def test_redrive_where_attributes_moves_only_exact_matches(broker: Broker) -> None:
    await dlq_setup(broker)
    one, two, one_more = await dead_letter(
        broker,
        "a",
        new(attributes={"k": "1"}),
        new(attributes={"k": "2"}),
        new(attributes={"k": "1", "z": "y"}),
    )
    await dead_letter(broker, "a", new())  # no attributes at all
    reply = await redrive(broker, "dlq", where=RedriveFilter(attributes={"k": "1"}))
    assert reply.moved == 2
    assert await status(broker, one) == "redriven" and await status(broker, one_more) == "redriven"
    assert await status(broker, two) == "ready"
    back = await receive(broker, "a", 10)
    assert sorted(tuple(sorted(d.attributes.items())) for d in back) == [
        (("k", "1"),),
        (("k", "1"), ("z", "y")),
    ]


async def test_redrive_where_several_attributes_needs_all_of_them(broker: Broker) -> None:
    await dlq_setup(broker)
    await dead_letter(broker, "a", new(attributes={"k": "1"}), new(attributes={"k": "1", "z": "y"}))
    reply = await dry_run(broker, "dlq", where=RedriveFilter(attributes={"k": "1", "z": "y"}))
    assert reply.would_move == 1


async def test_redrive_where_reason_matches_a_substring_of_the_last_nack_reason(
    broker: Broker,
) -> None:
    await broker.create("src")
    await broker.create("dst")
    timeout, bad, silent = await publish(broker, "src", new(), new(), new())
    got = {d.id: d for d in await receive(broker, "src", 10)}
    for mid, reason in ((timeout, "timeout talking to db"), (bad, "bad input"), (silent, None)):
        await broker.run(
            NackMessage(queue="src", message_id=mid, receipt=got[mid].receipt, reason=reason)
        )
    reply = await redrive(broker, "src", to="dst", where=RedriveFilter(reason="talking"))
    assert reply.moved == 1
    assert await status(broker, timeout) == "redriven"
    assert await status(broker, bad) == "ready" and await status(broker, silent) == "ready"
    assert (await dry_run(broker, "src", to="dst", where=RedriveFilter(reason="TIMEOUT"))) == (
        DryRunReply(0, [])
    )


async def test_redrive_where_reason_matches_the_dead_letter_cause(broker: Broker) -> None:
    await dlq_setup(broker)
    [expired_copy] = await dead_letter(broker, "a", new())
    reply = await dry_run(broker, "dlq", where=RedriveFilter(reason="expired"))
    assert (reply.would_move, reply.sample) == (1, [expired_copy])


async def test_redrive_where_reason_matches_the_nack_reason_of_a_dead_letter_copy(
    broker: Broker,
) -> None:
    await dlq_setup(broker)
    await publish(broker, "a", new())
    [held] = await receive(broker, "a")
    await broker.run(
        NackMessage(queue="a", message_id=held.id, receipt=held.receipt, reason="poison pill")
    )
    reply = await dry_run(broker, "dlq", where=RedriveFilter(reason="poison"))
    assert reply.would_move == 1


async def test_redrive_where_published_after_and_before(broker: Broker) -> None:
    await broker.create("src")
    await broker.create("dst")
    [m0] = await publish(broker, "src", new())
    broker.clock.advance(10)
    [m10] = await publish(broker, "src", new())
    broker.clock.advance(10)
    [m20] = await publish(broker, "src", new())
    t5, t15 = START + timedelta(seconds=5), START + timedelta(seconds=15)
    after = await dry_run(broker, "src", to="dst", where=RedriveFilter(published_after=t5))
    assert (after.would_move, after.sample) == (2, [m10, m20])
    before = await dry_run(broker, "src", to="dst", where=RedriveFilter(published_before=t15))
    assert (before.would_move, before.sample) == (2, [m0, m10])
    both = RedriveFilter(published_after=t5, published_before=t15)
    assert (await redrive(broker, "src", to="dst", where=both)).moved == 1
    assert await status(broker, m10) == "redriven"
    assert [await status(broker, m) for m in (m0, m20)] == ["ready", "ready"]


async def test_redrive_where_source_queue_moves_only_that_queues_dead_letters(
    broker: Broker,
) -> None:
    await dlq_setup(broker)
    [from_a] = await dead_letter(broker, "a", new("from a"))
    [from_b] = await dead_letter(broker, "b", new("from b"))
    reply = await redrive(broker, "dlq", where=RedriveFilter(source_queue="b"))
    assert reply.moved == 1
    assert await status(broker, from_b) == "redriven" and await status(broker, from_a) == "ready"
    assert [bytes(d.body) for d in await receive(broker, "b", 10)] == [b'"from b"']
    assert await receive(broker, "a", 10) == []


async def test_redrive_where_conditions_combine_and_each_must_hold(broker: Broker) -> None:
    await dlq_setup(broker)
    [a_old] = await dead_letter(broker, "a", new(attributes={"k": "v"}))
    broker.clock.advance(60)
    [a_new_k, _a_new_other] = await dead_letter(
        broker, "a", new(attributes={"k": "v"}), new(attributes={"k": "w"})
    )
    [_b_new_k] = await dead_letter(broker, "b", new(attributes={"k": "v"}))
    where = RedriveFilter(
        attributes={"k": "v"},
        source_queue="a",
        published_after=START + timedelta(seconds=30),
        reason="expired",
    )
    reply = await dry_run(broker, "dlq", where=where)
    assert (reply.would_move, reply.sample) == (1, [a_new_k])
    assert (await redrive(broker, "dlq", where=where)).moved == 1
    assert await status(broker, a_new_k) == "redriven"
    assert await status(broker, a_old) == "ready"


async def test_a_redrive_that_matches_nothing_appends_nothing(broker: Broker) -> None:
    await dlq_setup(broker)
    await dead_letter(broker, "a", new())
    before = await broker.types()
    reply = await redrive(broker, "dlq", where=RedriveFilter(attributes={"k": "nope"}))
    assert reply.moved == 0
    assert reply.position == await head(broker)
    assert await broker.types() == before


async def test_a_dry_run_appends_nothing_and_samples_at_most_ten_ids(broker: Broker) -> None:
    await dlq_setup(broker)
    copies = await dead_letter(broker, "a", *(new(i) for i in range(15)))
    before = await broker.types()
    reply = await dry_run(broker, "dlq")
    assert reply.would_move == 15
    assert reply.sample == copies[:10]
    assert await broker.types() == before
    assert [await status(broker, c) for c in copies] == ["ready"] * 15
    capped = await dry_run(broker, "dlq", max=3)
    assert (capped.would_move, capped.sample) == (3, copies[:3])
    few = await dry_run(broker, "dlq", where=RedriveFilter(attributes={"none": "x"}))
    assert (few.would_move, few.sample) == (0, [])
    assert await broker.types() == before
    assert (await redrive(broker, "dlq")).moved == reply.would_move


async def test_a_dry_run_says_what_the_real_redrive_then_moves(broker: Broker) -> None:
    await dlq_setup(broker)
    await dead_letter(broker, "a", new(attributes={"k": "1"}), new(attributes={"k": "2"}))
    await dead_letter(broker, "b", new(attributes={"k": "1"}))
    where = RedriveFilter(attributes={"k": "1"})
    said = await dry_run(broker, "dlq", where=where)
    done = await redrive(broker, "dlq", where=where)
    assert said.would_move == done.moved == 2
    assert [await status(broker, m) for m in said.sample] == ["redriven", "redriven"]


async def test_redrive_keeps_priority_and_group_and_moves_a_whole_group_in_order(
    broker: Broker,
) -> None:
    await dlq_setup(broker)
    await dead_letter(
        broker, "a", new("first", priority=7, group="g"), new("second", priority=2, group="g")
    )
    assert (await redrive(broker, "dlq")).moved == 2  # the group's waiting member too
    back = await receive(broker, "a", 10)
    assert [(bytes(d.body), d.priority, d.group_id) for d in back] == [
        (b'"first"', 7, "g"),
        (b'"second"', 2, "g"),
    ]
    assert all("source_queue" not in d.attributes for d in back)
