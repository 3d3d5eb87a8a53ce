"""Request and response bodies of the HTTP API. Value ranges come from ``broker.commands``;
request bodies forbid unknown fields so a typo is a 422, not a silently ignored setting."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from broker.commands import (
    DEFAULT_PRIORITY,
    Attributes,
    DedupId,
    DeduplicationScope,
    Delay,
    FifoThroughputLimit,
    GroupId,
    KmsKeyId,
    KmsReusePeriod,
    MaxMessageBytes,
    MaxReceiveCount,
    MessageId,
    MessageKey,
    NackDelay,
    Policy,
    Priority,
    QueueName,
    QueueSettings,
    Reason,
    Receipt,
    ReceiveWait,
    RedriveAllowPolicy,
    RedriveFilter,
    RedrivePolicyText,
    Retention,
    Tags,
    VisibilityTimeout,
    WaitSeconds,
)
from broker.decide import Delivery, Published
from projections.queries import PublicStatus, QueueResource

INT64_MAX: Final = 2**63 - 1
"""Positions are stored as 64-bit integers; a bigger one in a request is a 422, not a 500."""
Position = Annotated[int, Meta(ge=0, le=INT64_MAX)]
MinPosition = Annotated[
    int, Meta(ge=0, le=INT64_MAX, description="Wait until the read model reflects it.")
]


class CreateQueueRequest(QueueSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: QueueName
    max_message_bytes: MaxMessageBytes | UnsetType = UNSET  # type: ignore[assignment]
    """Left out: the server's default, ``CAIRN_MAX_MESSAGE_BYTES``."""


class UpdateQueueRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    visibility_timeout_s: VisibilityTimeout | UnsetType = UNSET
    delay_s: Delay | UnsetType = UNSET
    retention_s: Retention | UnsetType = UNSET
    max_receive_count: MaxReceiveCount | UnsetType | None = UNSET
    dead_letter_queue: QueueName | UnsetType | None = UNSET
    max_message_bytes: MaxMessageBytes | UnsetType = UNSET
    receive_wait_s: ReceiveWait | UnsetType = UNSET
    content_based_dedup: bool | UnsetType = UNSET
    tags: Tags | UnsetType = UNSET
    redrive_allow_policy: RedriveAllowPolicy | UnsetType | None = UNSET
    policy: Policy | UnsetType | None = UNSET
    kms_master_key_id: KmsKeyId | UnsetType | None = UNSET
    kms_data_key_reuse_period_s: KmsReusePeriod | UnsetType = UNSET
    sqs_managed_sse: bool | UnsetType = UNSET
    deduplication_scope: DeduplicationScope | UnsetType = UNSET
    fifo_throughput_limit: FifoThroughputLimit | UnsetType = UNSET
    redrive_policy: RedrivePolicyText | UnsetType | None = UNSET


class PublishRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    body: msgspec.Raw
    attributes: Attributes = {}
    delay_s: Delay | None = None
    dedup_id: DedupId | None = None
    priority: Priority = DEFAULT_PRIORITY
    group_id: GroupId | None = None
    key: MessageKey | None = None


class BatchPublishRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    messages: Annotated[list[PublishRequest], Meta(min_length=1, max_length=100)]


class ReceiveRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    max_messages: Annotated[int, Meta(ge=1, le=100)] = 1
    visibility_timeout_s: VisibilityTimeout | None = None
    wait_s: WaitSeconds = 0


class AckRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    receipt: Receipt


class NackRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    receipt: Receipt
    delay_s: NackDelay = 0
    reason: Reason | None = None


class ExtendRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    receipt: Receipt
    visibility_timeout_s: VisibilityTimeout


class AckItem(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: MessageId
    receipt: Receipt


class BatchAckRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    acks: Annotated[list[AckItem], Meta(min_length=1, max_length=100)]


class PurgeRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """No options (yet): an empty body, or ``{}``."""


class RedriveRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    to: QueueName | None = None
    max: Annotated[int, Meta(ge=1, le=1000)] = 100
    where: RedriveFilter | None = None
    dry_run: bool = False


class UndoPurgeRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """No options: an empty body, or ``{}``."""


class RestoreQueueRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """No options: an empty body, or ``{}``."""


PublishResponse = Published
"""A publish's answer is the writer's own reply, encoded as it is."""


class BatchPublishResponse(msgspec.Struct):
    results: list[PublishResponse]


class ReceiveResponse(msgspec.Struct):
    messages: list[Delivery]


class ExtendResponse(msgspec.Struct):
    visible_at: datetime


class AckResult(msgspec.Struct):
    id: str
    status: Literal[204, 404, 409]


class BatchAckResponse(msgspec.Struct):
    results: list[AckResult]


class PurgeResponse(msgspec.Struct):
    purged: int
    position: int
    purge_id: str
    """What ``POST /v1/queues/{name}/purges/{purge_id}/undo`` names."""


class UndoPurgeResponse(msgspec.Struct):
    restored: int
    skipped: int
    position: int


class RedriveResponse(msgspec.Struct):
    moved: int
    position: int


class DryRunResponse(msgspec.Struct):
    would_move: int
    sample: list[str]
    """Up to 10 of the ids that would move."""


class QueueList(msgspec.Struct):
    queues: list[QueueResource]
    next_after: str | None
    """The name to pass as ``?after=`` for the next page; null on the last page."""


class ProjectionInfo(msgspec.Struct):
    name: str
    position: int
    lag: int


class ProjectionsResponse(msgspec.Struct):
    projections: list[ProjectionInfo]
    head: int


class ReadQuery(msgspec.Struct, kw_only=True):
    min_position: MinPosition | None = None


_TIME_PATTERN: Final = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
AsOf = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=64,
        description="Read the past: a position, or an RFC 3339 time (the last event then).",
        # In the document only: api/past.py parses it, with errors that say what is wrong.
        extra_json_schema={"pattern": rf"^(?:[0-9]{{1,19}}|{_TIME_PATTERN})$"},
    ),
]


class AsOfQuery(ReadQuery, kw_only=True):
    as_of: AsOf | None = None


Time = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=64,
        description="An RFC 3339 time.",
        extra_json_schema={"pattern": f"^{_TIME_PATTERN}$"},  # parsed by api/past.py
    ),
]


class AnalyticsQuery(ReadQuery, kw_only=True):
    from_: Time | None = msgspec.field(default=None, name="from")
    """Default: an hour before ``to``."""
    to: Time | None = None
    """Default: now."""
    bucket_s: Literal[10, 60, 300, 3600] = 60


QUEUE_PAGE_MAX: Final = 1000


class QueueListQuery(ReadQuery, kw_only=True):
    limit: Annotated[int, Meta(ge=1, le=QUEUE_PAGE_MAX)] = QUEUE_PAGE_MAX
    """At most this many queues (of those the token may read)."""
    after: Annotated[str, Meta(max_length=80)] | None = None
    """Continue after this name (the last page's ``next_after``)."""
    prefix: Annotated[str, Meta(max_length=80)] = ""
    """Only names that start with this (literally: not a pattern)."""


class MessageListQuery(AsOfQuery, kw_only=True):
    status: PublicStatus | None = None
    after: MessageId | None = None
    limit: Annotated[int, Meta(ge=1, le=500)] = 50


class Health(msgspec.Struct):
    status: str
    checks: dict[str, str] = {}
