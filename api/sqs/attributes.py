"""Queue attributes, as SQS names and writes them (strings), to and from Cairn's queue settings;
and message attributes, SQS's typed ones, checked as SQS checks them."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any, Final

from api.sqs.errors import SqsError, invalid
from broker.commands import ATTRIBUTE_KEY_PATTERN, MAX_ATTRIBUTE_VALUE, QueueSettings
from broker.decide import RESERVED_ATTRIBUTES
from broker.events import TypedAttribute
from projections.queries import QueueResource

SQS_DEFAULTS: Final[dict[str, Any]] = {
    # What SQS gives a queue created without them (API.md: queues created through SQS get them).
    "retention_s": 345600,
    "max_message_bytes": 1048576,
    "fifo": False,  # SQS makes a standard queue unless FifoQueue says otherwise, whatever the name
}
_RANGES: Final[dict[str, tuple[str, int, int]]] = {
    # SQS attribute: (setting, min, max)
    "VisibilityTimeout": ("visibility_timeout_s", 0, 43200),
    "DelaySeconds": ("delay_s", 0, 900),
    "MessageRetentionPeriod": ("retention_s", 60, 1209600),
    "MaximumMessageSize": ("max_message_bytes", 1024, 1048576),
    "ReceiveMessageWaitTimeSeconds": ("receive_wait_s", 0, 20),
    "KmsDataKeyReusePeriodSeconds": ("kms_data_key_reuse_period_s", 60, 86400),
}
_FLAGS: Final[dict[str, str]] = {
    "FifoQueue": "fifo",
    "ContentBasedDeduplication": "content_based_dedup",
    "SqsManagedSseEnabled": "sqs_managed_sse",
}
_CHOICES: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "DeduplicationScope": ("deduplication_scope", ("messageGroup", "queue")),
    "FifoThroughputLimit": ("fifo_throughput_limit", ("perQueue", "perMessageGroupId")),
}
_TEXTS: Final[dict[str, str]] = {
    # kept as given; an empty value removes it (the domain checks a policy is a JSON object)
    "Policy": "policy",
    "KmsMasterKeyId": "kms_master_key_id",
}
_COMPUTED: Final = (
    "QueueArn",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)
READABLE: Final = (
    *_RANGES,
    "RedrivePolicy",
    "RedriveAllowPolicy",
    *_FLAGS,
    *_CHOICES,
    *_TEXTS,
    *_COMPUTED,
)
_REDRIVE_PERMISSIONS: Final = ("allowAll", "denyAll", "byQueue")


def settings_changes(attributes: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    """The settings a CreateQueue's or SetQueueAttributes' ``Attributes`` name."""
    if not isinstance(attributes, Mapping):
        raise invalid("Attributes must be a map of attribute names to values.")
    changes: dict[str, Any] = {}
    for name, value in attributes.items():
        if not isinstance(value, str):
            raise SqsError("InvalidAttributeValue", f"Invalid value for the parameter {name}.")
        if name in _RANGES:
            setting, low, high = _RANGES[name]
            changes[setting] = _integer(name, value, low, high)
        elif name in _FLAGS:
            if name == "FifoQueue" and not creating:
                raise SqsError("InvalidAttributeName", "FifoQueue is set when a queue is created.")
            if value not in ("true", "false"):
                raise SqsError("InvalidAttributeValue", f"Invalid value for the parameter {name}.")
            changes[_FLAGS[name]] = value == "true"
        elif name in _CHOICES:
            setting, choices = _CHOICES[name]
            if value not in choices:
                raise SqsError(
                    "InvalidAttributeValue",
                    f"Invalid value for the parameter {name}: it must be one of"
                    f" {', '.join(choices)}.",
                )
            changes[setting] = value
        elif name in _TEXTS:
            changes[_TEXTS[name]] = value or None
        elif name == "RedrivePolicy":
            changes.update(_redrive_policy(value))
        elif name == "RedriveAllowPolicy":
            changes["redrive_allow_policy"] = _redrive_allow_policy(value)
        else:
            raise SqsError("InvalidAttributeName", f"Unknown Attribute {name}.")
    return changes


def new_settings(named: dict[str, Any]) -> QueueSettings:
    """A new queue's settings: those the request named (``settings_changes``), SQS's defaults
    for the rest."""
    return QueueSettings(**(SQS_DEFAULTS | named))


def _integer(name: str, value: str, low: int, high: int) -> int:
    if not re.fullmatch(r"-?[0-9]{1,10}", value) or not low <= int(value) <= high:
        raise SqsError(
            "InvalidAttributeValue",
            f"Invalid value for the parameter {name}: it must be an integer from {low} to {high}.",
        )
    return int(value)


def _redrive_policy(value: str) -> dict[str, Any]:
    """The settings a RedrivePolicy says, and the text itself (echoed as sent)."""
    if value == "":
        return {"dead_letter_queue": None, "max_receive_count": None, "redrive_policy": None}
    try:
        policy = json.loads(value)
        target = policy["deadLetterTargetArn"]
        count = int(policy["maxReceiveCount"])
    except (ValueError, KeyError, TypeError):
        raise SqsError(
            "InvalidAttributeValue",
            "Value for parameter RedrivePolicy is invalid. Reason: Redrive policy is not a"
            " valid JSON map with deadLetterTargetArn and maxReceiveCount.",
        ) from None
    if not isinstance(target, str) or not 1 <= count <= 1000:
        raise SqsError(
            "InvalidAttributeValue",
            "Value for parameter RedrivePolicy is invalid. Reason: maxReceiveCount must be"
            " from 1 to 1000.",
        )
    return {
        "dead_letter_queue": target.rsplit(":", 1)[-1],
        "max_receive_count": count,
        "redrive_policy": value,
    }


def _redrive_allow_policy(value: str) -> str | None:
    if value == "":
        return None
    try:
        policy = json.loads(value)
        permission = policy["redrivePermission"]
    except (ValueError, KeyError, TypeError):
        permission = None
    if permission not in _REDRIVE_PERMISSIONS or (
        permission == "byQueue" and not isinstance(policy.get("sourceQueueArns"), list)
    ):
        raise SqsError(
            "InvalidAttributeValue",
            "Value for parameter RedriveAllowPolicy is invalid. Reason: redrivePermission must"
            " be allowAll, denyAll or byQueue (with sourceQueueArns).",
        )
    return value


def queue_attributes(queue: QueueResource, arn_of: Any, names: list[str]) -> dict[str, str]:
    """The attributes ``names`` asks for (``All``: every one), as SQS answers them."""
    wanted = set(READABLE) if "All" in names else set(names)
    unknown = wanted - set(READABLE)
    if unknown:
        raise SqsError("InvalidAttributeName", f"Unknown Attribute {sorted(unknown)[0]}.")
    stats = queue.stats
    every: dict[str, str | None] = {
        "VisibilityTimeout": str(queue.visibility_timeout_s),
        "DelaySeconds": str(queue.delay_s),
        "MessageRetentionPeriod": str(queue.retention_s),
        "MaximumMessageSize": str(queue.max_message_bytes),
        "ReceiveMessageWaitTimeSeconds": str(queue.receive_wait_s),
        "QueueArn": arn_of(queue.name),
        "CreatedTimestamp": str(int(queue.created_at.timestamp())),
        "LastModifiedTimestamp": str(int(queue.updated_at.timestamp())),
        "ApproximateNumberOfMessages": str(stats.available),
        "ApproximateNumberOfMessagesNotVisible": str(stats.in_flight),
        "ApproximateNumberOfMessagesDelayed": str(stats.delayed),
        "RedrivePolicy": _shown_redrive_policy(queue, arn_of),
        "RedriveAllowPolicy": queue.redrive_allow_policy,
        "Policy": queue.policy,
        "KmsMasterKeyId": queue.kms_master_key_id,
        "KmsDataKeyReusePeriodSeconds": None
        if queue.kms_master_key_id is None
        else str(queue.kms_data_key_reuse_period_s),
        "SqsManagedSseEnabled": "true" if queue.sqs_managed_sse else "false",
        # SQS shows these of FIFO queues only.
        "DeduplicationScope": queue.deduplication_scope if queue.fifo else None,
        "FifoThroughputLimit": queue.fifo_throughput_limit if queue.fifo else None,
        "FifoQueue": "true" if queue.fifo else None,
        "ContentBasedDeduplication": ("true" if queue.content_based_dedup else "false")
        if queue.fifo
        else None,
    }
    return {k: v for k, v in every.items() if k in wanted and v is not None}


def _shown_redrive_policy(queue: QueueResource, arn_of: Any) -> str | None:
    """The RedrivePolicy as it was sent, while it still says what the queue's settings say
    (the domain clears it when they change without it); else written from the settings."""
    if queue.dead_letter_queue is None:
        return None
    if queue.redrive_policy is not None:
        sent = _redrive_policy(queue.redrive_policy)
        if (sent["dead_letter_queue"], sent["max_receive_count"]) == (
            queue.dead_letter_queue,
            queue.max_receive_count,
        ):
            return queue.redrive_policy
    return json.dumps(
        {
            "deadLetterTargetArn": arn_of(queue.dead_letter_queue),
            "maxReceiveCount": queue.max_receive_count,
        },
        separators=(",", ":"),
    )


def differing(queue: QueueResource, named: dict[str, Any]) -> str | None:
    """The first attribute a CreateQueue names that the existing queue has otherwise (SQS
    answers the existing queue's URL when there is none, and QueueNameExists naming it)."""
    for setting, value in named.items():
        if setting != "redrive_policy" and getattr(queue, setting) != value:
            # (the RedrivePolicy's text is not compared: what it says is)
            return _ATTRIBUTE_OF[setting]
    return None


_ATTRIBUTE_OF: Final[dict[str, str]] = {
    **{setting: name for name, (setting, _, _) in _RANGES.items()},
    **{setting: name for name, setting in _FLAGS.items()},
    **{setting: name for name, (setting, _) in _CHOICES.items()},
    **{setting: name for name, setting in _TEXTS.items()},
    "dead_letter_queue": "RedrivePolicy",
    "max_receive_count": "RedrivePolicy",
    "redrive_allow_policy": "RedriveAllowPolicy",
    "tags": "tags",
}


# -- message attributes --------------------------------------------------------------------------

_ATTRIBUTE_NAME: Final = re.compile(r"[A-Za-z0-9_.\-]{1,256}")
_DATA_TYPE: Final = re.compile(r"(String|Number|Binary)(\.[A-Za-z0-9_.\-]{1,250})?")
_NUMBER: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
MAX_MESSAGE_ATTRIBUTES: Final = 10


def message_attributes(given: Any) -> dict[str, TypedAttribute]:
    """SendMessage's ``MessageAttributes``, checked; Binary values stay base64 (as sent)."""
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise invalid("MessageAttributes must be a map.")
    if len(given) > MAX_MESSAGE_ATTRIBUTES:
        raise invalid(
            f"Number of message attributes [{len(given)}] exceeds the allowed maximum"
            f" [{MAX_MESSAGE_ATTRIBUTES}]."
        )
    typed: dict[str, TypedAttribute] = {}
    for name, value in given.items():
        if (
            not _ATTRIBUTE_NAME.fullmatch(name)
            or name.startswith((".", "AWS.", "Amazon."))
            or name.endswith(".")
            or ".." in name
        ):
            raise invalid(f"Message attribute name '{name}' is invalid.")
        if not isinstance(value, dict) or not isinstance(value.get("DataType"), str):
            raise invalid(f"The message attribute '{name}' must contain a non-empty data type.")
        data_type: str = value["DataType"]
        if not _DATA_TYPE.fullmatch(data_type):
            raise invalid(f"The message attribute '{name}' has an invalid message attribute type.")
        if "StringListValues" in value or "BinaryListValues" in value:
            raise invalid(f"Message attribute list values in '{name}' are not supported.")
        if data_type.startswith("Binary"):
            binary = value.get("BinaryValue")
            if not isinstance(binary, str) or not _base64(binary):
                raise invalid(f"The message attribute '{name}' must contain a binary value.")
            typed[name] = TypedAttribute(data_type, binary_value=binary)
            continue
        string = value.get("StringValue")
        if not isinstance(string, str) or string == "":
            raise invalid(f"The message attribute '{name}' must contain a non-empty value.")
        if data_type.startswith("Number") and not _NUMBER.fullmatch(string):
            raise invalid(f"Can't cast the value of message attribute '{name}' to a number.")
        typed[name] = TypedAttribute(data_type, string_value=string)
    return typed


def _base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def attributes_size(typed: dict[str, TypedAttribute]) -> int:
    """What the attributes count towards the message size, as SQS counts it."""
    size = 0
    for name, attribute in typed.items():
        value = (
            len(base64.b64decode(attribute.binary_value))
            if attribute.binary_value is not None
            else len((attribute.string_value or "").encode())
        )
        size += len(name.encode()) + len(attribute.data_type.encode()) + value
    return size


_PLAIN_NAME: Final = re.compile(ATTRIBUTE_KEY_PATTERN)


def split_plain(
    typed: dict[str, TypedAttribute],
) -> tuple[dict[str, str], dict[str, TypedAttribute]]:
    """SQS attributes as a message keeps them: the plain ``String`` ones that a native
    attribute can hold are native attributes (so native consumers and redrive filters see
    them, and they cost what native ones cost); the others stay typed. ``as_sqs`` gives back
    exactly what was sent."""
    plain: dict[str, str] = {}
    kept: dict[str, TypedAttribute] = {}
    for name, attribute in typed.items():
        value = attribute.string_value
        if (
            attribute.data_type == "String"
            and value is not None
            and len(value) <= MAX_ATTRIBUTE_VALUE
            and _PLAIN_NAME.match(name)
            and name not in RESERVED_ATTRIBUTES
        ):
            plain[name] = value
        else:
            kept[name] = attribute
    return plain, kept


def as_sqs(
    attributes: dict[str, str], typed: dict[str, TypedAttribute]
) -> dict[str, TypedAttribute]:
    """A message's attributes as SQS shows them: its native (string) attributes as String
    attributes, and its typed ones as they were sent (its trace header is a system one)."""
    shown = {name: TypedAttribute("String", string_value=v) for name, v in attributes.items()}
    return shown | {name: a for name, a in typed.items() if name != TRACE_HEADER}


TRACE_HEADER: Final = "AWS.TraceHeader"
"""Where a message keeps SQS's ``AWSTraceHeader`` system attribute: among its typed attributes
(shown natively), under a name no SQS message attribute may have (``AWS.`` is SQS's)."""


def trace_header(given: Any) -> dict[str, TypedAttribute]:
    """SendMessage's ``MessageSystemAttributes``: ``AWSTraceHeader``, a String, is the only
    one SQS takes."""
    if not given:
        return {}
    if not isinstance(given, dict):
        raise invalid("MessageSystemAttributes must be a map.")
    for name, value in given.items():
        if name != "AWSTraceHeader":
            raise invalid(f"Message system attribute name '{name}' is invalid.")
        if (
            not isinstance(value, dict)
            or value.get("DataType") != "String"
            or not isinstance(value.get("StringValue"), str)
            or not value["StringValue"]
        ):
            raise invalid(
                "The message system attribute 'AWSTraceHeader' must be a String with a value."
            )
    return {
        TRACE_HEADER: TypedAttribute("String", string_value=given["AWSTraceHeader"]["StringValue"])
    }


def trace_header_of(typed: dict[str, TypedAttribute]) -> str | None:
    found = typed.get(TRACE_HEADER)
    return None if found is None else found.string_value


def selected(attributes: dict[str, TypedAttribute], names: list[str]) -> dict[str, TypedAttribute]:
    """ReceiveMessage's ``MessageAttributeNames``: ``All``, ``.*``, ``prefix.*`` or names."""
    if "All" in names or ".*" in names:
        return attributes
    prefixes = tuple(n[:-1] for n in names if n.endswith(".*"))
    exact = set(names)
    return {
        k: v for k, v in attributes.items() if k in exact or (prefixes and k.startswith(prefixes))
    }
