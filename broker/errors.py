"""One tree of domain errors. Adapters translate driver errors into these; the API maps each
class to a status code in one table (``api/problems.py``)."""

from __future__ import annotations


class BrokerError(Exception):
    """Base of every error the broker raises on purpose."""

    def __init__(self, detail: str, *, field: str | None = None, entry: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.entry = entry
        """Which entry of a command that carries several (a batch) the ``field`` is of."""


class QueueNotFoundError(BrokerError):
    """The queue does not exist or was deleted."""


class QueueExistsError(BrokerError):
    """A live queue already has that name."""


class MessageNotFoundError(BrokerError):
    """No message with that id in that queue."""


class PurgeNotFoundError(BrokerError):
    """No purge with that id in that queue."""


class MessageTooLargeError(BrokerError):
    """A message over its queue's ``max_message_bytes``."""


class MoveTaskNotFoundError(BrokerError):
    """No running move task with that handle on that queue."""


class LeaseLostError(BrokerError):
    """The receipt no longer holds the message's lease (expired, re-leased, acked or purged)."""


class LeaseSupersededError(LeaseLostError):
    """The message was received again since this receipt: a newer receipt holds it (SQS
    answers such a receipt differently from one whose message is simply not in flight)."""


class InvalidCommandError(BrokerError):
    """Well-formed but not acceptable against the current state: inconsistent dead-letter
    settings, a reference to a queue that does not exist."""


class OutOfOrderSequenceError(BrokerError):
    """An idempotent producer's batch does not follow the last one it sent (a gap)."""


class ProducerFencedError(BrokerError):
    """An idempotent producer's epoch is older than one already seen for its id."""


class IdempotencyKeyReusedError(BrokerError):
    """The idempotency key was used before with another method, path or body."""


class StoreUnavailableError(BrokerError):
    """The event store could not be reached or refused the transaction."""


class StoreUnreachableError(StoreUnavailableError):
    """The store could not be reached at all (no connection, or it broke): unlike a store that
    answers but refuses writes (a full disk), this ends the moment it can be reached again."""
