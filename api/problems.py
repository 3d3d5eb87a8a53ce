"""RFC 9457 problem details: the one shape of every 4xx/5xx answer, and the one table from the
domain's errors to statuses. One problem type per condition, whatever the route: a read that
finds no queue raises the domain's ``QueueNotFoundError`` as a command would, so both are
``…/queue-not-found``."""

from __future__ import annotations

from typing import Final

import msgspec
from starlette.responses import Response

from broker import errors

PROBLEM_JSON: Final = "application/problem+json"

_TITLES: Final[dict[int, str]] = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}

_STATUS_OF: Final[dict[type[errors.BrokerError], int]] = {
    errors.QueueNotFoundError: 404,
    errors.MessageNotFoundError: 404,
    errors.PurgeNotFoundError: 404,
    errors.MoveTaskNotFoundError: 404,
    errors.QueueExistsError: 409,
    errors.LeaseLostError: 409,
    errors.MessageTooLargeError: 413,
    errors.InvalidCommandError: 422,
    errors.IdempotencyKeyReusedError: 422,
    errors.OutOfOrderSequenceError: 422,
    errors.ProducerFencedError: 422,
    errors.StoreUnavailableError: 503,
}


class FieldError(msgspec.Struct):
    field: str
    message: str


class Problem(msgspec.Struct, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None
    as_of_from: int | None = None
    """A ``410`` for a read of the past below what is kept: the first position served."""


class ApiError(Exception):
    """Raised anywhere in a request; the error middleware turns it into problem+json."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        slug: str | None = None,
        as_of_from: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.slug = slug
        self.as_of_from = as_of_from

    def problem(self) -> Problem:
        title = _TITLES.get(self.status, "Error")
        slug = self.slug or title.lower().replace(" ", "-")
        return Problem(
            type=f"https://cairn.dev/problems/{slug}",
            title=title,
            status=self.status,
            detail=self.detail,
            errors=self.errors,
            as_of_from=self.as_of_from,
        )

    def response(self) -> Response:
        return Response(
            msgspec.json.encode(self.problem()),
            status_code=self.status,
            media_type=PROBLEM_JSON,
            headers=self.headers,
        )


def from_broker(error: errors.BrokerError, *, entries: str | None = None) -> ApiError:
    """``entries``: the request field that lists a batch's entries (``messages``), so that an
    entry's field is named as in the request, ``messages[7].attributes``; a single request's
    field is ``body.attributes``."""
    # By the nearest class the table names: an adapter's own kind of a domain error (the
    # PostgreSQL store's CommitUnknownError is a StoreUnavailableError) answers as it does,
    # with its problem type: one per condition in the table.
    named = next((c for c in type(error).__mro__ if c in _STATUS_OF), type(error))
    status = _STATUS_OF.get(named, 500)
    field_errors = None
    if error.field is not None:
        if error.field.startswith("header."):
            where = error.field
        elif error.entry is not None and entries is not None:
            where = f"{entries}[{error.entry}].{error.field}"
        else:
            where = f"body.{error.field}"
        field_errors = [FieldError(where, error.detail)]
    slug = named.__name__.removesuffix("Error")
    slug = "".join("-" + c.lower() if c.isupper() else c for c in slug).lstrip("-")
    return ApiError(status, error.detail, errors=field_errors, slug=slug)
