"""``POST /`` in the SQS JSON 1.0 protocol: which action (``X-Amz-Target: AmazonSQS.<Action>``),
its JSON input, who is calling, and the answer or SQS's error shape."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.body import why_not_json
from api.guard import RateLimiter
from api.problems import ApiError
from api.services import services
from api.sqs import actions
from api.sqs.context import Call
from api.sqs.errors import SqsError, from_broker
from broker.errors import BrokerError

log = structlog.get_logger(component="cairn.sqs")

CONTENT_TYPE: Final = "application/x-amz-json-1.0"
_TARGET_PREFIX: Final = "AmazonSQS."
MAX_REQUEST_BYTES: Final = 4 * 1024 * 1024
"""SQS takes a 1 MiB message or batch; its JSON envelope (escapes, base64 attributes) can make
that several times larger, whatever ``CAIRN_MAX_REQUEST_BYTES`` says for the native routes."""
_decoder: Final = msgspec.json.Decoder(dict[str, Any])
_encoder: Final = msgspec.json.Encoder()

Action = Callable[[Call, dict[str, Any]], Awaitable[dict[str, Any]]]


async def sqs(request: Request) -> Response:
    # The request log's id (X-Request-Id) names the request for SQS's clients too.
    request_id = str(structlog.contextvars.get_contextvars().get("request_id", ""))
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
    except SqsError as error:
        return _error(error, request_id)
    except BrokerError as error:
        return _error(from_broker(error), request_id)
    except ApiError as error:  # a read that timed out, a body over the limit
        shape = "ServiceUnavailable" if error.status == 503 else "InvalidParameterValue"
        return _error(SqsError(shape, error.detail), request_id)


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


def _error(error: SqsError, request_id: str) -> Response:
    if error.status >= 500:
        log.warning("sqs_error", code=error.code, message=error.message)
    body = {"__type": f"com.amazonaws.sqs#{error.shape}", "message": error.message}
    fault = "Sender" if error.sender_fault else "Receiver"
    headers = _headers(request_id) | {"x-amzn-query-error": f"{error.code};{fault}"}
    return Response(_encoder.encode(body), error.status, headers=headers, media_type=CONTENT_TYPE)


ROUTES: Final = [Route("/", sqs, methods=["POST"], include_in_schema=False)]
