"""Inbound intents. The value ranges live here, once, as annotated types; the API's request
schemas reuse them, so validation and documentation cannot drift apart."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal, TypeAlias

import msgspec
from msgspec import Meta

from broker.events import Trace, TypedAttribute

# "(?!\n)": Python's "$" also matches before a final newline, so without it "orders\n" would
# pass as a name (and as a different queue that a scope for "orders" also matches). In the
# JSON Schema (ECMA-262) reading of the pattern it changes nothing. "(?!\.\.?$)": "." and ".."
# are path segments that URLs resolve away, so such a queue could never be addressed.
QUEUE_NAME_PATTERN: Final = r"^(?!\.\.?$)[A-Za-z0-9_.-]{1,80}$(?!\n)"
QUEUE_NAME_RULE: Final = "1 to 80 characters: letters, digits, '_', '.', '-'; not '.' or '..'"
"""``QUEUE_NAME_PATTERN`` in words, for people (error messages say this, not the regex)."""
ATTRIBUTE_KEY_PATTERN: Final = r"^[A-Za-z0-9_.-]{1,128}$(?!\n)"
MAX_ATTRIBUTES: Final = 16
MAX_ATTRIBUTE_VALUE: Final = 1024
DEDUP_WINDOW_S: Final = 300

QueueName = Annotated[str, Meta(pattern=QUEUE_NAME_PATTERN, description="Queue name.")]
VisibilityTimeout = Annotated[int, Meta(ge=0, le=43200)]
Delay = Annotated[int, Meta(ge=0, le=900)]
NackDelay = Annotated[int, Meta(ge=0, le=43200)]
Retention = Annotated[int, Meta(ge=60, le=1209600)]
MaxReceiveCount = Annotated[int, Meta(ge=1, le=1000)]
AttributeKey = Annotated[str, Meta(pattern=ATTRIBUTE_KEY_PATTERN)]
AttributeValue = Annotated[str, Meta(max_length=MAX_ATTRIBUTE_VALUE)]
Attributes = Annotated[dict[AttributeKey, AttributeValue], Meta(max_length=MAX_ATTRIBUTES)]
DedupId = Annotated[str, Meta(min_length=1, max_length=128)]
Receipt = Annotated[str, Meta(min_length=1, max_length=256)]
MessageId = Annotated[str, Meta(min_length=1, max_length=64)]
Reason = Annotated[str, Meta(max_length=1024)]
BatchSize = Annotated[int, Meta(ge=1, le=100)]
WaitSeconds = Annotated[float, Meta(ge=0, le=20)]
GROUP_ID_PATTERN: Final = r"^[A-Za-z0-9_.:-]{1,128}$(?!\n)"
Priority = Annotated[int, Meta(ge=0, le=9, description="Higher is delivered first.")]
GroupId = Annotated[
    str,
    Meta(
        pattern=GROUP_ID_PATTERN,
        description="Messages of one group go in order, one receive at a time.",
    ),
]
DEFAULT_PRIORITY: Final = 4
MaxMessageBytes = Annotated[
    int, Meta(ge=1024, le=1048576, description="The largest message body the queue takes.")
]
ReceiveWait = Annotated[
    int, Meta(ge=0, le=20, description="How long a receive waits when it does not say.")
]
TagKey = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[\w\s.:/=+\-@]+$(?!\n)")]
TagValue = Annotated[str, Meta(max_length=256, pattern=r"^[\w\s.:/=+\-@]*$(?!\n)")]
Tags = Annotated[dict[TagKey, TagValue], Meta(max_length=50)]
RedriveAllowPolicy = Annotated[
    str,
    Meta(
        max_length=4096,
        description="Which queues may name this one as their dead-letter queue (SQS's JSON).",
    ),
]
Policy = Annotated[
    str,
    Meta(
        max_length=8192,
        description="SQS's access policy (a JSON object), kept as given: never enforced, Cairn's"
        " scopes decide who may do what.",
    ),
]
KmsKeyId = Annotated[
    str, Meta(min_length=1, max_length=2048, description="SQS's KmsMasterKeyId, kept as given.")
]
KmsReusePeriod = Annotated[
    int, Meta(ge=60, le=86400, description="SQS's KmsDataKeyReusePeriodSeconds, kept as given.")
]
RedrivePolicyText = Annotated[
    str,
    Meta(
        max_length=4096,
        description="SQS's RedrivePolicy as it was sent (the SQS door shows it while it still"
        " says what dead_letter_queue and max_receive_count say).",
    ),
]
DeduplicationScope = Literal["queue", "messageGroup"]
FifoThroughputLimit = Literal["perQueue", "perMessageGroupId"]
DEFAULT_MAX_MESSAGE_BYTES: Final = 262144
MAX_KEY_BYTES: Final = 256
MessageKey = Annotated[
    str,
    Meta(
        max_length=MAX_KEY_BYTES,
        description="The message's key (at most 256 bytes of UTF-8); a FIFO queue's group when"
        " it has no group_id.",
    ),
]
RESERVED_QUEUE_PREFIX: Final = "__"
EVENTS_TOPIC: Final = "cairn.events"
"""The Kafka door's topic of the whole log: no queue may have its name."""


class QueueSettings(msgspec.Struct, frozen=True, kw_only=True):
    visibility_timeout_s: VisibilityTimeout = 30
    delay_s: Delay = 0
    retention_s: Retention = 1209600
    max_receive_count: MaxReceiveCount | None = None
    dead_letter_queue: QueueName | None = None
    max_message_bytes: MaxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES
    receive_wait_s: ReceiveWait = 0
    fifo: bool | None = None
    """Set at creation only; every message needs a group. None: whether the name ends in
    ``.fifo`` (a FIFO queue's name does, and only a FIFO queue's)."""
    content_based_dedup: bool = False
    """FIFO only: a message without a dedup id is deduplicated by its body's SHA-256."""
    tags: Tags = {}
    redrive_allow_policy: RedriveAllowPolicy | None = None
    # v1.2: the rest of SQS's attributes. Stored and shown; only deduplication_scope acts
    # (Cairn encrypts nothing it was not already, and enforces its scopes, not policies).
    policy: Policy | None = None
    kms_master_key_id: KmsKeyId | None = None
    kms_data_key_reuse_period_s: KmsReusePeriod = 300
    sqs_managed_sse: bool = False
    deduplication_scope: DeduplicationScope | None = None
    """FIFO only (None: ``queue`` on a FIFO queue): ``messageGroup`` deduplicates within each
    group, so one dedup id may be used once per group."""
    fifo_throughput_limit: FifoThroughputLimit | None = None
    """FIFO only (None: ``perQueue`` on a FIFO queue); kept, not enforced."""
    redrive_policy: RedrivePolicyText | None = None
    """SQS's RedrivePolicy text as sent; a change of ``dead_letter_queue`` or
    ``max_receive_count`` that does not set it too clears it."""


class Command(msgspec.Struct, frozen=True, kw_only=True):
    queue: str
    trace: Trace | None = None
    """The request's trace context: stored on every event the command appends."""


class CreateQueue(Command, frozen=True, kw_only=True):
    settings: QueueSettings


class UpdateQueue(Command, frozen=True, kw_only=True):
    """``changes`` holds only the settings the client named (a PATCH)."""

    changes: dict[str, int | str | bool | dict[str, str] | None]


class DeleteQueue(Command, frozen=True, kw_only=True):
    """Soft-delete the queue."""


class PurgeQueue(Command, frozen=True, kw_only=True):
    """Remove every available, delayed and in-flight message."""


class NewMessage(msgspec.Struct, frozen=True, kw_only=True):
    message_id: str
    body: msgspec.Raw
    attributes: dict[str, str] = {}
    delay_s: int | None = None
    dedup_id: str | None = None
    priority: int = DEFAULT_PRIORITY
    group_id: str | None = None
    typed_attributes: dict[str, TypedAttribute] = {}
    size: int | None = None
    """The message's size as its door counts it against the queue's ``max_message_bytes``
    (SQS: body and attributes; Kafka: the record's value); None: the JSON body's bytes."""
    key: str | None = None


class ProducerBatch(msgspec.Struct, frozen=True, kw_only=True):
    """A batch from an idempotent producer: its id and epoch, and the sequence of the batch's
    first message (the next ones follow it)."""

    producer_id: int
    epoch: int
    base_sequence: int


class PublishMessages(Command, frozen=True, kw_only=True):
    """One or many messages; all of them are published or none is."""

    messages: tuple[NewMessage, ...]
    producer: ProducerBatch | None = None
    """Sent by an idempotent producer: a retried batch publishes nothing again, a gap in its
    sequence is refused."""


class ReceiveMessages(Command, frozen=True, kw_only=True):
    max_messages: int = 1
    visibility_timeout_s: int | None = None


class AckEntry(msgspec.Struct, frozen=True, kw_only=True):
    message_id: str
    receipt: str


class AckMessages(Command, frozen=True, kw_only=True):
    """Each entry is decided on its own: one stale receipt does not fail the others."""

    entries: tuple[AckEntry, ...]


class NackMessage(Command, frozen=True, kw_only=True):
    message_id: str
    receipt: str
    delay_s: int = 0
    reason: str | None = None


class ExtendLease(Command, frozen=True, kw_only=True):
    message_id: str
    receipt: str
    visibility_timeout_s: int


class RedriveFilter(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which messages a redrive moves; every condition given must hold."""

    attributes: Attributes = {}
    """Each of these attributes, with exactly this value."""
    reason: Reason | None = None
    """A substring of the message's last nack reason, or of why it was dead-lettered."""
    published_after: datetime | None = None
    published_before: datetime | None = None
    source_queue: QueueName | None = None
    """The queue it was dead-lettered from."""


class RedriveMessages(Command, frozen=True, kw_only=True):
    to: str | None = None
    max: int = 100
    where: RedriveFilter | None = None
    dry_run: bool = False
    """Say what would move (how many, and a sample), and write nothing."""


class UndoPurge(Command, frozen=True, kw_only=True):
    """Make what the purge at position ``purge`` removed available again."""

    purge: int


class RestoreQueue(Command, frozen=True, kw_only=True):
    """Bring the most recently deleted queue of this name back."""


class StartMoveTask(Command, frozen=True, kw_only=True):
    """Move this (dead-letter) queue's available messages, over time, as the sweeper goes."""

    task: str
    destination: str | None = None
    max_per_second: int | None = None


class CancelMoveTask(Command, frozen=True, kw_only=True):
    task: str


class Sweep(msgspec.Struct, frozen=True, kw_only=True):
    """Record the time-driven transitions that are due: lease expiry, retention expiry and the
    dead-lettering they may cause. ``queue`` limits the sweep to one queue."""

    queue: str | None = None
    limit: int = 500
    """At most this many lease ends, and as many retention expiries, per queue."""
    queues: int = 1000
    """At most this many queues a full sweep visits (those due longest first)."""


AnyCommand: TypeAlias = (
    CreateQueue
    | UpdateQueue
    | DeleteQueue
    | PurgeQueue
    | PublishMessages
    | ReceiveMessages
    | AckMessages
    | NackMessage
    | ExtendLease
    | RedriveMessages
    | UndoPurge
    | RestoreQueue
    | StartMoveTask
    | CancelMoveTask
    | Sweep
)
