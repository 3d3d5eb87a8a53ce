"""What every handler of the Kafka door is given: the door (the broker's services and what the
door keeps across connections) and the connection the request came on."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from api.auth import ANONYMOUS, Authenticator, Principal
from api.services import Services
from api.settings import Settings
from broker.kafka import KafkaState

if TYPE_CHECKING:
    from api.kafka.groups import Coordinator
    from api.kafka.nodes import Nodes
    from api.kafka.topics import Topics

PRE_AUTH_FRAME_BYTES: Final = 512 * 1024
"""The largest frame taken before authentication (the contract's bound)."""


@dataclass
class Door:
    services: Services
    state: KafkaState
    authenticator: Authenticator | None
    topics: Topics
    nodes: Nodes
    coordinator: Coordinator

    @property
    def settings(self) -> Settings:
        return self.services.settings


@dataclass
class Connection:
    peer: str
    principal: Principal | None
    """Who the connection authenticated as; None until it has (with authentication on)."""
    client_id: str | None = None
    """The client id of the request being answered."""
    mechanism: str | None = None
    """The SASL mechanism of the last SaslHandshake."""
    raw_sasl: bool = False
    """A SaslHandshake v0 was answered: the next frame is a bare SASL token."""
    closing: str | None = None
    """Set by a handler: close the connection (for this reason) once its answer is sent."""
    expiry: asyncio.TimerHandle | None = None
    """Closes the connection when the token it authenticated with expires."""
    writer: asyncio.StreamWriter | None = None

    def expire(self) -> None:
        """The token the connection authenticated with has expired: close it (a client that
        re-authenticated in time had this timer replaced)."""
        self.closing = "the token expired"
        if self.writer is not None:
            self.writer.close()

    @classmethod
    def open(cls, peer: str, door: Door, writer: asyncio.StreamWriter) -> Connection:
        anonymous = ANONYMOUS if door.authenticator is None else None
        return cls(peer=peer, principal=anonymous, writer=writer)

    @property
    def who(self) -> Principal:
        assert self.principal is not None, "the listener answers nothing else before auth"
        return self.principal


def may_read(principal: Principal, topic: str, *, events: bool) -> bool:
    """Fetch a topic (and use a group on it): ``events:read`` for ``cairn.events``,
    ``read:<glob>`` for a queue's."""
    if events:
        return principal.admin or principal.events
    return principal.can_read(topic)


def may_describe(principal: Principal, topic: str, *, events: bool) -> bool:
    """See a topic in Metadata: whoever may read or produce to it."""
    return may_read(principal, topic, events=events) or (
        not events and principal.may("publish", topic)
    )


Handler = Callable[[Door, Connection, Any], Awaitable[Any | None]]
"""Answers one request (a kio entity of any version its API serves); None: no answer (a
Produce with acks=0)."""


@dataclass(frozen=True)
class Api:
    key: int
    name: str
    versions: tuple[int, int]
    """The lowest and highest version served (what ApiVersions advertises)."""
    handler: Handler
    before_auth: bool = False
    """Answered before the connection has authenticated."""
