"""The decision logic: ``decide(view, command, context) -> Decision``, or a ``BrokerError``.

Pure: it reads the write-side state through ``view`` and returns the events to append and the
reply to give; it never writes. Because it knows ``view.next_position`` and how many events it
returns, a reply can name the positions its events will get before they are appended.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal, TypeAlias, assert_never

import msgspec

from broker.commands import (
    EVENTS_TOPIC,
    GROUP_ID_PATTERN,
    MAX_KEY_BYTES,
    QUEUE_NAME_PATTERN,
    QUEUE_NAME_RULE,
    RESERVED_QUEUE_PREFIX,
    AckMessages,
    AnyCommand,
    CancelMoveTask,
    CreateQueue,
    DeleteQueue,
    ExtendLease,
    NackMessage,
    NewMessage,
    ProducerBatch,
    PublishMessages,
    PurgeQueue,
    QueueSettings,
    ReceiveMessages,
    RedriveFilter,
    RedriveMessages,
    RestoreQueue,
    StartMoveTask,
    Sweep,
    UndoPurge,
    UpdateQueue,
)
from broker.errors import (
    BrokerError,
    InvalidCommandError,
    LeaseLostError,
    LeaseSupersededError,
    MessageNotFoundError,
    MessageTooLargeError,
    MoveTaskNotFoundError,
    OutOfOrderSequenceError,
    ProducerFencedError,
    PurgeNotFoundError,
    QueueExistsError,
    QueueNotFoundError,
)
from broker.events import (
    AnyEvent,
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
    ProducedBy,
    QueueCreated,
    QueueDeleted,
    QueueMoveTaskEnded,
    QueueMoveTaskStarted,
    QueuePurged,
    QueuePurgeUndone,
    QueueRestored,
    QueueUpdated,
    Trace,
    TypedAttribute,
)
from broker.ids import lease_of, receipt_for
from broker.state import (
    SEQUENCE_WRAP,
    SETTINGS,
    MessageState,
    MoveTask,
    QueueState,
    StateView,
    dedup_key,
    from_us,
    move_task_of,
    to_us,
)

_REDRIVE_CHUNK: Final = 500
_SETTING_PATH: Final = re.compile(r"at `\$\.(\w+)")
_DRY_RUN_SAMPLE: Final = 10
_RESTORE_EXPIRIES: Final = 10_000
SOURCE_QUEUE = "source_queue"
SOURCE_MESSAGE_ID = "source_message_id"
RESERVED_ATTRIBUTES = frozenset({SOURCE_QUEUE, SOURCE_MESSAGE_ID})
"""Set by the broker on dead-lettering, trusted by redrive: publishers may not set them."""
_QUEUE_NAME = re.compile(QUEUE_NAME_PATTERN)
_GROUP_ID = re.compile(GROUP_ID_PATTERN)
FIFO_SUFFIX: Final = ".fifo"


@dataclass(frozen=True, slots=True)
class Context:
    """What a decision may depend on besides the state: the time and fresh identifiers."""

    now: datetime
    new_id: Callable[[], str]
    new_receipt: Callable[[], str]

    @property
    def now_us(self) -> int:
        return to_us(self.now)


class QueueReply(msgspec.Struct, frozen=True):
    name: str
    position: int


class Published(msgspec.Struct, frozen=True):
    id: str
    position: int
    duplicate: bool


class PublishReply(msgspec.Struct, frozen=True):
    results: list[Published]


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    body: msgspec.Raw
    attributes: dict[str, str]
    receipt: str
    receive_count: int
    published_at: datetime
    position: int
    visible_at: datetime
    priority: int
    group_id: str | None
    trace: Trace | None = None
    """The publishing request's trace context, so the consumer can continue its trace."""
    typed_attributes: dict[str, TypedAttribute] = {}
    dedup_id: str | None = None
    first_received_at: datetime | None = None
    """When the message was first received: by this receive, or an earlier one."""
    key: str | None = None


class ReceiveReply(msgspec.Struct, frozen=True):
    messages: list[Delivery]
    next_visible_at: int | None
    """When the earliest delayed message of the queue becomes visible: a long poll's timer."""


AckOutcome: TypeAlias = Literal["acked", "lease_lost", "not_found"]


class AckReply(msgspec.Struct, frozen=True):
    results: list[tuple[str, AckOutcome]]
    position: int


class NackReply(msgspec.Struct, frozen=True):
    position: int


class ExtendReply(msgspec.Struct, frozen=True):
    visible_at: datetime
    position: int


class PurgeReply(msgspec.Struct, frozen=True):
    purged: int
    position: int
    """Also the purge's id: an undo names it."""


class UndoReply(msgspec.Struct, frozen=True):
    restored: int
    skipped: int
    position: int


class RedriveReply(msgspec.Struct, frozen=True):
    moved: int
    position: int


class DryRunReply(msgspec.Struct, frozen=True):
    would_move: int
    sample: list[str]


class SweepReply(msgspec.Struct, frozen=True):
    events: int
    visited: tuple[int, ...] = ()
    """The queues a full sweep visited (the writer has their due times set anew)."""


class MoveTaskReply(msgspec.Struct, frozen=True):
    task: str
    moved: int
    """Moved so far (when cancelled: in all)."""
    position: int


Reply: TypeAlias = (
    QueueReply
    | PublishReply
    | ReceiveReply
    | AckReply
    | NackReply
    | ExtendReply
    | PurgeReply
    | UndoReply
    | RedriveReply
    | DryRunReply
    | SweepReply
    | MoveTaskReply
)


@dataclass(frozen=True, slots=True)
class Decision:
    events: Sequence[AnyEvent]
    reply: Reply


def decide(view: StateView, command: AnyCommand, ctx: Context) -> Decision:
    match command:
        case CreateQueue():
            return _create(view, command, ctx)
        case UpdateQueue():
            return _update(view, command, ctx)
        case DeleteQueue():
            queue = _require(view, command.queue)
            return Decision(
                [QueueDeleted(at=ctx.now, queue=queue.name)],
                QueueReply(queue.name, view.next_position),
            )
        case PurgeQueue():
            queue = _require(view, command.queue)
            purged = view.count_live(queue.queue_id)
            return Decision(
                [QueuePurged(at=ctx.now, queue=queue.name, purged=purged)],
                PurgeReply(purged, view.next_position),
            )
        case PublishMessages():
            return _publish(view, command, ctx)
        case ReceiveMessages():
            return _receive(view, command, ctx)
        case AckMessages():
            return _ack(view, command, ctx)
        case NackMessage():
            return _nack(view, command, ctx)
        case ExtendLease():
            return _extend(view, command, ctx)
        case RedriveMessages():
            return _redrive(view, command, ctx)
        case UndoPurge():
            return _undo_purge(view, command, ctx)
        case RestoreQueue():
            return _restore(view, command, ctx)
        case StartMoveTask():
            return _start_move(view, command, ctx)
        case CancelMoveTask():
            return _cancel_move(view, command, ctx)
        case Sweep():
            return _sweep(view, command, ctx)
        case _:
            assert_never(command)


def _require(view: StateView, name: str) -> QueueState:
    queue = view.queue(name)
    if queue is None:
        raise QueueNotFoundError(f"queue {name!r} does not exist")
    return queue


def _check_dead_letter(view: StateView, name: str, settings: QueueSettings) -> None:
    """``settings`` are a whole queue's (``fifo`` decided)."""
    if (settings.max_receive_count is None) != (settings.dead_letter_queue is None):
        raise InvalidCommandError(
            "max_receive_count and dead_letter_queue must be set together",
            field="max_receive_count"
            if settings.max_receive_count is None
            else "dead_letter_queue",
        )
    dlq = settings.dead_letter_queue
    if dlq is None:
        return
    if dlq == name:
        raise InvalidCommandError(
            "a queue cannot be its own dead-letter queue", field="dead_letter_queue"
        )
    target = view.queue(dlq)
    if target is None:
        raise InvalidCommandError(
            f"dead-letter queue {dlq!r} does not exist", field="dead_letter_queue"
        )
    if bool(target.fifo) != settings.fifo:
        # A FIFO queue's messages keep their group in its dead-letter queue, and a standard
        # queue's have none: only a queue of the same kind can hold them as they are.
        raise InvalidCommandError(
            f"dead-letter queue {dlq!r} is {_kind(bool(target.fifo))} and {name!r} is"
            f" {_kind(bool(settings.fifo))}: a queue's dead-letter queue must be of its kind",
            field="dead_letter_queue",
        )


def _kind(fifo: bool) -> str:
    return "a FIFO queue" if fifo else "a standard queue"


def _same_kind(source: QueueState, destination: QueueState, field: str) -> None:
    """Messages move as they are, group or none: only into a queue of their queue's kind."""
    if bool(source.fifo) != bool(destination.fifo):
        raise InvalidCommandError(
            f"{destination.name!r} is {_kind(bool(destination.fifo))} and {source.name!r} is"
            f" {_kind(bool(source.fifo))}: messages move only between queues of one kind",
            field=field,
        )


def settings_for(name: str, settings: QueueSettings) -> QueueSettings:
    """A new queue's settings as its ``queue.created`` event records them: ``fifo`` that the
    request left out is whether the name ends in ``.fifo``."""
    fifo = name.endswith(FIFO_SUFFIX) if settings.fifo is None else settings.fifo
    if not fifo:
        return msgspec.structs.replace(settings, fifo=False)
    # A FIFO queue's deduplication scope and throughput limit are SQS's defaults unless said.
    return msgspec.structs.replace(
        settings,
        fifo=True,
        deduplication_scope=settings.deduplication_scope or "queue",
        fifo_throughput_limit=settings.fifo_throughput_limit or "perQueue",
    )


def _create(view: StateView, command: CreateQueue, ctx: Context) -> Decision:
    if not _QUEUE_NAME.match(command.queue):
        raise InvalidCommandError(
            f"{command.queue!r} is not a queue name: {QUEUE_NAME_RULE}", field="name"
        )
    if command.queue == EVENTS_TOPIC or command.queue.startswith(RESERVED_QUEUE_PREFIX):
        # Every queue is a Kafka topic of its name: these are the log's topic, and the prefix
        # Kafka keeps for its own (clients treat such topics as internal).
        raise InvalidCommandError(
            f"queue names {EVENTS_TOPIC!r} and names starting {RESERVED_QUEUE_PREFIX!r} are"
            " reserved",
            field="name",
        )
    if view.queue(command.queue) is not None:
        raise QueueExistsError(f"queue {command.queue!r} already exists", field="name")
    settings = settings_for(command.queue, command.settings)
    _check_settings(settings)
    _check_fifo(command.queue, settings)
    _check_dead_letter(view, command.queue, settings)
    event = QueueCreated(at=ctx.now, queue=command.queue, **msgspec.structs.asdict(settings))
    return Decision([event], QueueReply(command.queue, view.next_position))


def _settings_of(queue: QueueState) -> QueueSettings:
    settings = {name: getattr(queue, name) for name in SETTINGS}
    settings["tags"] = msgspec.json.decode(queue.tags)
    # SQLite hands booleans back as 0 and 1; the events must say true and false.
    settings["fifo"], settings["content_based_dedup"], settings["sqs_managed_sse"] = (
        bool(queue.fifo),
        bool(queue.content_based_dedup),
        bool(queue.sqs_managed_sse),
    )
    return QueueSettings(**settings)


def _check_fifo(name: str, settings: QueueSettings) -> None:
    """SQS's rules, for either door: a FIFO queue's name ends in ``.fifo`` (and only a FIFO
    queue's), and content-based deduplication is a FIFO setting. ``settings`` are a whole
    queue's (``fifo`` decided)."""
    if settings.fifo != name.endswith(FIFO_SUFFIX):
        said = "true" if settings.fifo else "false"
        raise InvalidCommandError(
            f"fifo is {said} but the name {name!r} {'does not end' if settings.fifo else 'ends'}"
            f" in {FIFO_SUFFIX!r}: a FIFO queue's name ends in {FIFO_SUFFIX!r}, and only a FIFO"
            " queue's (leave fifo out and the name decides)",
            field="fifo",
        )
    if settings.content_based_dedup and not settings.fifo:
        raise InvalidCommandError(
            "content_based_dedup is for FIFO queues only", field="content_based_dedup"
        )
    for field in ("deduplication_scope", "fifo_throughput_limit"):
        if getattr(settings, field) is not None and not settings.fifo:
            raise InvalidCommandError(f"{field} is for FIFO queues only", field=field)
    if (
        settings.fifo_throughput_limit == "perMessageGroupId"
        and settings.deduplication_scope != "messageGroup"
    ):
        raise InvalidCommandError(
            "fifo_throughput_limit perMessageGroupId is only valid when deduplication_scope is"
            " messageGroup",
            field="fifo_throughput_limit",
        )


def _check_settings(settings: QueueSettings) -> None:
    """What every queue's settings must be, whichever door they come through: each within its
    range (the native door's schema says so too; the others need not), and SQS's rules
    between them."""
    try:
        msgspec.convert(msgspec.structs.asdict(settings), QueueSettings)
    except msgspec.ValidationError as error:
        found = _SETTING_PATH.search(str(error))
        where = found[1] if found else "settings"
        raise InvalidCommandError(f"invalid {where}: {error}", field=where) from None
    if settings.kms_master_key_id is not None and settings.sqs_managed_sse:
        raise InvalidCommandError(
            "a queue is encrypted with a KMS key (kms_master_key_id) or by SQS"
            " (sqs_managed_sse), not both",
            field="sqs_managed_sse",
        )
    if settings.policy is not None:
        try:
            policy = msgspec.json.decode(settings.policy)
        except msgspec.DecodeError:
            policy = None
        if not isinstance(policy, dict):
            raise InvalidCommandError("policy must be a JSON object", field="policy")


def _update(view: StateView, command: UpdateQueue, ctx: Context) -> Decision:
    queue = _require(view, command.queue)
    current = _settings_of(queue)
    updated = msgspec.structs.replace(current, **command.changes)
    if "redrive_policy" not in command.changes and (
        updated.dead_letter_queue,
        updated.max_receive_count,
    ) != (current.dead_letter_queue, current.max_receive_count):
        # The text no longer says what the settings say: no door may show it.
        updated = msgspec.structs.replace(updated, redrive_policy=None)
    if updated == current:
        return Decision([], QueueReply(queue.name, view.next_position - 1))
    if updated.fifo != current.fifo:
        raise InvalidCommandError("fifo is set when a queue is created", field="fifo")
    _check_settings(updated)
    _check_fifo(queue.name, updated)
    _check_dead_letter(view, queue.name, updated)
    event = QueueUpdated(at=ctx.now, queue=queue.name, **msgspec.structs.asdict(updated))
    return Decision([event], QueueReply(queue.name, view.next_position))


def _publish(view: StateView, command: PublishMessages, ctx: Context) -> Decision:
    queue = _require(view, command.queue)
    producer = command.producer
    if producer is not None:
        retried = _retried(view, queue, producer, len(command.messages))
        if retried is not None:
            return Decision([], PublishReply([retried]))
    messages = [
        _keyed(queue, message, index, producer) for index, message in enumerate(command.messages)
    ]
    for index, message in enumerate(messages):
        reserved = RESERVED_ATTRIBUTES & message.attributes.keys()
        if reserved:
            # Only the broker writes these (on dead-lettering), and redrive trusts them: a
            # publisher that could set them could send a redrive anywhere, through any door.
            raise InvalidCommandError(
                f"attribute {sorted(reserved)[0]!r} is reserved for the broker",
                field="attributes",
                entry=index,
            )
        _check_message(queue, message, index)
    produced = None
    if producer is not None:
        last = (producer.base_sequence + len(messages) - 1) % SEQUENCE_WRAP
        produced = ProducedBy(producer.producer_id, producer.epoch, producer.base_sequence, last)
    now = ctx.now_us
    events: list[AnyEvent] = []
    results: list[Published] = []
    first_in_batch: dict[str, Published] = {}
    for message in messages:
        if queue.content_based_dedup and message.dedup_id is None:
            message = msgspec.structs.replace(
                message, dedup_id=hashlib.sha256(message.body).hexdigest()
            )
        key = None
        if message.dedup_id is not None:
            key = dedup_key(queue, message.group_id, message.dedup_id)
            earlier = first_in_batch.get(key)
            if earlier is not None:
                results.append(Published(earlier.id, earlier.position, True))
                continue
            entry = view.dedup(queue.queue_id, key)
            if entry is not None and entry.expires_at > now:
                results.append(Published(entry.message_id, entry.position, True))
                continue
        position = view.next_position + len(events)
        events.append(
            MessagePublished(
                at=ctx.now,
                queue=queue.name,
                message_id=message.message_id,
                body=message.body,
                attributes=message.attributes,
                delay_s=queue.delay_s if message.delay_s is None else message.delay_s,
                dedup_id=message.dedup_id,
                priority=message.priority,
                group_id=message.group_id,
                typed_attributes=message.typed_attributes,
                key=message.key,
                producer=produced,
            )
        )
        published = Published(message.message_id, position, False)
        results.append(published)
        if key is not None:
            first_in_batch[key] = published
    return Decision(events, PublishReply(results))


def _retried(
    view: StateView, queue: QueueState, producer: ProducerBatch, count: int
) -> Published | None:
    """An idempotent producer's batch against what the queue has seen of it (Kafka's rules):
    a batch seen before is a retry, answered as it was first (None: a new batch, which must
    follow the last one without a gap; a new epoch, or a producer the queue does not know,
    starts again from 0)."""
    known = view.producer(queue.queue_id, producer.producer_id)
    first = producer.base_sequence
    last = (first + count - 1) % SEQUENCE_WRAP
    if known is not None and producer.epoch < known.epoch:
        raise ProducerFencedError(
            f"producer {producer.producer_id} epoch {producer.epoch} is older than epoch"
            f" {known.epoch}, which queue {queue.name!r} has seen",
            field="producer",
        )
    if known is None or producer.epoch > known.epoch:
        expected = 0
    else:
        for seen in known.seen():
            if (seen.first_sequence, seen.last_sequence) == (first, last):
                return Published(seen.message_id, seen.position, True)
        expected = (known.last_sequence + 1) % SEQUENCE_WRAP
    if first != expected:
        raise OutOfOrderSequenceError(
            f"producer {producer.producer_id} sent sequence {first} to queue {queue.name!r},"
            f" which expected {expected}",
            field="producer",
        )
    return None


def _keyed(
    queue: QueueState, message: NewMessage, index: int, producer: ProducerBatch | None
) -> NewMessage:
    """The message with what its key and its producer stand for: a FIFO queue takes a message
    without a group into its key's group, and, without content-based deduplication, dedups
    an idempotent producer's messages by their producer id, epoch and sequence."""
    if message.key is None and (producer is None or not queue.fifo):
        return message
    if message.key is not None and len(message.key.encode()) > MAX_KEY_BYTES:
        raise InvalidCommandError(
            f"a key is at most {MAX_KEY_BYTES} bytes of UTF-8", field="key", entry=index
        )
    if not queue.fifo:
        return message
    changes: dict[str, str] = {}
    if message.group_id is None and message.key is not None:
        if not _GROUP_ID.match(message.key):
            raise InvalidCommandError(
                f"queue {queue.name!r} is a FIFO queue: the key is the message's group, which"
                " is 1 to 128 letters, digits and . _ : -",
                field="key",
                entry=index,
            )
        changes["group_id"] = message.key
    if message.dedup_id is None and not queue.content_based_dedup and producer is not None:
        sequence = (producer.base_sequence + index) % SEQUENCE_WRAP
        changes["dedup_id"] = f"{producer.producer_id}.{producer.epoch}.{sequence}"
    return msgspec.structs.replace(message, **changes) if changes else message


def _check_message(queue: QueueState, message: NewMessage, index: int) -> None:
    size = len(message.body) if message.size is None else message.size
    if size > queue.max_message_bytes:
        raise MessageTooLargeError(
            f"the message is {size} bytes; queue {queue.name!r} takes at most"
            f" {queue.max_message_bytes} (max_message_bytes)",
            field="body",
            entry=index,
        )
    if queue.fifo:
        if message.group_id is None:
            raise InvalidCommandError(
                f"queue {queue.name!r} is a FIFO queue: every message needs a group_id",
                field="group_id",
                entry=index,
            )
        if message.dedup_id is None and not queue.content_based_dedup:
            raise InvalidCommandError(
                f"FIFO queue {queue.name!r} has no content-based deduplication: every message"
                " needs a dedup_id",
                field="dedup_id",
                entry=index,
            )


def _retention_passed(queue: QueueState, message: MessageState, now: int) -> bool:
    return message.published_at + queue.retention_s * 1_000_000 <= now


def _over_receive_limit(
    view: StateView, queue: QueueState, message: MessageState
) -> QueueState | None:
    """The live dead-letter queue the message must move to, if it has used up its receives.
    A dead-letter queue that has since been deleted stops the moves (the message stays)."""
    if queue.max_receive_count is None or queue.dead_letter_queue is None:
        return None
    if message.receive_count < queue.max_receive_count:
        return None
    return view.queue(queue.dead_letter_queue)


def _dead_letter(
    view: StateView,
    queue: QueueState,
    dlq: QueueState,
    message: MessageState,
    ctx: Context,
    cause: str,
) -> list[AnyEvent]:
    original = view.published([message.position])[message.position]
    new_id = ctx.new_id()
    attributes = {
        **original.attributes,
        SOURCE_QUEUE: queue.name,
        SOURCE_MESSAGE_ID: message.message_id,
    }
    reason = message.reason or cause
    return [
        MessageDeadLettered(
            at=ctx.now,
            queue=queue.name,
            message_id=message.message_id,
            dead_letter_queue=dlq.name,
            dead_letter_message_id=new_id,
            reason=reason,
        ),
        MessagePublished(
            at=ctx.now,
            queue=dlq.name,
            message_id=new_id,
            body=original.body,
            attributes=attributes,
            priority=original.priority,
            group_id=original.group_id,
            key=original.key,
            reason=reason,
        ),
    ]


def _after_release(
    view: StateView, queue: QueueState, message: MessageState, ctx: Context, cause: str
) -> list[AnyEvent]:
    """A lease ended (expired or nacked): the message moves on if it used up its receives, and
    expires if it outlived retention while in flight. ``cause``: how the lease ended, which
    a dead-letter copy records (a nack's own reason goes first)."""
    dlq = _over_receive_limit(view, queue, message)
    if dlq is not None:
        return _dead_letter(view, queue, dlq, message, ctx, cause)
    if _retention_passed(queue, message, ctx.now_us):
        return [MessageExpired(at=ctx.now, queue=queue.name, message_id=message.message_id)]
    return []


def _receive(view: StateView, command: ReceiveMessages, ctx: Context) -> Decision:
    queue = _require(view, command.queue)
    now = ctx.now_us
    timeout = (
        queue.visibility_timeout_s
        if command.visibility_timeout_s is None
        else command.visibility_timeout_s
    )
    lease_end = ctx.now + timedelta(seconds=timeout)
    events: list[AnyEvent] = []
    taken: list[tuple[MessageState, str]] = []
    room = command.max_messages
    for message in view.receivable(queue.queue_id, now, room):
        if len(taken) == room:
            break
        if _retention_passed(queue, message, now):
            events.append(
                MessageExpired(at=ctx.now, queue=queue.name, message_id=message.message_id)
            )
            continue
        # Normally a message is dead-lettered as its last lease ends; this catches a
        # max_receive_count lowered since then: it would now be received once too often.
        dlq = _over_receive_limit(view, queue, message)
        if dlq is not None:
            events.extend(_dead_letter(view, queue, dlq, message, ctx, "receive limit lowered"))
            continue
        group = [message]
        if message.group_id is not None:
            # A group's head comes with as many of the messages right behind it as fit, in
            # order, as SQS FIFO queues deliver: the group is in flight as one.
            for follower in view.waiting(
                queue.queue_id, message.group_id, message.position, room - len(taken) - 1
            ):
                if (
                    follower.visible_at > now
                    or _retention_passed(queue, follower, now)
                    or _over_receive_limit(view, queue, follower) is not None
                ):
                    break  # it takes its turn as the head, where those are dealt with
                group.append(follower)
        for leased in group:
            receipt = receipt_for(leased.message_id, ctx.new_receipt())
            events.append(
                MessageLeased(
                    at=ctx.now,
                    queue=queue.name,
                    message_id=leased.message_id,
                    lease=lease_of(receipt),
                    receive_count=leased.receive_count + 1,
                    visible_at=lease_end,
                )
            )
            taken.append((leased, receipt))
    bodies = view.published([m.position for m, _ in taken])
    deliveries = [
        Delivery(
            id=message.message_id,
            body=bodies[message.position].body,
            attributes=bodies[message.position].attributes,
            receipt=receipt,
            receive_count=message.receive_count + 1,
            published_at=from_us(message.published_at),
            position=message.position,
            visible_at=lease_end,
            priority=bodies[message.position].priority,
            group_id=message.group_id,
            trace=bodies[message.position].trace,
            typed_attributes=bodies[message.position].typed_attributes,
            dedup_id=bodies[message.position].dedup_id,
            key=bodies[message.position].key,
            first_received_at=ctx.now
            if message.first_leased_at is None
            else from_us(message.first_leased_at),
        )
        for message, receipt in taken
    ]
    # Only a receive that found nothing needs to know when the next delayed message shows:
    # its long poll sleeps until then (no event marks the end of a delay).
    next_visible = None if deliveries else view.next_visible_at(queue.queue_id, now)
    return Decision(events, ReceiveReply(deliveries, next_visible))


def _holds_lease(message: MessageState, lease: str, now: int) -> bool:
    return message.status == "leased" and message.lease == lease and message.visible_at > now


def _may_ack(message: MessageState, lease: str) -> bool:
    """An ack settles the message while its last lease is still the latest one: in flight, or
    expired without anyone leasing it since (API.md, "Clarifications of v1"). A nack gave the
    lease up; another receive, a purge, an expiry or a dead-lettering took it away."""
    return message.status in ("leased", "ready", "waiting") and message.lease == lease


def _leased_message(
    view: StateView, queue: QueueState, message_id: str, receipt: str, now: int
) -> MessageState:
    message = view.message(message_id)
    if message is None or message.queue_id != queue.queue_id:
        raise MessageNotFoundError(f"message {message_id!r} not found in queue {queue.name!r}")
    lease = lease_of(receipt)
    if not _holds_lease(message, lease, now):
        if message.lease is not None and message.lease != lease:
            raise LeaseSupersededError(
                "the message was received again since this receipt", field="receipt"
            )
        raise LeaseLostError("the receipt no longer holds the message's lease", field="receipt")
    return message


def _ack(view: StateView, command: AckMessages, ctx: Context) -> Decision:
    queue = _require(view, command.queue)
    events: list[AnyEvent] = []
    results: list[tuple[str, AckOutcome]] = []
    acked_here: dict[str, str] = {}
    found = view.messages([entry.message_id for entry in command.entries])
    for entry in command.entries:
        message = found.get(entry.message_id)
        lease = lease_of(entry.receipt)
        outcome: AckOutcome
        if message is None or message.queue_id != queue.queue_id:
            outcome = "not_found"
        elif entry.message_id in acked_here:
            outcome = "acked" if acked_here[entry.message_id] == lease else "lease_lost"
        elif _may_ack(message, lease):
            events.append(
                MessageAcked(at=ctx.now, queue=queue.name, message_id=entry.message_id, lease=lease)
            )
            acked_here[entry.message_id] = lease
            outcome = "acked"
        elif message.status == "acked" and message.lease == lease:
            outcome = "acked"  # the same receipt again: acks are idempotent
        else:
            outcome = "lease_lost"
        results.append((entry.message_id, outcome))
    return Decision(events, AckReply(results, view.next_position + len(events) - 1))


def _nack(view: StateView, command: NackMessage, ctx: Context) -> Decision:
    queue = _require(view, command.queue)
    message = _leased_message(view, queue, command.message_id, command.receipt, ctx.now_us)
    visible_at = ctx.now + timedelta(seconds=command.delay_s)
    events: list[AnyEvent] = [
        MessageNacked(
            at=ctx.now,
            queue=queue.name,
            message_id=message.message_id,
            lease=lease_of(command.receipt),
            visible_at=visible_at,
            reason=command.reason,
        )
    ]
    # This nack's reason is the message's last one now (what a dead-letter copy records).
    nacked = msgspec.structs.replace(message, reason=command.reason)
    events.extend(_after_release(view, queue, nacked, ctx, "nacked"))
    return Decision(events, NackReply(view.next_position + len(events) - 1))


def _extend(view: StateView, command: ExtendLease, ctx: Context) -> Decision:
    queue = _require(view, command.queue)
    message = _leased_message(view, queue, command.message_id, command.receipt, ctx.now_us)
    visible_at = ctx.now + timedelta(seconds=command.visibility_timeout_s)
    event = MessageLeaseExtended(
        at=ctx.now,
        queue=queue.name,
        message_id=message.message_id,
        lease=lease_of(command.receipt),
        visible_at=visible_at,
    )
    return Decision([event], ExtendReply(visible_at, view.next_position))


def _redrive(view: StateView, command: RedriveMessages, ctx: Context) -> Decision:
    queue = _require(view, command.queue)
    named: QueueState | None = None
    if command.to is not None:
        named = view.queue(command.to)
        if named is None:
            raise InvalidCommandError(f"queue {command.to!r} does not exist", field="to")
        if named.queue_id == queue.queue_id:
            raise InvalidCommandError("cannot redrive a queue into itself", field="to")
        _same_kind(queue, named, "to")
    now = ctx.now_us
    moving: list[tuple[MessageState, MessagePublished, QueueState]] = []
    after = 0
    while len(moving) < command.max:
        # Every available message (a group's waiting ones too), by position, until enough
        # match: a filter may pass over many.
        chunk = view.available(queue.queue_id, now, after, _REDRIVE_CHUNK)
        if not chunk:
            break
        after = chunk[-1].position
        bodies = view.published([m.position for m in chunk])
        for message in chunk:
            original = bodies[message.position]
            if _retention_passed(queue, message, now) or not _matches(
                command.where, message, original
            ):
                continue
            target = named
            if target is None:
                source = original.attributes.get(SOURCE_QUEUE)
                target = view.queue(source) if source is not None else None
            if (
                target is None
                or target.queue_id == queue.queue_id
                or bool(target.fifo) != bool(queue.fifo)  # a source made another kind since
            ):
                continue  # no live queue to go back to as it is: the message stays here
            moving.append((message, original, target))
            if len(moving) == command.max:
                break
    if command.dry_run:
        sample = [message.message_id for message, _, _ in moving[:_DRY_RUN_SAMPLE]]
        return Decision([], DryRunReply(len(moving), sample))
    events: list[AnyEvent] = []
    for message, original, target in moving:
        new_id = ctx.new_id()
        attributes = {
            key: value
            for key, value in original.attributes.items()
            if key not in RESERVED_ATTRIBUTES
        }
        events.append(
            MessageRedriven(
                at=ctx.now,
                queue=queue.name,
                message_id=message.message_id,
                to_queue=target.name,
                new_message_id=new_id,
            )
        )
        events.append(
            MessagePublished(
                at=ctx.now,
                queue=target.name,
                message_id=new_id,
                body=original.body,
                attributes=attributes,
                priority=original.priority,
                group_id=original.group_id,
                key=original.key,
            )
        )
    return Decision(events, RedriveReply(len(moving), view.next_position + len(events) - 1))


def _matches(
    where: RedriveFilter | None, message: MessageState, original: MessagePublished
) -> bool:
    if where is None:
        return True
    attributes = original.attributes
    if any(attributes.get(key) != value for key, value in where.attributes.items()):
        return False
    if where.reason is not None and where.reason not in (message.reason or ""):
        return False
    if where.published_after is not None and message.published_at <= to_us(where.published_after):
        return False
    if where.published_before is not None and message.published_at >= to_us(where.published_before):
        return False
    return where.source_queue is None or attributes.get(SOURCE_QUEUE) == where.source_queue


def _undo_purge(view: StateView, command: UndoPurge, ctx: Context) -> Decision:
    queue = _require(view, command.queue)
    purge = view.purge(command.purge)
    if purge is None or purge.queue_id != queue.queue_id:
        raise PurgeNotFoundError(f"no purge {command.purge} of queue {queue.name!r}")
    if purge.undone:  # a second undo restores nothing
        return Decision([], UndoReply(0, 0, view.next_position - 1))
    now = ctx.now_us
    removed = view.purged_by(queue.queue_id, purge.position)
    restored = [m for m in removed if not _retention_passed(queue, m, now)]
    skipped = len(removed) - len(restored)
    events: list[AnyEvent] = [
        QueuePurgeUndone(
            at=ctx.now,
            queue=queue.name,
            purge=purge.position,
            restored=len(restored),
            skipped=skipped,
        )
    ]
    events += [
        MessageRestored(at=ctx.now, queue=queue.name, message_id=m.message_id, purge=purge.position)
        for m in restored
    ]
    return Decision(events, UndoReply(len(restored), skipped, view.next_position + len(events) - 1))


def _restore(view: StateView, command: RestoreQueue, ctx: Context) -> Decision:
    if view.queue(command.queue) is not None:
        raise QueueExistsError(f"a live queue is called {command.queue!r}")
    deleted = view.deleted_queue(command.queue)
    if deleted is None:
        raise QueueNotFoundError(f"no deleted queue called {command.queue!r}")
    events: list[AnyEvent] = [QueueRestored(at=ctx.now, queue=deleted.name)]
    # It comes back as it was at deletion, less what outlived retention meanwhile.
    cutoff = ctx.now_us - deleted.retention_s * 1_000_000
    _, stale = view.due(deleted.queue_id, ctx.now_us, cutoff, _RESTORE_EXPIRIES)
    events += [
        MessageExpired(at=ctx.now, queue=deleted.name, message_id=m.message_id) for m in stale
    ]
    return Decision(events, QueueReply(deleted.name, view.next_position + len(events) - 1))


def _sweep(view: StateView, command: Sweep, ctx: Context) -> Decision:
    now = ctx.now_us
    if command.queue is None:
        # Only the queues that may have something due (``QueueDue``): what every other queue
        # would have given is nothing, so the events are those of a visit to every queue.
        queues = view.due_queues(now, command.queues)
    else:
        one = view.queue(command.queue)
        queues = [] if one is None else [one]
    events: list[AnyEvent] = []
    for queue in queues:
        cutoff = now - queue.retention_s * 1_000_000
        leases, stale = view.due(queue.queue_id, now, cutoff, command.limit)
        for message in leases:
            events.append(
                MessageLeaseExpired(
                    at=ctx.now,
                    queue=queue.name,
                    message_id=message.message_id,
                    lease=message.lease or "",
                )
            )
            events.extend(_after_release(view, queue, message, ctx, "lease expired"))
        for message in stale:
            events.append(
                MessageExpired(at=ctx.now, queue=queue.name, message_id=message.message_id)
            )
        task = move_task_of(queue)
        if task is not None:
            events.extend(_move_some(view, queue, task, ctx))
    visited = tuple(q.queue_id for q in queues) if command.queue is None else ()
    return Decision(events, SweepReply(len(events), visited))


MOVE_BATCH: Final = 500
"""At most this many messages a sweep moves for one task (SQS's own limit per second)."""


def _move_some(view: StateView, queue: QueueState, task: MoveTask, ctx: Context) -> list[AnyEvent]:
    """A running move task's next messages, as fast as its rate allows since it started; the
    task ends when a batch finds fewer messages to move than it could have moved."""
    rate = task.max_per_second or MOVE_BATCH
    allowed = min(MOVE_BATCH, rate * (ctx.now_us - task.started_at) // 1_000_000 - task.moved)
    if allowed <= 0:
        return []
    try:
        moved = _redrive(
            view, RedriveMessages(queue=queue.name, to=task.destination, max=allowed), ctx
        )
    except BrokerError as error:  # the destination was deleted since
        return [_ended(queue, task, ctx, "FAILED", task.moved, error.detail)]
    events = [
        msgspec.structs.replace(e, task=task.task) if isinstance(e, MessageRedriven) else e
        for e in moved.events
    ]
    assert isinstance(moved.reply, RedriveReply)
    if moved.reply.moved < allowed:
        events.append(_ended(queue, task, ctx, "COMPLETED", task.moved + moved.reply.moved))
    return events


def _ended(
    queue: QueueState,
    task: MoveTask,
    ctx: Context,
    status: str,
    moved: int,
    reason: str | None = None,
) -> QueueMoveTaskEnded:
    return QueueMoveTaskEnded(
        at=ctx.now, queue=queue.name, task=task.task, status=status, moved=moved, reason=reason
    )


def _start_move(view: StateView, command: StartMoveTask, ctx: Context) -> Decision:
    queue = _require(view, command.queue)
    if queue.move_task is not None:
        raise InvalidCommandError(
            f"queue {queue.name!r} already has a running move task", field="task"
        )
    if not any(q.dead_letter_queue == queue.name for q in view.live_queues()):
        raise InvalidCommandError(
            f"queue {queue.name!r} is no queue's dead-letter queue", field="queue"
        )
    if command.destination is not None:
        target = view.queue(command.destination)
        if target is None or target.queue_id == queue.queue_id:
            raise InvalidCommandError(
                f"destination {command.destination!r} is not another live queue",
                field="destination",
            )
        _same_kind(queue, target, "destination")
    started = QueueMoveTaskStarted(
        at=ctx.now,
        queue=queue.name,
        task=command.task,
        destination=command.destination,
        max_per_second=command.max_per_second,
        to_move=view.count_live(queue.queue_id),
    )
    return Decision([started], MoveTaskReply(command.task, 0, view.next_position))


def _cancel_move(view: StateView, command: CancelMoveTask, ctx: Context) -> Decision:
    queue = _require(view, command.queue)
    task = move_task_of(queue)
    if task is None or task.task != command.task:
        raise MoveTaskNotFoundError(f"no running move task {command.task!r} on {queue.name!r}")
    ended = _ended(queue, task, ctx, "CANCELLED", task.moved)
    return Decision([ended], MoveTaskReply(task.task, task.moved, view.next_position))
