"""The message read model: each message's status, counters and timing, for dashboards and the
message endpoints. Bodies are not copied here: they stay in the log, at ``position``."""

from __future__ import annotations

from typing import Annotated, Final, TypeAlias, assert_never

import msgspec
from msgspec import Meta

from broker.events import (
    MessageAcked,
    MessageDeadLettered,
    MessageExpired,
    MessageLeased,
    MessageLeaseExpired,
    MessageLeaseExtended,
    MessageNacked,
    MessagePublished,
    MessageRedriven,
    MessageRestored,
)
from broker.state import Id, Int32, Name, to_us
from broker.store.tables import Table

LIVE: Final = ("ready", "leased")


class MessageViewRow(msgspec.Struct):
    message_id: Id
    queue_id: int
    queue: Name
    status: Annotated[str, Meta(max_length=16)]
    attributes: str
    """JSON object, stored as text."""
    receive_count: Int32
    published_at: int
    visible_at: int
    position: int
    updated_position: int
    purged_position: int | None = None
    priority: Int32 = 4
    group_id: Annotated[str, Meta(max_length=128)] | None = None


MESSAGE_VIEWS: Final = Table(
    "message_views",
    MessageViewRow,
    key=("message_id",),
    indexes=(
        ("queue_id", "status", "visible_at"),
        ("queue_id", "position"),
        ("queue_id", "status", "position"),
        ("status", "updated_position"),  # history retention: finished longest ago first
    ),
)


def new_message_row(event: MessagePublished, queue_id: int, position: int) -> MessageViewRow:
    at = to_us(event.at)
    return MessageViewRow(
        message_id=event.message_id,
        queue_id=queue_id,
        queue=event.queue,
        status="ready",
        attributes=msgspec.json.encode(event.attributes).decode(),
        receive_count=0,
        published_at=at,
        visible_at=at + event.delay_s * 1_000_000,
        position=position,
        updated_position=position,
        priority=event.priority,
        group_id=event.group_id,
    )


TRANSITIONS: Final = (
    MessageRestored,
    MessageLeased,
    MessageAcked,
    MessageNacked,
    MessageLeaseExtended,
    MessageLeaseExpired,
    MessageDeadLettered,
    MessageExpired,
    MessageRedriven,
)
"""The events that change a message already published (what the projector loads rows for)."""

Transition: TypeAlias = (
    MessageRestored
    | MessageLeased
    | MessageAcked
    | MessageNacked
    | MessageLeaseExtended
    | MessageLeaseExpired
    | MessageDeadLettered
    | MessageExpired
    | MessageRedriven
)


def apply_message_event(row: MessageViewRow, event: Transition, position: int) -> None:
    """Fold one event (other than ``message.published``) into the message's row."""
    row.updated_position = position
    match event:
        case MessageLeased():
            row.status = "leased"
            row.receive_count = event.receive_count
            row.visible_at = to_us(event.visible_at)
        case MessageAcked():
            row.status = "acked"
        case MessageNacked():
            row.status = "ready"
            row.visible_at = to_us(event.visible_at)
        case MessageLeaseExtended():
            row.visible_at = to_us(event.visible_at)
        case MessageLeaseExpired():
            row.status = "ready"
            row.visible_at = to_us(event.at)
        case MessageDeadLettered():
            row.status = "dead_lettered"
        case MessageExpired():
            row.status = "expired"
        case MessageRedriven():
            row.status = "redriven"
        case MessageRestored():
            row.status = "ready"
            row.purged_position = None
            row.visible_at = to_us(event.at)
        case _:
            assert_never(event)


def purge_row(row: MessageViewRow, position: int) -> None:
    if row.status in LIVE:
        row.status = "purged"
        row.purged_position = position
        row.updated_position = position
