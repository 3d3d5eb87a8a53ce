"""The message read model: each message's status, counters and timing, for dashboards and the
message endpoints. Bodies are not copied here: they stay in the log, at ``position``."""

from __future__ import annotations

from typing import Final

import msgspec

from broker.events import (
    AnyEvent,
    MessageAcked,
    MessageDeadLettered,
    MessageEvent,
    MessageExpired,
    MessageLeased,
    MessageLeaseExpired,
    MessageLeaseExtended,
    MessageNacked,
    MessagePublished,
    MessageRedriven,
)
from broker.state import to_us

LIVE: Final = ("ready", "leased")


class MessageViewRow(msgspec.Struct, kw_only=True):
    message_id: str
    queue_id: int
    queue: str
    status: str
    attributes: str
    """JSON object, stored as text."""
    receive_count: int
    published_at: int
    visible_at: int
    position: int
    updated_position: int
    purged_position: int | None = None


COLUMNS = tuple(MessageViewRow.__struct_fields__)


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
    )


def apply_message_event(row: MessageViewRow, event: MessageEvent, position: int) -> None:
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
        case _:
            raise TypeError(f"not a message transition: {event.__class__.__name__}")


def purge_row(row: MessageViewRow, position: int) -> None:
    if row.status in LIVE:
        row.status = "purged"
        row.purged_position = position
        row.updated_position = position


def is_message_event(event: AnyEvent) -> bool:
    return isinstance(event, MessageEvent)
