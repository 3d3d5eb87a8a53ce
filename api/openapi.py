"""OpenAPI 3.1 from the endpoint list; every schema comes from the msgspec types themselves."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from api.endpoints import Endpoint
from api.problems import PROBLEM_JSON, Problem

_REF: Final = "#/components/schemas/{name}"
_PARAM: Final = re.compile(r"{([^}:]+)(?::[^}]*)?}")
_ERROR_TEXT: Final = {
    400: "Not JSON, or not the expected shape",
    401: "Missing, invalid or expired token",
    403: "The token lacks the needed scope",
    404: "No such queue or message",
    409: "Conflict",
    410: "Below what history retention keeps (the problem names as_of_from)",
    413: "Body too large",
    415: "Body is not JSON",
    422: "Invalid values",
    429: "Rate limited",
    503: "Not ready, or a min_position wait timed out",
}


def build(
    endpoints: Sequence[Endpoint],
    *,
    title: str,
    version: str,
    auth: bool,
    metrics_public: bool = False,
) -> dict[str, Any]:
    """The document; ``auth`` says whether this server asks for bearer tokens, and
    ``metrics_public`` whether ``/metrics`` is open all the same (``--metrics-public``)."""
    types: list[Any] = [Problem]
    for endpoint in endpoints:
        types += [t for t in (endpoint.body, endpoint.query) if t is not None]
        for answer in endpoint.responses.values():
            types += answer if isinstance(answer, tuple) else [answer] if answer else []
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    by_type = dict(zip(types, schemas, strict=True))

    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        path = _PARAM.sub(r"{\1}", endpoint.path)
        operation: dict[str, Any] = {
            "summary": endpoint.summary,
            "operationId": endpoint.handler.__name__,
            "tags": [endpoint.tag],
            "parameters": _parameters(endpoint, components),
            "responses": _responses(endpoint, by_type),
        }
        open_metrics = metrics_public and endpoint.permission == "metrics"
        if auth and endpoint.permission is not None and not open_metrics:
            operation["security"] = [{"bearer": []}]
        if endpoint.body is not None:
            operation["requestBody"] = {
                "required": not endpoint.body_optional,
                "content": {"application/json": {"schema": by_type[endpoint.body]}},
            }
        paths.setdefault(path, {})[endpoint.method.lower()] = operation
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": components},
    }
    if auth:
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        }
    return document


def _parameters(endpoint: Endpoint, components: dict[str, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(endpoint.path)
    ]
    if endpoint.query is not None:
        schema = components[endpoint.query.__name__]
        required = set(schema.get("required", []))
        for name, prop in schema["properties"].items():
            params.append(
                {"name": name, "in": "query", "required": name in required, "schema": prop}
            )
    return params


def _responses(endpoint: Endpoint, by_type: dict[Any, Any]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, type_ in endpoint.responses.items():
        entry: dict[str, Any] = {"description": "OK" if status < 300 else "Error"}
        if endpoint.stream:
            entry["content"] = {"text/event-stream": {"schema": {"type": "string"}}}
        elif isinstance(type_, tuple):  # one of several shapes (a redrive, or its dry run)
            schema = {"oneOf": [by_type[t] for t in type_]}
            entry["content"] = {"application/json": {"schema": schema}}
        elif type_ is not None:
            entry["content"] = {"application/json": {"schema": by_type[type_]}}
        responses[str(status)] = entry
    # /v1 routes pass the gate (auth, rate limits); operational ones only ever fail as 503.
    gated = endpoint.permission is not None
    common = {400, 401, 403, 429, 503} if gated else {503}
    for status in sorted({*endpoint.errors, *common}):
        responses[str(status)] = {
            "description": _ERROR_TEXT.get(status, "Error"),
            "content": {PROBLEM_JSON: {"schema": by_type[Problem]}},
        }
    return responses
