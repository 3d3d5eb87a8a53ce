"""Received messages that settle themselves: ``m.ack()``, ``m.nack(...)``, ``m.extend(...)``
through the client that received them (``await m.ack()`` for ``AsyncClient``'s)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, Concatenate, Final, Generic, ParamSpec, Self, TypeVar, overload
from urllib.parse import quote

import httpx
import msgspec

from cairn_client.models import Received
from cairn_client.runners import AsyncRunner, SyncRunner, _Descriptor, operation
from cairn_client.session import Call, json_of, position_of
from cairn_client.steps import Program

P = ParamSpec("P")
D = TypeVar("D", bound=Received)

REASON_LIMIT: Final = 1024
"""The longest nack reason the broker keeps, in characters."""


def message_path(queue: str, message_id: str, action: str = "") -> str:
    path = f"/v1/queues/{quote(queue, safe='')}/messages/{quote(message_id, safe='')}"
    return f"{path}/{action}" if action else path


def ack_call(queue: str, message_id: str, receipt: str) -> Call[int | None]:
    body = {"receipt": receipt}
    return Call("POST", message_path(queue, message_id, "ack"), position_of, "command", body=body)


def nack_call(
    queue: str, message_id: str, receipt: str, reason: str | None, delay_s: int
) -> Call[int | None]:
    body: dict[str, object] = {"receipt": receipt, "delay_s": delay_s}
    if reason is not None:
        body["reason"] = reason[:REASON_LIMIT]
    return Call("POST", message_path(queue, message_id, "nack"), position_of, "command", body=body)


class _Extended(msgspec.Struct):
    visible_at: datetime


_extended: Final = json_of(_Extended)


def _visible_at(response: httpx.Response) -> datetime:
    return _extended(response).visible_at


def extend_call(
    queue: str, message_id: str, receipt: str, visibility_timeout_s: int
) -> Call[datetime]:
    body = {"receipt": receipt, "visibility_timeout_s": visibility_timeout_s}
    return Call(
        "POST", message_path(queue, message_id, "extend"), _visible_at, "command", body=body
    )


class _Settling(Received, kw_only=True):
    """The operations of a received message, for both clients."""

    def _bind(self, client: Any, queue: str) -> Self:
        self._client = client
        self._queue = queue
        self._settled = False
        return self

    @operation
    def ack(self) -> Program[int | None]:
        """The message is done: it is deleted. Answers the position of the ack's event."""
        call = ack_call(self._queue, self.id, self.receipt)
        position: int | None = yield from self._client._session.exchange(call)
        self._settled = True
        return position

    @operation
    def nack(self, reason: str | None = None, delay_s: int = 0) -> Program[int | None]:
        """Give the message back now: it is available again after ``delay_s`` seconds.
        ``reason`` (cut to 1024 characters) shows in its history and the queue's analytics."""
        call = nack_call(self._queue, self.id, self.receipt, reason, delay_s)
        position: int | None = yield from self._client._session.exchange(call)
        self._settled = True
        return position

    @operation
    def extend(self, visibility_timeout_s: int) -> Program[datetime]:
        """Make the lease end ``visibility_timeout_s`` seconds from now; answers when."""
        call = extend_call(self._queue, self.id, self.receipt, visibility_timeout_s)
        visible_at: datetime = yield from self._client._session.exchange(call)
        return visible_at


class Delivery(_Settling, SyncRunner, kw_only=True):
    """A message received by ``Client``: ``ack()``, ``nack()`` and ``extend()`` block."""

    def _run(self, program: Program[Any]) -> Any:
        return self._client._run(program)


class AsyncDelivery(_Settling, AsyncRunner, kw_only=True):
    """A message received by ``AsyncClient``: ``ack()``, ``nack()`` and ``extend()`` are
    awaited."""

    async def _run(self, program: Program[Any]) -> Any:
        return await self._client._run(program)


class Deliveries(msgspec.Struct, Generic[D]):
    """A receive's answer."""

    messages: list[D]


class receiving(_Descriptor, Generic[P]):  # lower case: a decorator
    """The receive operation: its deliveries are ``Delivery`` objects on ``Client`` and
    ``AsyncDelivery`` objects on ``AsyncClient`` (the program binds them to the client it
    runs on; this gives each side its type)."""

    def __init__(self, build: Callable[Concatenate[Any, P], Program[list[Any]]]) -> None:
        super().__init__(build)

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, instance: SyncRunner, owner: type[Any]) -> Callable[P, list[Delivery]]: ...
    @overload
    def __get__(
        self, instance: AsyncRunner, owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, list[AsyncDelivery]]]: ...
    def __get__(self, instance: Any, owner: type[Any]) -> Any:
        return self if instance is None else self._bind(instance, instance._run)
