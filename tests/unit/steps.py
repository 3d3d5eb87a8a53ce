"""Commands as the decision tests write them: a new message, and publish, receive and ack
through the in-process broker, each checking the reply's type."""

from __future__ import annotations

import msgspec

from broker.commands import AckEntry, AckMessages, NewMessage, PublishMessages, ReceiveMessages
from broker.decide import AckReply, Delivery, PublishReply, ReceiveReply
from tests.conftest import Broker
from tests.helpers import Counter

_ids = Counter("msg")


def new(
    body: object = None,
    *,
    priority: int | None = None,
    group: str | None = None,
    delay_s: int | None = None,
    attributes: dict[str, str] | None = None,
) -> NewMessage:
    extra: dict[str, object] = {} if priority is None else {"priority": priority}
    return NewMessage(
        message_id=_ids(),
        body=msgspec.Raw(msgspec.json.encode(body)),
        attributes=attributes or {},
        delay_s=delay_s,
        group_id=group,
        **extra,  # type: ignore[arg-type]
    )


async def publish(broker: Broker, queue: str, *messages: NewMessage) -> list[str]:
    reply = await broker.run(PublishMessages(queue=queue, messages=messages))
    assert isinstance(reply, PublishReply)
    return [r.id for r in reply.results]


async def receive(broker: Broker, queue: str, n: int = 1, vt: int | None = None) -> list[Delivery]:
    reply = await broker.run(ReceiveMessages(queue=queue, max_messages=n, visibility_timeout_s=vt))
    assert isinstance(reply, ReceiveReply)
    return reply.messages


async def ack(broker: Broker, queue: str, *deliveries: Delivery) -> list[str]:
    reply = await broker.run(
        AckMessages(
            queue=queue,
            entries=tuple(AckEntry(message_id=d.id, receipt=d.receipt) for d in deliveries),
        )
    )
    assert isinstance(reply, AckReply)
    return [outcome for _, outcome in reply.results]
