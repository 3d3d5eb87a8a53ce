"""Idempotency keys on the write side (API.md "Idempotency keys"; ``broker/idempotency.py``):
a command sent again under the same key is answered from the first run, not run again."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from broker.commands import (
    CreateQueue,
    NewMessage,
    PublishMessages,
    QueueSettings,
    Sweep,
    UpdateQueue,
)
from broker.decide import Context, PublishReply, QueueReply
from broker.errors import IdempotencyKeyReusedError, QueueNotFoundError
from broker.idempotency import (
    KEPT_FOR_S,
    Claim,
    Recall,
    RecordAnswer,
    Replay,
    fingerprint,
    reply_of,
)
from broker.writer import apply_batch
from tests.conftest import Broker
from tests.helpers import Counter

_ids = Counter("idem")
PATH = "/v1/queues/q/messages"


def publish_command(body: object = "x", queue: str = "q") -> PublishMessages:
    return PublishMessages(
        queue=queue,
        messages=(NewMessage(message_id=_ids(), body=msgspec.Raw(msgspec.json.encode(body))),),
    )


def claim(key: str = "k-1", body: bytes = b'{"body":"x"}', subject: str = "alice") -> Claim:
    return Claim(subject=subject, key=key, fingerprint=fingerprint("POST", PATH, body))


def published(reply: object) -> PublishReply:
    assert isinstance(reply, PublishReply)
    return reply


async def count(broker: Broker, type_: str) -> int:
    return (await broker.types()).count(type_)


# --- the writer -------------------------------------------------------------------------------


async def test_a_repeat_is_a_replay_of_the_first_reply_and_appends_nothing(
    broker: Broker,
) -> None:
    await broker.create("q")
    first = published(await broker.writer.execute(publish_command(), claim()))
    before = await broker.types()
    again = await broker.writer.execute(publish_command(), claim())  # a new message id, even
    assert isinstance(again, Replay)
    assert reply_of(again.record) == first
    assert again.record.reply_kind == "PublishReply"
    assert await broker.types() == before


async def test_a_repeat_in_the_same_batch_is_a_replay_too(broker: Broker) -> None:
    await broker.create("q")
    commands = [publish_command(), publish_command()]
    ctx = Context(now=broker.clock(), new_id=Counter("n"), new_receipt=Counter("r"))
    batch = await broker.store.transact(
        lambda tx: apply_batch(tx, commands, ctx, [claim(), claim()])
    )
    first, second = batch.outcomes
    assert isinstance(first, PublishReply)
    assert isinstance(second, Replay) and reply_of(second.record) == first
    assert await count(broker, "message.published") == 1


async def test_two_concurrent_repeats_run_the_command_once(broker: Broker) -> None:
    await broker.create("q")
    outcomes = await asyncio.gather(
        *(broker.writer.execute(publish_command(), claim()) for _ in range(5))
    )
    replies = [o for o in outcomes if isinstance(o, PublishReply)]
    replays = [o for o in outcomes if isinstance(o, Replay)]
    assert len(replies) == 1 and len(replays) == 4
    assert all(reply_of(r.record) == replies[0] for r in replays)
    assert await count(broker, "message.published") == 1


async def test_the_same_key_with_another_request_is_refused(broker: Broker) -> None:
    await broker.create("q")
    await broker.writer.execute(publish_command(), claim(body=b'{"body":"x"}'))
    before = await broker.types()
    with pytest.raises(IdempotencyKeyReusedError) as refused:
        await broker.writer.execute(publish_command("y"), claim(body=b'{"body":"y"}'))
    assert refused.value.field == "header.Idempotency-Key"
    assert await broker.types() == before


async def test_the_same_key_with_another_request_in_the_same_batch_is_refused(
    broker: Broker,
) -> None:
    await broker.create("q")
    ctx = Context(now=broker.clock(), new_id=Counter("n"), new_receipt=Counter("r"))
    commands = [publish_command("x"), publish_command("y")]
    claims = [claim(body=b'{"body":"x"}'), claim(body=b'{"body":"y"}')]
    batch = await broker.store.transact(lambda tx: apply_batch(tx, commands, ctx, claims))
    assert isinstance(batch.outcomes[0], PublishReply)
    assert isinstance(batch.outcomes[1], IdempotencyKeyReusedError)
    assert await count(broker, "message.published") == 1


async def test_a_refused_command_keeps_no_record_so_its_key_may_run_again(
    broker: Broker,
) -> None:
    with pytest.raises(QueueNotFoundError):
        await broker.writer.execute(publish_command(), claim())
    assert broker.store.idempotency == {}
    await broker.create("q")
    again = await broker.writer.execute(publish_command(), claim())
    assert isinstance(again, PublishReply)
    assert await count(broker, "message.published") == 1


async def test_a_refused_command_keeps_no_record_even_within_one_batch(broker: Broker) -> None:
    ctx = Context(now=broker.clock(), new_id=Counter("n"), new_receipt=Counter("r"))
    create = CreateQueue(queue="q", settings=QueueSettings())
    commands = [publish_command(), create, publish_command()]
    claims = [claim(), None, claim()]
    batch = await broker.store.transact(lambda tx: apply_batch(tx, commands, ctx, claims))
    refused, created, ran = batch.outcomes
    assert isinstance(refused, QueueNotFoundError)
    assert isinstance(created, QueueReply)
    assert isinstance(ran, PublishReply)


async def test_keys_are_per_subject(broker: Broker) -> None:
    await broker.create("q")
    mine = await broker.writer.execute(publish_command(), claim(subject="alice"))
    theirs = await broker.writer.execute(publish_command(), claim(subject="bob"))
    assert isinstance(mine, PublishReply) and isinstance(theirs, PublishReply)
    assert mine.results[0].id != theirs.results[0].id
    assert await count(broker, "message.published") == 2


async def test_different_keys_run_separately(broker: Broker) -> None:
    await broker.create("q")
    await broker.writer.execute(publish_command(), claim(key="k-1"))
    other = await broker.writer.execute(publish_command(), claim(key="k-2"))
    assert isinstance(other, PublishReply)
    assert await count(broker, "message.published") == 2


async def test_a_command_without_a_claim_always_runs(broker: Broker) -> None:
    await broker.create("q")
    for _ in range(2):
        assert isinstance(await broker.writer.execute(publish_command()), PublishReply)
    assert await count(broker, "message.published") == 2
    assert broker.store.idempotency == {}


async def test_a_claim_on_a_command_that_appends_nothing_is_kept_too(broker: Broker) -> None:
    await broker.create("q")
    unchanged = UpdateQueue(queue="q", changes={"delay_s": 0})
    before = await broker.types()
    first = await broker.writer.execute(unchanged, claim(key="u"))
    again = await broker.writer.execute(unchanged, claim(key="u"))
    assert isinstance(first, QueueReply)
    assert isinstance(again, Replay) and reply_of(again.record) == first
    assert await broker.types() == before


async def test_record_answer_then_recall(broker: Broker) -> None:
    await broker.create("q")
    await broker.writer.execute(publish_command(), claim())
    seen = await broker.writer.recall(claim())
    assert isinstance(seen, Replay) and seen.record.answer is None
    answer = b'{"status":201,"headers":{},"body":"{}"}'
    await broker.writer.record_answer(RecordAnswer(subject="alice", key="k-1", answer=answer))
    recalled = await broker.writer.recall(claim())
    assert isinstance(recalled, Replay) and recalled.record.answer == answer
    replay = await broker.writer.execute(publish_command(), claim())
    assert isinstance(replay, Replay) and replay.record.answer == answer


async def test_the_first_recorded_answer_stays(broker: Broker) -> None:
    await broker.create("q")
    await broker.writer.execute(publish_command(), claim())
    await broker.writer.record_answer(RecordAnswer("alice", "k-1", b"first"))
    await broker.writer.record_answer(RecordAnswer("alice", "k-1", b"second"))
    recalled = await broker.writer.recall(claim())
    assert isinstance(recalled, Replay) and recalled.record.answer == b"first"


async def test_recall_of_an_unknown_key_is_none_and_an_answer_for_it_is_not_kept(
    broker: Broker,
) -> None:
    assert await broker.writer.recall(claim(key="never")) is None
    await broker.writer.record_answer(RecordAnswer("alice", "never", b"x"))
    assert await broker.writer.recall(claim(key="never")) is None
    assert broker.store.idempotency == {}


async def test_recall_with_another_request_is_refused(broker: Broker) -> None:
    await broker.create("q")
    await broker.writer.execute(publish_command(), claim(body=b'{"body":"x"}'))
    with pytest.raises(IdempotencyKeyReusedError):
        await broker.writer.recall(claim(body=b'{"body":"other"}'))


async def test_recall_in_a_batch_sees_the_claim_committed_before_it(broker: Broker) -> None:
    await broker.create("q")
    ctx = Context(now=broker.clock(), new_id=Counter("n"), new_receipt=Counter("r"))
    commands = [Recall(claim()), publish_command(), Recall(claim())]
    batch = await broker.store.transact(
        lambda tx: apply_batch(tx, commands, ctx, [None, claim(), None])
    )
    before, ran, after = batch.outcomes
    assert before is None
    assert isinstance(ran, PublishReply)
    assert isinstance(after, Replay) and reply_of(after.record) == ran


async def test_a_key_is_kept_for_24_hours_and_then_swept(broker: Broker) -> None:
    await broker.create("q")
    await broker.writer.execute(publish_command(), claim())
    broker.clock.advance(KEPT_FOR_S - 1)
    await broker.run(Sweep())
    assert isinstance(await broker.writer.execute(publish_command(), claim()), Replay)
    broker.clock.advance(1)
    await broker.run(Sweep())
    assert broker.store.idempotency == {}
    assert isinstance(await broker.writer.execute(publish_command(), claim()), PublishReply)


async def test_a_key_past_its_24_hours_is_not_replayed_even_before_a_sweep(
    broker: Broker,
) -> None:
    """As with dedup ids, the decision itself must not depend on when the sweeper last ran."""
    await broker.create("q")
    await broker.writer.execute(publish_command("x"), claim(body=b'{"body":"x"}'))
    broker.clock.advance(KEPT_FOR_S)
    fresh = await broker.writer.execute(publish_command("y"), claim(body=b'{"body":"y"}'))
    assert isinstance(fresh, PublishReply)


# --- the fingerprint ------------------------------------------------------------------------


def test_the_fingerprint_ignores_key_order_and_whitespace() -> None:
    compact = b'{"body":{"a":1,"b":[1,2,{"x":null,"y":true}]},"attributes":{"k":"v"}}'
    spread = (
        b' {\n  "attributes" : { "k" : "v" },\t'
        b'"body": {"b": [1, 2, {"y": true, "x": null}],\r\n "a": 1}}  '
    )
    assert fingerprint("POST", PATH, compact) == fingerprint("POST", PATH, spread)


def test_the_fingerprint_compares_strings_as_parsed() -> None:
    assert fingerprint("POST", PATH, b'{"body":"\\u00e9"}') == fingerprint(
        "POST", PATH, '{"body":"\u00e9"}'.encode()
    )


def test_an_empty_body_and_a_blank_one_are_the_same() -> None:
    assert fingerprint("DELETE", "/v1/queues/q", b"") == fingerprint(
        "DELETE", "/v1/queues/q", b"  \n"
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", PATH, b'{"body":"x"}'),
        ("post", PATH, b'{"body":"x"}'),
        ("POST", "/v1/queues/r/messages", b'{"body":"x"}'),
        ("POST", "/v1/queues/Q/messages", b'{"body":"x"}'),
        ("POST", PATH, b'{"body":"y"}'),
        ("POST", PATH, b'{"body":["x"]}'),
        ("POST", PATH, b'{"body":"x","delay_s":0}'),
        ("POST", PATH, b""),
    ],
)
def test_the_fingerprint_tells_method_path_and_body_apart(
    method: str, path: str, body: bytes
) -> None:
    assert fingerprint(method, path, body) != fingerprint("POST", PATH, b'{"body":"x"}')


def test_the_fingerprint_keeps_array_order() -> None:
    assert fingerprint("POST", PATH, b'{"body":[1,2]}') != fingerprint(
        "POST", PATH, b'{"body":[2,1]}'
    )
