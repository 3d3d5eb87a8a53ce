"""The SQS door's routes, in both of SQS's protocols: which action (JSON 1.0: ``X-Amz-Target:
AmazonSQS.<Action>``; query: ``Action=<Action>`` in the form or the query string), its input, who
is calling, and the answer or SQS's error, each in the protocol the request spoke. The actions
(``api.sqs.actions``) are the same for both: the protocols only decode and encode."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import parse_qsl

import msgspec
import structlog
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.body import why_not_json
from api.guard import RateLimiter
from api.problems import ApiError
from api.services import services
from api.sqs import actions, query
from api.sqs.context import Call
from api.sqs.errors import SqsError, from_broker
from broker.errors import BrokerError

log = structlog.get_logger(component="cairn.sqs")

CONTENT_TYPE: Final = "application/x-amz-json-1.0"
FORM: Final = "application/x-www-form-urlencoded"
_TARGET_PREFIX: Final = "AmazonSQS."
MAX_REQUEST_BYTES: Final = 4 * 1024 * 1024
"""SQS takes a 1 MiB message or batch; its JSON envelope (escapes, base64 attributes) can make
that several times larger, whatever ``CAIRN_MAX_REQUEST_BYTES`` says for the native routes."""
_decoder: Final = msgspec.json.Decoder(dict[str, Any])
_encoder: Final = msgspec.json.Encoder()

Action = Callable[[Call, dict[str, Any]], Awaitable[dict[str, Any]]]


async def sqs(request: Request) -> Response:
    """Either protocol: JSON 1.0 when the request names its action in ``X-Amz-Target`` or
    sends JSON, the query protocol otherwise (a form, or a ``GET`` with a query string)."""
    # The request log's id (X-Request-Id) names the request for SQS's clients too.
    request_id = str(structlog.contextvars.get_contextvars().get("request_id", ""))
    content_type = request.headers.get("content-type", "")
    if "x-amz-target" in request.headers or content_type.startswith(CONTENT_TYPE):
        return await _json(request, request_id)
    return await _query(request, request_id)


async def _json(request: Request, request_id: str) -> Response:
    try:
        target = request.headers.get("x-amz-target", "")
        if not target.startswith(_TARGET_PREFIX):
            raise SqsError("InvalidAction", f"The action {target or '(none)'} is not valid.")
        name = target[len(_TARGET_PREFIX) :]
        action = actions.ACTIONS.get(name)
        if action is None:
            raise SqsError(
                "UnsupportedOperation", f"The action {name} is not supported by this endpoint."
            )
        raw = await _body(request)
        call = Call.of(request, services(request), raw)
        await _within_rate(request, call)
        try:
            params = _decoder.decode(raw or b"{}")
        except msgspec.DecodeError as error:
            raise SqsError(
                "SerializationException",
                f"The request is not valid JSON: {why_not_json(raw, error)}",
            ) from None
        result = await action(call, params)
        return Response(
            _encoder.encode(result), 200, headers=_headers(request_id), media_type=CONTENT_TYPE
        )
    except (SqsError, BrokerError, ApiError) as error:
        return _json_error(_refusal(error), request_id)


async def _query(request: Request, request_id: str) -> Response:
    try:
        raw = await _body(request)
        query_string: bytes = request.scope.get("query_string", b"")
        pairs = _form(query_string) if query_string else []
        if request.headers.get("content-type", "").startswith(FORM):
            pairs += _form(raw)
        name = next((value for key, value in pairs if key == "Action"), None)
        if not name:
            raise SqsError("MissingAction", "No action was supplied with this request.")
        action = actions.ACTIONS.get(name)
        if action is None:
            raise SqsError("InvalidAction", f"The action {name} is not valid for this endpoint.")
        call = Call.of(request, services(request), raw)
        await _within_rate(request, call)
        params = query.decode(name, pairs)
        if "QueueUrl" not in params and "queue" in request.path_params:
            # The SDKs that post to the queue's URL itself name the queue by the path alone.
            params["QueueUrl"] = str(request.url.replace(query=""))
        result = await action(call, params)
        return Response(
            query.encode(name, result, request_id),
            200,
            headers=_headers(request_id),
            media_type=query.CONTENT_TYPE,
        )
    except (SqsError, BrokerError, ApiError) as error:
        refusal = _refusal(error)
        _log(refusal)
        return Response(
            query.error(refusal, request_id),
            refusal.status,
            headers=_headers(request_id),
            media_type=query.CONTENT_TYPE,
        )


def _form(data: str | bytes) -> list[tuple[str, str]]:
    try:
        text = data.decode() if isinstance(data, bytes) else data
        return parse_qsl(text, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise SqsError("MalformedQueryString", "The query string is not valid UTF-8.") from None


def _refusal(error: SqsError | BrokerError | ApiError) -> SqsError:
    match error:
        case SqsError():
            return error
        case BrokerError():
            return from_broker(error)
        case ApiError():  # a read that timed out, a body over the limit
            shape = "ServiceUnavailable" if error.status == 503 else "InvalidParameterValue"
            return SqsError(shape, error.detail)


async def _within_rate(request: Request, call: Call) -> None:
    """``--rate-limit`` applies here as on the native routes, per key subject (per client
    address with auth off), from the same budget: a refusal is SQS's RequestThrottled, which
    SDKs retry with backoff."""
    limiter: RateLimiter | None = request.app.state.limiter
    if limiter is None:
        return
    client = request.client
    key = (
        f"sub:{call.principal.subject}"
        if call.s.settings.auth
        else f"ip:{client.host if client else 'unknown'}"
    )
    try:
        allowed, _ = await limiter.hit(key)
    except Exception as error:  # the limiter's store is down: fail open, as the guard does
        log.warning("rate_limiter_unavailable", error=str(error))
        return
    if not allowed:
        raise SqsError("RequestThrottled", f"Rate of {limiter.item} exceeded.")


async def _body(request: Request) -> bytes:
    encoding = request.headers.get("content-encoding")
    if encoding is not None:
        # As on the native routes (API.md v1.2): nothing is decoded, so an encoded body would
        # be read as if it were plain. SQS's SDKs never compress these requests.
        raise SqsError(
            "UnsupportedMediaType",
            f"Content-Encoding {encoding!r} is not accepted: send the body unencoded.",
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise SqsError(
                "BatchRequestTooLong", f"The request is larger than {MAX_REQUEST_BYTES} bytes."
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _headers(request_id: str) -> dict[str, str]:
    return {"x-amzn-RequestId": request_id}


def _log(error: SqsError) -> None:
    if error.status >= 500:
        log.warning("sqs_error", code=error.code, message=error.message)


def _json_error(error: SqsError, request_id: str) -> Response:
    _log(error)
    body = {"__type": f"com.amazonaws.sqs#{error.shape}", "message": error.message}
    fault = "Sender" if error.sender_fault else "Receiver"
    headers = _headers(request_id) | {"x-amzn-query-error": f"{error.code};{fault}"}
    return Response(_encoder.encode(body), error.status, headers=headers, media_type=CONTENT_TYPE)


class _Account(Convertor[str]):
    """An SQS account id (12 digits), so that ``/<account>/<queue>`` takes no native path."""

    regex = "[0-9]{12}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("sqs_account", _Account())

ROUTES: Final = [
    Route("/", sqs, methods=["GET", "POST"], include_in_schema=False),
    # The query protocol's SDKs may post to the queue's URL (``http://host/<account>/<queue>``).
    Route("/{account:sqs_account}/{queue}", sqs, methods=["GET", "POST"], include_in_schema=False),
]
