"""What both consumers (``threads.py`` for ``Client``, ``tasks.py`` for ``AsyncClient``) decide
alike: how a handler's outcome settles its message, when each lease needs extending, and what
a failed receive means.

A consumer receives only as many messages as it has idle handlers, so nothing it holds waits
in a local backlog while its lease runs out: every message it has leased is being handled.
While a handler runs, its lease is extended every third of the visibility timeout, so a
handler slower than the timeout never sees its message delivered to someone else. When the
handler returns the message is acked; when it raises, nacked with the exception as reason.

Stopping (``stop()``, or SIGINT/SIGTERM when the consumer runs in the main thread): no receive
starts after it; a receive already waiting is allowed to answer, and whatever it brought is
nacked at once (released for other consumers, not left to time out); running handlers finish
and settle their messages. A second signal does what it did before the consumer started (so
a stuck handler can still be interrupted).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any, Final, Generic, TypedDict, TypeVar

from cairn_client.errors import (
    CairnError,
    Conflict,
    ConnectionFailed,
    NotFound,
    RateLimited,
    Unavailable,
)
from cairn_client.models import Received

log = logging.getLogger("cairn_client.consume")
C = TypeVar("C")
D = TypeVar("D", bound=Received)
H = TypeVar("H")

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
RECEIVE_PAUSE_S: Final = 1.0
"""How long a consumer waits after a receive failed for good before it receives again."""
RELEASE_REASON: Final = "consumer stopping"
MAX_BATCH: Final = 100


def reason_of(error: BaseException) -> str:
    """A nack reason naming the exception's type and message (``nack`` cuts it to what the
    broker keeps)."""
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def check(concurrency: int, visibility_timeout_s: int, wait_s: float) -> None:
    if concurrency < 1:
        raise ValueError("concurrency must be 1 or more")
    if visibility_timeout_s < 1:
        raise ValueError(
            "visibility_timeout_s must be 1 or more: the lease is extended while the handler runs"
        )
    if not 0 <= wait_s <= 20:
        raise ValueError("wait_s must be within 0..20")


def transient(error: Exception) -> bool:
    """A receive that failed this way is tried again after a pause: the broker is busy,
    restarting or unreachable, or the answer was lost. Anything else (no such queue, no
    permission, a bad value) stops the consumer with the error."""
    return isinstance(error, ConnectionFailed | Unavailable | RateLimited)


def settle_failed(delivery: Received, action: str, error: Exception) -> None:
    log.warning(
        "cairn_client could not %s message %s of %s (it will be delivered again after its"
        " lease): %s",
        action,
        delivery.id,
        delivery.queue,
        error,
    )


def extend_failed(delivery: Received, error: Exception, held: bool) -> None:
    if not held:
        return  # its handler finished meanwhile: the lease is settled, not lost
    if isinstance(error, Conflict | NotFound):
        log.warning(
            "cairn_client lost the lease of message %s of %s while its handler ran: %s",
            delivery.id,
            delivery.queue,
            error,
        )
    elif isinstance(error, CairnError | ConnectionFailed):
        log.warning("cairn_client could not extend the lease of message %s: %s", delivery.id, error)


class ReceiveOptions(TypedDict):
    max_messages: int
    wait_s: float
    visibility_timeout_s: int


class Consumer(Generic[C, D, H]):
    """What a consumer is given: the client, the queue, the handler and its settings. The
    subclasses (threads, tasks) run it."""

    def __init__(
        self,
        client: C,
        queue: str,
        handler: H,
        concurrency: int,
        visibility_timeout_s: int,
        wait_s: float,
    ) -> None:
        check(concurrency, visibility_timeout_s, wait_s)
        self._client = client
        self._queue = queue
        self._handler = handler
        self._concurrency = concurrency
        self._lease_s = visibility_timeout_s
        self._wait_s = wait_s
        self._leases: Leases[D] = Leases(visibility_timeout_s)
        self._prepare()

    def _batch(self, free: int) -> ReceiveOptions:
        """What the next receive asks for: no more messages than there are idle handlers."""
        return ReceiveOptions(
            max_messages=min(free, MAX_BATCH),
            wait_s=self._wait_s,
            visibility_timeout_s=self._lease_s,
        )

    def _receive_failed(self, error: Exception) -> None:
        """Raise what stops the consumer; log what it recovers from (and pauses for)."""
        if not transient(error):
            raise error
        log.warning("cairn_client receive from %s failed: %s", self._queue, error)

    def _prepare(self) -> None:
        """Make what the subclass needs to run and to be stopped."""
        raise NotImplementedError


class Leases(Generic[D]):
    """The messages being handled, and when each one's lease is next extended (monotonic
    seconds). Extending every third of the timeout leaves two thirds for a slow request."""

    def __init__(self, visibility_timeout_s: int) -> None:
        self.visibility_timeout_s = visibility_timeout_s
        self.every = visibility_timeout_s / 3
        self._next: dict[str, tuple[float, D]] = {}

    def __len__(self) -> int:
        return len(self._next)

    def __contains__(self, delivery: Received) -> bool:
        return delivery.receipt in self._next

    def add(self, delivery: D, now: float) -> None:
        self._next[delivery.receipt] = (now + self.every, delivery)

    def remove(self, delivery: Received) -> None:
        self._next.pop(delivery.receipt, None)

    def due(self, now: float) -> list[D]:
        """The leases to extend now; each is scheduled again a third of the timeout on."""
        found = [delivery for at, delivery in self._next.values() if at <= now]
        for delivery in found:
            self._next[delivery.receipt] = (now + self.every, delivery)
        return found

    def wait(self, now: float) -> float | None:
        """Seconds until the next extension is due (``None``: nothing held)."""
        if not self._next:
            return None
        return max(0.0, min(at for at, _ in self._next.values()) - now)


SignalHandler = Callable[[int, FrameType | None], Any] | int | None


def restore_signals(previous: dict[signal.Signals, SignalHandler]) -> None:
    for number, handler in previous.items():
        signal.signal(number, handler)


def log_started(queue: str, concurrency: int) -> None:
    log.info("cairn_client consuming %s with %d handlers", queue, concurrency)


def log_stopping(queue: str, running: int) -> None:
    log.info("cairn_client stopping the consumer of %s: %d handlers to finish", queue, running)


def log_handler_failed(delivery: Received, error: BaseException) -> None:
    log.warning(
        "cairn_client handler failed on message %s of %s (nacked): %s",
        delivery.id,
        delivery.queue,
        reason_of(error),
        exc_info=error,
    )
