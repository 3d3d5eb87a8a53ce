"""Every operation of the HTTP contract, written once for both clients (see ``runners.py``).

Reads take ``min_position`` (wait until the broker's read side has applied that position:
pass a command's ``position`` to read your own write) and, where the broker can read the
past, ``as_of`` (a position, a ``datetime`` or an RFC 3339 string).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, TypedDict, Unpack
from urllib.parse import quote

import httpx
import msgspec

from cairn_client import feed
from cairn_client.deliveries import (
    Deliveries,
    ack_call,
    extend_call,
    message_path,
    nack_call,
    receiving,
)
from cairn_client.models import (
    AckResult,
    Analytics,
    Event,
    EventsPage,
    Log,
    Message,
    MessagePage,
    Published,
    Purged,
    Queue,
    Received,
    Redriven,
    RedrivePreview,
    Undone,
)
from cairn_client.runners import operation, streaming
from cairn_client.session import Call, Session, Token, json_of, position_of
from cairn_client.steps import Emit, Program, Stream

AsOf = int | datetime | str
"""A position, or a time (a ``datetime``, or an RFC 3339 string)."""
DEFAULT_PRIORITY: Final = 4


class QueueSettings(TypedDict, total=False):
    """A queue's settings; ``None`` clears the ones that may be unset."""

    visibility_timeout_s: int
    delay_s: int
    retention_s: int
    max_receive_count: int | None
    dead_letter_queue: str | None
    max_message_bytes: int
    receive_wait_s: int
    fifo: bool
    content_based_dedup: bool
    tags: dict[str, str]
    redrive_allow_policy: str | None
    policy: str | None
    kms_master_key_id: str | None
    kms_data_key_reuse_period_s: int
    sqs_managed_sse: bool
    deduplication_scope: str
    fifo_throughput_limit: str
    redrive_policy: str | None


class _Queues(msgspec.Struct, kw_only=True):
    queues: list[Queue]
    next_after: str | None = None


class _Results(msgspec.Struct):
    results: list[Published]


class _AckResults(msgspec.Struct):
    results: list[AckResult]


_queue: Final = json_of(Queue)
_queues: Final = json_of(_Queues)
_published: Final = json_of(Published)
_results: Final = json_of(_Results)
_ack_results: Final = json_of(_AckResults)
_message: Final = json_of(Message)
_message_page: Final = json_of(MessagePage)
_events_page: Final = json_of(EventsPage)
_purged: Final = json_of(Purged)
_undone: Final = json_of(Undone)
_redriven: Final = json_of(Redriven)
_preview: Final = json_of(RedrivePreview)
_analytics: Final = json_of(Analytics)
_log: Final = json_of(Log)


def _path(queue: str, *rest: str) -> str:
    return "/".join(("/v1/queues", quote(queue, safe=""), *rest))


def _time(value: AsOf | None) -> str | int | None:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a datetime without a time zone names no instant")
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


class Api:
    """The operations both clients share."""

    _session: Session
    _receive_answer: ClassVar[msgspec.json.Decoder[Deliveries[Any]]]
    """Decodes a receive's answer into this client's kind of delivery."""

    def __init__(
        self, url: str, token: Token = None, retries: int = 5, timeout: float = 30.0
    ) -> None:
        self._session = Session(url, token, retries, timeout)
        self._open()

    def _open(self) -> None:
        """Make the HTTP client this kind of client runs its requests on."""
        raise NotImplementedError

    def _deliveries(self, response: httpx.Response) -> Deliveries[Any]:
        return self._receive_answer.decode(response.content)

    # Queues

    @operation
    def create_queue(self, name: str, **settings: Unpack[QueueSettings]) -> Program[Queue]:
        """Create a queue (``409 Conflict`` if the name is taken); unnamed settings take
        their defaults."""
        call = Call("POST", "/v1/queues", _queue, "command", body={"name": name, **settings})
        return self._session.exchange(call)

    @operation
    def get_queue(
        self, name: str, min_position: int | None = None, as_of: AsOf | None = None
    ) -> Program[Queue]:
        """A queue, its settings and stats, now or as it was ``as_of``."""
        params = {"min_position": min_position, "as_of": _time(as_of)}
        return self._session.exchange(Call("GET", _path(name), _queue, params=params))

    @operation
    def update_queue(self, name: str, **changes: Unpack[QueueSettings]) -> Program[Queue]:
        """Change some of a queue's settings; the others stay."""
        call = Call("PATCH", _path(name), _queue, "command", body=changes)
        return self._session.exchange(call)

    @operation
    def list_queues(
        self,
        prefix: str | None = None,
        *,
        page_size: int | None = None,
        min_position: int | None = None,
    ) -> Program[list[Queue]]:
        """Every live queue (whose name starts with ``prefix``), by name: every page of the
        listing, followed (``page_size``: queues per request, the server's default when
        ``None``)."""
        found: list[Queue] = []
        after: str | None = None
        while True:
            params = {"prefix": prefix, "limit": page_size, "after": after}
            params["min_position"] = min_position
            page = yield from self._session.exchange(
                Call("GET", "/v1/queues", _queues, params=params)
            )
            # A server from before paging and prefixes answers every queue at once.
            found += [q for q in page.queues if prefix is None or q.name.startswith(prefix)]
            if page.next_after is None or not page.queues:
                return found
            after = page.next_after

    @operation
    def delete_queue(self, name: str) -> Program[int | None]:
        """Soft-delete a queue (``restore_queue`` brings it back); answers the position of
        the deletion."""
        return self._session.exchange(Call("DELETE", _path(name), position_of, "command"))

    @operation
    def restore_queue(self, name: str) -> Program[Queue]:
        """Bring a soft-deleted queue back with its messages (``409`` if the name was taken
        again)."""
        return self._session.exchange(Call("POST", _path(name, "restore"), _queue, "command"))

    @operation
    def purge(self, queue: str) -> Program[Purged]:
        """Remove every available, delayed and in-flight message; ``undo_purge`` takes the
        answer's ``purge_id``."""
        return self._session.exchange(Call("POST", _path(queue, "purge"), _purged, "command"))

    @operation
    def undo_purge(self, queue: str, purge_id: str) -> Program[Undone]:
        """Make what a purge removed available again (unless its retention has passed)."""
        path = _path(queue, "purges", quote(purge_id, safe=""), "undo")
        return self._session.exchange(Call("POST", path, _undone, "command"))

    @operation
    def redrive(
        self,
        queue: str,
        to: str | None = None,
        *,
        max_messages: int = 100,
        where: Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> Program[Redriven | RedrivePreview]:
        """Move available messages of a (dead-letter) queue to ``to`` (default: where each
        came from); only those that match ``where`` (``attributes``, ``reason``,
        ``published_after``, ``published_before``, ``source_queue``). With ``dry_run``, only
        say what would move."""
        body = {"to": to, "max": max_messages, "where": where, "dry_run": dry_run}
        decode = _preview if dry_run else _redriven
        return self._session.exchange(
            Call("POST", _path(queue, "redrive"), decode, "command", body=body)
        )

    @operation
    def analytics(
        self,
        queue: str,
        bucket_s: int = 60,
        *,
        from_: datetime | str | None = None,
        to: datetime | str | None = None,
        min_position: int | None = None,
    ) -> Program[Analytics]:
        """Counts, dwell times and nack reasons per time bucket (default: the last hour)."""
        params = {"bucket_s": bucket_s, "from": _time(from_), "to": _time(to)}
        params["min_position"] = min_position
        return self._session.exchange(
            Call("GET", _path(queue, "analytics"), _analytics, params=params)
        )

    # Messages

    @operation
    def publish(
        self,
        queue: str,
        body: Any,
        *,
        attributes: Mapping[str, str] | None = None,
        delay_s: int | None = None,
        priority: int = DEFAULT_PRIORITY,
        group_id: str | None = None,
        dedup_id: str | None = None,
    ) -> Program[Published]:
        """Publish one message (any JSON value). ``delay_s`` overrides the queue's delay;
        a second publish with the same ``dedup_id`` within 5 minutes answers the first one's
        id with ``duplicate=True``."""
        message = _message_body(body, attributes, delay_s, priority, group_id, dedup_id)
        call = Call("POST", _path(queue, "messages"), _published, "command", body=message)
        return self._session.exchange(call)

    @operation
    def publish_batch(
        self, queue: str, messages: Sequence[Mapping[str, Any]]
    ) -> Program[list[Published]]:
        """Publish 1..100 messages, all or none: each a mapping with ``body`` and, as for
        ``publish``, any of ``attributes``, ``delay_s``, ``priority``, ``group_id``,
        ``dedup_id``."""
        body = {"messages": list(messages)}
        call = Call("POST", _path(queue, "messages", "batch"), _results, "command", body=body)
        answer = yield from self._session.exchange(call)
        return answer.results

    @receiving
    def receive(
        self,
        queue: str,
        max_messages: int = 10,
        wait_s: float = 10,
        visibility_timeout_s: int | None = None,
    ) -> Program[list[Received]]:
        """Lease up to ``max_messages`` messages, waiting up to ``wait_s`` seconds for the
        first; each must be acked before ``visibility_timeout_s`` (the queue's when
        ``None``) or it is delivered again. Never retried after its answer was lost."""
        body = {
            "max_messages": max_messages,
            "wait_s": wait_s,
            "visibility_timeout_s": visibility_timeout_s,
        }
        call = Call(
            "POST", _path(queue, "receive"), self._deliveries, "receive", body=body, wait_s=wait_s
        )
        answer = yield from self._session.exchange(call)
        return [delivery._bind(self, queue) for delivery in answer.messages]

    @operation
    def ack(self, queue: str, message_id: str, receipt: str) -> Program[int | None]:
        """Acknowledge a message by its receipt (``Delivery.ack()`` does it for you)."""
        return self._session.exchange(ack_call(queue, message_id, receipt))

    @operation
    def nack(
        self,
        queue: str,
        message_id: str,
        receipt: str,
        *,
        reason: str | None = None,
        delay_s: int = 0,
    ) -> Program[int | None]:
        """End a lease now; the message is available again after ``delay_s``."""
        return self._session.exchange(nack_call(queue, message_id, receipt, reason, delay_s))

    @operation
    def extend(
        self, queue: str, message_id: str, receipt: str, visibility_timeout_s: int
    ) -> Program[datetime]:
        """Make a lease end ``visibility_timeout_s`` from now."""
        call = extend_call(queue, message_id, receipt, visibility_timeout_s)
        return self._session.exchange(call)

    @operation
    def ack_batch(self, queue: str, deliveries: Sequence[Received]) -> Program[list[AckResult]]:
        """Acknowledge up to 100 received messages, each on its own: one result each (204
        acked, 409 lease lost, 404 unknown)."""
        acks = [{"id": d.id, "receipt": d.receipt} for d in deliveries]
        call = Call("POST", _path(queue, "ack"), _ack_results, "command", body={"acks": acks})
        answer = yield from self._session.exchange(call)
        for delivery, result in zip(deliveries, answer.results, strict=True):
            delivery._settled = delivery._settled or result.status == 204
        return answer.results

    @operation
    def get_message(
        self,
        queue: str,
        message_id: str,
        min_position: int | None = None,
        as_of: AsOf | None = None,
    ) -> Program[Message]:
        """A message, its status and its whole history, now or ``as_of``."""
        params = {"min_position": min_position, "as_of": _time(as_of)}
        call = Call("GET", message_path(queue, message_id), _message, params=params)
        return self._session.exchange(call)

    @operation
    def find_message(self, message_id: str, min_position: int | None = None) -> Program[Message]:
        """A message by its id alone, whatever its queue."""
        path = f"/v1/messages/{quote(message_id, safe='')}"
        params = {"min_position": min_position}
        return self._session.exchange(Call("GET", path, _message, params=params))

    @streaming
    def list_messages(
        self,
        queue: str,
        status: str | None = None,
        *,
        as_of: AsOf | None = None,
        min_position: int | None = None,
        page_size: int = 50,
    ) -> Stream[Message]:
        """A queue's messages (of one ``status``), oldest first, page after page (without
        their history: ``get_message`` has it)."""
        after: str | None = None
        while True:
            params = {"status": status, "after": after, "limit": page_size, "as_of": _time(as_of)}
            params["min_position"] = min_position
            call = Call("GET", _path(queue, "messages"), _message_page, params=params)
            page = yield from self._session.exchange(call)
            for message in page.messages:
                yield Emit(message)
            if page.next is None:
                return
            after = page.next

    # The log

    @operation
    def events(
        self,
        after: int = 0,
        limit: int = 500,
        *,
        queue: str | None = None,
        types: Sequence[str] | None = None,
        min_position: int | None = None,
    ) -> Program[EventsPage]:
        """A page of the log after position ``after``; ``types`` may hold prefixes ending in
        ``*`` (``message.*``). ``Gone`` if ``after`` is below what the broker keeps."""
        params = {
            "after": after,
            "limit": limit,
            "queue": queue,
            "types": ",".join(types) if types else None,
            "min_position": min_position,
        }
        return self._session.exchange(Call("GET", "/v1/events", _events_page, params=params))

    @streaming
    def follow(
        self,
        after: int | None = None,
        *,
        queue: str | None = None,
        types: Sequence[str] | None = None,
    ) -> Stream[Event]:
        """Every event after ``after`` (from now when ``None``) that matches, live, for as long
        as it is iterated: it resumes after a dropped connection or a server restart with no
        gap and no duplicate. ``Gone`` if ``after`` is below what the broker keeps."""
        return feed.follow(self._session, after, queue, types)

    @operation
    def log(self) -> Program[Log]:
        """What the log keeps: its head, the live log's and the archive's extent."""
        return self._session.exchange(Call("GET", "/v1/log", _log))


def _message_body(
    body: Any,
    attributes: Mapping[str, str] | None,
    delay_s: int | None,
    priority: int,
    group_id: str | None,
    dedup_id: str | None,
) -> dict[str, Any]:
    """The publish request: only what differs from the defaults, so a server that predates
    an option is not asked about it."""
    message: dict[str, Any] = {"body": body}
    if attributes:
        message["attributes"] = attributes
    if priority != DEFAULT_PRIORITY:
        message["priority"] = priority
    optional = {"delay_s": delay_s, "group_id": group_id, "dedup_id": dedup_id}
    message.update((k, v) for k, v in optional.items() if v is not None)
    return message
