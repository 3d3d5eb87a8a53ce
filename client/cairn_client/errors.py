"""Exceptions: one class per kind of refusal, built from the server's problem+json (RFC 9457),
and ``ConnectionFailed`` for when no answer came at all."""

from __future__ import annotations

import email.utils
import time
from typing import Final

import httpx
import msgspec


class FieldError(msgspec.Struct, kw_only=True):
    field: str
    message: str


class Problem(msgspec.Struct, kw_only=True):
    """The problem details of a refusal. Members a newer server adds are ignored."""

    type: str = "about:blank"
    title: str = ""
    status: int = 0
    detail: str = ""
    errors: list[FieldError] = []
    """One entry per invalid field, e.g. ``body.delay_s`` or ``messages[7].delay_s``."""
    earliest_position: int | None = None
    """On a 410 for the log: the first position still readable."""
    as_of_from: int | None = None
    """On a 410 for an as-of read: the first position the past can be read at."""


class CairnError(Exception):
    """The server refused: ``status`` is the HTTP status, ``problem`` what it said."""

    def __init__(self, status: int, problem: Problem) -> None:
        super().__init__(f"{status} {problem.title}: {problem.detail}".rstrip(": "))
        self.status = status
        self.problem = problem


class BadRequest(CairnError):
    """400: the body was not JSON, or not the expected shape at all."""


class Unauthorized(CairnError):
    """401: no token, or one that is invalid or expired."""


class Forbidden(CairnError):
    """403: the token lacks the scope this needs."""


class NotFound(CairnError):
    """404: no such queue, message or purge (or one the token may not read)."""


class Conflict(CairnError):
    """409: the queue name is taken, or the receipt no longer holds the message's lease."""


class Gone(CairnError):
    """410: a read below what the broker keeps. Read again from ``earliest_position``
    (``after=earliest_position - 1``), or, for an as-of read, from ``as_of_from``."""

    def __init__(self, status: int, problem: Problem) -> None:
        super().__init__(status, problem)
        self.earliest_position = problem.earliest_position
        self.as_of_from = problem.as_of_from


class TooLarge(CairnError):
    """413: the request or the message body is over the limit."""


class Invalid(CairnError):
    """422: well-formed, but a value is out of range or otherwise invalid
    (``problem.errors`` names each field)."""


class _TryLater(CairnError):
    def __init__(self, status: int, problem: Problem, retry_after: float | None = None) -> None:
        super().__init__(status, problem)
        self.retry_after = retry_after
        """Seconds the server asked to wait (``Retry-After``), if it said."""


class RateLimited(_TryLater):
    """429: too many requests; retried after ``retry_after`` seconds, up to ``retries``."""


class Unavailable(_TryLater):
    """503: the store is unreachable, the broker is full, or a ``min_position`` wait timed
    out; retried up to ``retries``."""


class ConnectionFailed(ConnectionError):
    """No answer came (the server could not be reached, or the connection broke), after the
    retries that were safe. A command's outcome is then unknown, but repeating it with the
    same idempotency key is safe; a receive's messages come back after their lease."""


_CLASSES: Final[dict[int, type[CairnError]]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: TooLarge,
    422: Invalid,
}
_problem_decoder: Final = msgspec.json.Decoder(Problem)


def error_of(response: httpx.Response) -> CairnError:
    """The exception for an error answer (its body already read). An answer that is not
    problem+json (a proxy's HTML page, say) still becomes one, from its status and text."""
    try:
        problem = _problem_decoder.decode(response.content)
    except msgspec.DecodeError:
        problem = Problem(
            title=response.reason_phrase, status=response.status_code, detail=response.text[:500]
        )
    status = response.status_code
    if status in (429, 503):
        retry = retry_after(response.headers.get("retry-after"))
        return (RateLimited if status == 429 else Unavailable)(status, problem, retry)
    return _CLASSES.get(status, CairnError)(status, problem)


def retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
