"""SQS's errors: each has a shape name (the JSON protocol's ``{"__type":
"com.amazonaws.sqs#<Shape>", "message": ...}``, with the ``x-amzn-query-error: <code>;Sender``
header that botocore reads), the query protocol's code (its XML ``<Code>``, which SDKs report in
either protocol) and a status."""

from __future__ import annotations

from typing import Final

from broker import errors

_ERRORS: Final[dict[str, tuple[str, int]]] = {
    # shape name: (the query protocol's code, status)
    "QueueDoesNotExist": ("AWS.SimpleQueueService.NonExistentQueue", 400),
    "QueueNameExists": ("QueueAlreadyExists", 400),
    "ReceiptHandleIsInvalid": ("ReceiptHandleIsInvalid", 400),
    "MessageNotInflight": ("AWS.SimpleQueueService.MessageNotInflight", 400),
    "TooManyEntriesInBatchRequest": ("AWS.SimpleQueueService.TooManyEntriesInBatchRequest", 400),
    "EmptyBatchRequest": ("AWS.SimpleQueueService.EmptyBatchRequest", 400),
    "BatchEntryIdsNotDistinct": ("AWS.SimpleQueueService.BatchEntryIdsNotDistinct", 400),
    "BatchRequestTooLong": ("AWS.SimpleQueueService.BatchRequestTooLong", 400),
    "InvalidBatchEntryId": ("AWS.SimpleQueueService.InvalidBatchEntryId", 400),
    "InvalidAttributeName": ("InvalidAttributeName", 400),
    "InvalidAttributeValue": ("InvalidAttributeValue", 400),
    "InvalidMessageContents": ("InvalidMessageContents", 400),
    "UnsupportedOperation": ("AWS.SimpleQueueService.UnsupportedOperation", 400),
    "InvalidParameterValue": ("InvalidParameterValue", 400),
    "MissingParameter": ("MissingParameter", 400),
    "InvalidAction": ("InvalidAction", 400),
    "MissingAction": ("MissingAction", 400),
    "MalformedQueryString": ("MalformedQueryString", 400),
    "SerializationException": ("SerializationException", 400),
    "UnsupportedMediaType": ("UnsupportedMediaType", 415),
    "ResourceNotFoundException": ("ResourceNotFoundException", 404),
    "RequestThrottled": ("RequestThrottled", 400),
    "AccessDenied": ("AccessDenied", 403),
    "InvalidClientTokenId": ("InvalidClientTokenId", 403),
    "SignatureDoesNotMatch": ("SignatureDoesNotMatch", 403),
    "ServiceUnavailable": ("ServiceUnavailable", 503),
    "InternalError": ("InternalError", 500),
}


class SqsError(Exception):
    """An SQS error answer. ``shape`` names it (``QueueDoesNotExist``...)."""

    def __init__(self, shape: str, message: str) -> None:
        super().__init__(message)
        assert shape in _ERRORS, shape
        self.shape = shape
        self.message = message

    @property
    def code(self) -> str:
        return _ERRORS[self.shape][0]

    @property
    def status(self) -> int:
        return _ERRORS[self.shape][1]

    @property
    def sender_fault(self) -> bool:
        return self.status < 500


NAME: Final = (
    "Can only include alphanumeric characters, periods, hyphens, or underscores. 1 to 80 in"
    " length, and not '.' or '..'."
)
"""SQS's sentence for a name it refuses, saying what Cairn's names are (SQS's own names take no
periods; the domain's do: ``broker.commands.QUEUE_NAME_RULE``)."""
FIFO_NAME: Final = (
    "The name of a FIFO queue can only include alphanumeric characters, periods, hyphens, or"
    " underscores, must end with .fifo suffix and be 1 to 80 in length."
)
STANDARD_NAME: Final = (
    "Can only include alphanumeric characters, periods, hyphens, or underscores. 1 to 80 in"
    " length; a name that ends in .fifo is a FIFO queue's: set FifoQueue to true."
)
_SETTINGS: Final = {
    # A domain refusal naming a setting, said of the SQS attribute that carries it.
    "dead_letter_queue": "RedrivePolicy",
    "max_receive_count": "RedrivePolicy",
    "redrive_allow_policy": "RedriveAllowPolicy",
    "content_based_dedup": "ContentBasedDeduplication",
    "max_message_bytes": "MaximumMessageSize",
    "policy": "Policy",
    "kms_master_key_id": "KmsMasterKeyId",
    "kms_data_key_reuse_period_s": "KmsDataKeyReusePeriodSeconds",
    "sqs_managed_sse": "SqsManagedSseEnabled",
    "deduplication_scope": "DeduplicationScope",
    "fifo_throughput_limit": "FifoThroughputLimit",
    "visibility_timeout_s": "VisibilityTimeout",
    "delay_s": "DelaySeconds",
    "retention_s": "MessageRetentionPeriod",
    "receive_wait_s": "ReceiveMessageWaitTimeSeconds",
    "tags": "Tags",
}


def invalid(message: str) -> SqsError:
    return SqsError("InvalidParameterValue", message)


def missing(parameter: str) -> SqsError:
    return SqsError("MissingParameter", f"The request must contain the parameter {parameter}.")


def from_broker(error: errors.BrokerError) -> SqsError:
    """The SQS error for a domain refusal."""
    match error:
        case errors.QueueNotFoundError():
            return SqsError("QueueDoesNotExist", "The specified queue does not exist.")
        case errors.QueueExistsError():
            return SqsError("QueueNameExists", error.detail)
        case errors.MessageTooLargeError():
            return invalid(f"One or more parameters are invalid. Reason: {error.detail}")
        case errors.MoveTaskNotFoundError():
            return SqsError("ResourceNotFoundException", error.detail)
        case errors.MessageNotFoundError() | errors.LeaseLostError():
            return SqsError("ReceiptHandleIsInvalid", error.detail)
        case errors.StoreUnavailableError():
            return SqsError("ServiceUnavailable", error.detail)
        case errors.InvalidCommandError() if error.field == "name":
            return invalid(NAME)
        case errors.InvalidCommandError() if error.field in _SETTINGS:
            return invalid(
                f"Value for parameter {_SETTINGS[error.field]} is invalid. Reason: {error.detail}."
            )
        case _:
            return invalid(error.detail)
