"""Fuzzing a real broker over real HTTP: generated bodies, JSON documents, query strings, headers
and path parameters against every route the server's own OpenAPI document lists.

What must hold for every answer (API.md, "Errors" and "Clarifications of v1"):

- never a 5xx (no request here sends ``min_position``, so not even a 503 is legitimate) and never
  a dropped connection;
- every 4xx is ``application/problem+json`` whose ``status`` is the HTTP status;
- every 2xx JSON body is strict UTF-8 JSON (no ``NaN``, no lone surrogate in any string);
- a POST/PATCH body that is not UTF-8 JSON is a ``400`` (``415`` without a JSON Content-Type),
  a query string that is not UTF-8 once percent-decoded is a ``400``, and an integer parameter
  out of its range (beyond 64 bits included) is a ``422`` naming it.

After each test everything the broker stored is read back and must be strictly valid too: the
event log page by page (contiguous positions from 1, bodies as they were published), receives,
message lists and resources of the fuzzed queues, and one SSE replay of the whole log.

``CAIRN_FUZZ_EXAMPLES`` sets the examples per test (default 60).
"""

from __future__ import annotations

import json
import os
import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, unquote, unquote_to_bytes

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from tests.api.conftest import Server, problem

EXAMPLES: Final = int(os.environ.get("CAIRN_FUZZ_EXAMPLES", "60"))
FUZZ: Final = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
PROBLEM: Final = "application/problem+json"
POOL: Final = ("fz-a", "fz-b", "fz-dlq")
"""Live queues the fuzzer aims at; one deleted by a fuzzed request is created again at once."""
NEVER_GENERATED: Final = frozenset({"wait_s", "min_position"})
"""A long poll or a ``min_position`` wait would stall the run (or make a 503 legitimate)."""
CONTRACT_ROUTES: Final = {
    ("POST", "/v1/queues"),
    ("GET", "/v1/queues"),
    ("GET", "/v1/queues/{name}"),
    ("PATCH", "/v1/queues/{name}"),
    ("DELETE", "/v1/queues/{name}"),
    ("POST", "/v1/queues/{name}/purge"),
    ("POST", "/v1/queues/{name}/redrive"),
    ("POST", "/v1/queues/{name}/messages"),
    ("GET", "/v1/queues/{name}/messages"),
    ("POST", "/v1/queues/{name}/messages/batch"),
    ("POST", "/v1/queues/{name}/receive"),
    ("POST", "/v1/queues/{name}/messages/{id}/ack"),
    ("POST", "/v1/queues/{name}/ack"),
    ("POST", "/v1/queues/{name}/messages/{id}/nack"),
    ("POST", "/v1/queues/{name}/messages/{id}/extend"),
    ("GET", "/v1/queues/{name}/messages/{id}"),
    ("GET", "/v1/events"),
    ("GET", "/v1/events/stream"),
    ("GET", "/v1/queues/{name}/events/stream"),
    ("GET", "/v1/projections"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
}
PUBLISH: Final = ("POST", "/v1/queues/{name}/messages")
PUBLISH_BATCH: Final = ("POST", "/v1/queues/{name}/messages/batch")

# --- generated values -------------------------------------------------------------------------

ODD_CHARACTERS: Final = [
    "\U0001f600",  # emoji, outside the BMP
    "\u0301",  # a combining mark
    "\u202e",  # right-to-left override
    "\u200f",
    "\uffff",
    "\ufffe",
    "\ufeff",
    "\u2028",  # line and paragraph separators: JSON allows them raw, JavaScript once did not
    "\u2029",
    "\x00",
    "\x1f",
    "\x7f",
    "\U0010ffff",
    '"',
    "\\",
    "\u00e9",
]
ODD_SEQUENCES: Final = [
    "\U0001f469\u200d\U0001f4bb",  # a ZWJ sequence
    "e\u0301",
    "\u0627\u0644\u0639",  # Arabic
    "\u05e9\u05dc\u05d5\u05dd abc",  # mixed directions
]
CHARACTERS: Final = st.characters(exclude_categories=("Cs",)) | st.sampled_from(ODD_CHARACTERS)
TEXT: Final = st.lists(CHARACTERS | st.sampled_from(ODD_SEQUENCES), max_size=16).map("".join)
NAME_ALPHABET: Final = string.ascii_letters + string.digits + "_.-"
NAMES: Final = st.text(NAME_ALPHABET, min_size=1, max_size=40).filter(
    lambda s: s not in {".", ".."}
)
EDGE_INTEGERS: Final = [
    0,
    -1,
    INT64_MAX,
    INT64_MAX + 1,
    INT64_MIN,
    INT64_MIN - 1,
    2**64,
    10**30,
    -(10**40),
    2**1000,
]
INTEGERS: Final = st.integers() | st.sampled_from(EDGE_INTEGERS)
BEYOND_64_BITS: Final = st.integers(min_value=2**63) | st.integers(max_value=-(2**63) - 1)
FLOATS: Final = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [-0.0, 1.0, 46.0, 1e308, 5e-324, 0.1]
)
SCALARS: Final = st.none() | st.booleans() | INTEGERS | FLOATS | TEXT
JSON_VALUES: Final = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)
SEPARATORS: Final = st.sampled_from(
    [(",", ":"), (", ", ": "), (",\n", ":\r\n"), (" ,\t", "\r: "), (",\r", ":")]
)
JSON_CONTENT_TYPES: Final = st.sampled_from(
    ["application/json"] * 8
    + [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/merge-patch+json",
        "application/problem+json",
    ]
)
CONTENT_TYPES: Final = JSON_CONTENT_TYPES | st.sampled_from(
    [
        None,
        "",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "json",
    ]
)


def weighted(*choices: tuple[int, SearchStrategy[Any]]) -> SearchStrategy[Any]:
    """One of ``choices``, by weight (``st.one_of`` merges a strategy given twice)."""
    total = sum(weight for weight, _ in choices)

    @st.composite
    def pick(draw: st.DrawFn) -> Any:
        number = draw(st.integers(0, total - 1))
        for weight, strategy in choices:
            if number < weight:
                return draw(strategy)
            number -= weight
        raise AssertionError("unreachable")

    return pick()


# --- hand-built bytes -------------------------------------------------------------------------

BAD_UTF8: Final = [
    b"\xe9",  # Latin-1
    b"\xff",
    b"\xfe",
    b"\x80",  # a continuation byte on its own
    b"\xc3",  # truncated sequences
    b"\xc3\x28",
    b"\xe2\x82",
    b"\xf0\x9f\x98",
    b"\xc0\xaf",  # overlong encodings
    b"\xc1\xbf",
    b"\xe0\x80\xaf",
    b"\xf0\x80\x80\xaf",
    b"\xed\xa0\x80",  # UTF-8-encoded surrogates
    b"\xed\xbf\xbf",
    b"\xed\xa0\xbd\xed\xb8\x80",
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\xf8\x88\x80\x80\x80",
]
ESCAPES: Final = [
    b"\\ud800",  # lone surrogate escapes
    b"\\udfff",
    b"\\udbff",
    b"\\ud83d",
    b"\\ud83d\\u0041",
    b"\\ude00\\ud83d",
    b"\\ud800\\ud800",
    b"\\ud83d\\",
    b"\\ud83d\\ude00",  # fine: a pair
    b"\\\\ud800",  # fine: an escaped backslash
    b"\\u0000",  # fine: an escaped NUL
    b"\\uffff",
    b"\\u2028",
    b"\\u00",  # broken escapes
    b"\\uZZZZ",
    b"\\x41",
    b"\\'",
]
RAW_CONTROL: Final = [b"\x00", b"\x01", b"\x1f", b"\n", b"\t", b"\x7f"]
NUMBERS: Final = [
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"1e99999999999999999999",
    b"-0",
    b"-0.0",
    b"0e0",
    b"1.0",
    b"46.0",
    b"1E2",
    b"4.0e1",
    b"1.5",
    b"123456789012345678901234567890",
    b"9223372036854775807",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551616",
    b"1" + b"0" * 400,
    b"01",  # not JSON from here on
    b"+1",
    b".5",
    b"1.",
    b"-",
    b"1e",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"0x10",
    b"1_000",
]
PATH_SEGMENTS: Final = [
    "%E9",
    "%FF",
    "%C3",
    "caf%E9",
    "%C3%28",
    "%ED%A0%80",
    "%C0%AF",
    "%F4%90%80%80",
    "%00",
    "%zz",
    "%",
    "%2F",
    "%2E%2E",
    "..",
    ".",
    "a%20b",
    "%F0%9F%98%80",
    "x" * 300,
]
QUERY_PIECES: Final = [
    "%E9",
    "%FF",
    "%C3",
    "caf%E9",
    "%C3%28",
    "%ED%A0%80",
    "%C0%AF",
    "%F4%90%80%80",
    "%",
    "%zz",
    "%0",
    "%00",
    "%25",
    "+",
    "%2B",
    "%26",
    "%3D",
]
EVENT_TYPES: Final = st.sampled_from(
    ["message.*", "queue.*", "message.published,message.acked", "*", " queue.created , x* "]
)
MARKER: Final = "@@fuzz@@"
MARKER_JSON: Final = json.dumps(MARKER).encode()
_SURROGATE: Final = re.compile(r"[\ud800-\udfff]")
_LINE_END: Final = re.compile(rb"\r\n|\r|\n")
_PARAMETER: Final = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
_INTEGER: Final = re.compile(r"-?[0-9]+")


# --- checking answers -------------------------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def lone_surrogate(document: Any) -> str | None:
    """The first string (key or value) in ``document`` holding half a UTF-16 pair."""
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return item
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
    return None


def strict_json(content: bytes, what: str) -> Any:
    """``content`` as JSON, asserting it is strict UTF-8 JSON with no lone surrogate."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        around = content[max(0, error.start - 40) : error.start + 40]
        raise AssertionError(
            f"{what}: served bytes that are not UTF-8 ({error}): {around!r}"
        ) from None
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as error:
        raise AssertionError(f"{what}: served invalid JSON ({error}): {content[:300]!r}") from None
    surrogate = lone_surrogate(document)
    assert surrogate is None, f"{what}: served a lone surrogate in {surrogate!r}"
    return document


def request_is_json(content: bytes) -> bool | None:
    """Whether ``content`` is one UTF-8 JSON text with no lone surrogate escape; ``None`` when
    Python cannot tell: nested past its recursion limit, a number past its digit limit, or a
    byte order mark (which RFC 8259 lets a parser ignore)."""
    if content.startswith(b"\xef\xbb\xbf"):
        return None
    try:
        document = json.loads(content.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        return False
    except RecursionError:
        return None
    except ValueError as error:
        return None if "digits" in str(error) else False
    return lone_surrogate(document) is None


def unique_json(content: bytes) -> Any:
    """``content`` parsed, or ``None`` unless it is strict JSON without duplicate keys (what a
    duplicate key means is up to the parser, so such a body is not compared on read-back)."""
    duplicated = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal duplicated
        duplicated = duplicated or len({k for k, _ in items}) != len(items)
        return dict(items)

    if request_is_json(content) is not True:
        return None
    try:
        document = json.loads(content, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return None
    return None if duplicated else document


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json_media(content_type: str) -> bool:
    media = media_type(content_type)
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def describe(response: httpx.Response) -> str:
    request = response.request
    headers = {k: v for k, v in request.headers.items() if k.lower() in CALL_HEADERS}
    try:
        body = request.content
    except httpx.RequestNotRead:
        body = b"<streamed>"
    shown = body if len(body) <= 300 else body[:300] + b"..."
    return f"{request.method} {request.url.raw_path!r} headers={headers} body={shown!r}"


CALL_HEADERS: Final = {"content-type", "last-event-id"}


def check_answer(response: httpx.Response) -> Any:
    """The checks every answer passes; the parsed JSON body (``None`` for none)."""
    status = response.status_code
    what = f"{describe(response)} -> {status}"
    assert status < 500, f"{what}: {response.content[:500]!r}"
    media = media_type(response.headers.get("content-type"))
    if status >= 400:
        assert media == PROBLEM, f"{what}: a {media!r} error: {response.content[:300]!r}"
        document = strict_json(response.content, what)
        assert isinstance(document, dict), what
        assert document.get("status") == status, f"{what}: {document}"
        return problem(response, status)  # and its type, title and detail
    if 300 <= status < 400:
        assert response.headers.get("location"), what
        return None
    if status == 204:
        assert response.content == b"", what
        return None
    if response.request.url.path.startswith("/v1"):
        assert media == "application/json", f"{what}: a 2xx {media!r}"
    if media == "application/json":
        return strict_json(response.content, what)
    response.content.decode("utf-8")  # /metrics: text, but UTF-8 all the same
    return None


# --- Server-Sent Events, strictly ---------------------------------------------------------------


@dataclass
class SseFrame:
    id: int | None = None
    event: str | None = None
    data_lines: list[str] = field(default_factory=list)
    retry: int | None = None
    comments: list[str] = field(default_factory=list)


def sse_frames(response: httpx.Response, what: str) -> Iterator[SseFrame]:
    """Frames of ``text/event-stream``, each line decoded as strict UTF-8 (``feeds.frames``
    decodes with replacement characters, which would hide invalid bytes)."""
    buffer = b""
    current = SseFrame()
    for chunk in response.iter_bytes():
        buffer += chunk
        while (end := _LINE_END.search(buffer)) is not None:
            if end.group() == b"\r" and end.end() == len(buffer):
                break  # perhaps the first half of a CRLF
            raw, buffer = buffer[: end.start()], buffer[end.end() :]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise AssertionError(f"{what}: a feed line that is not UTF-8: {raw!r}") from error
            if line == "":
                yield current
                current = SseFrame()
            elif line.startswith(":"):
                current.comments.append(line[1:].strip())
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "id":
                    current.id = int(value)
                elif name == "event":
                    current.event = value
                elif name == "data":
                    current.data_lines.append(value)
                elif name == "retry":
                    current.retry = int(value)


def check_event_frame(frame: SseFrame, what: str) -> dict[str, Any]:
    data = strict_json("\n".join(frame.data_lines).encode(), what)
    assert isinstance(data, dict), what
    assert data["position"] == frame.id and data["type"] == frame.event, f"{what}: {frame}"
    return data


# --- the fuzzer -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    body: dict[str, Any] | None
    query: dict[str, dict[str, Any]]
    stream: bool
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The top-level properties of the request body's schema."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.template)

    @property
    def takes_body(self) -> bool:
        return self.method in {"POST", "PATCH"}


@dataclass
class Call:
    operation: Operation
    path: str
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    addressed: bool = True
    """The path names a live queue (or none), so a bad body or query must be what is refused."""
    document: Any = None
    """The request body as parsed, when it is worth comparing with what is read back."""

    def __repr__(self) -> str:
        query = f"?{self.query}" if self.query else ""
        return (
            f"Call({self.operation.method} {self.path}{query} headers={self.headers}"
            f" content={self.content!r})"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


Bodies = Callable[[Operation], SearchStrategy[tuple[bytes, Any]]]
"""Request bodies for an operation: the bytes, and the document they are (when comparable)."""


@dataclass(frozen=True)
class Expectation:
    statuses: frozenset[int]
    field: str | None = None


def operations_of(document: dict[str, Any]) -> list[Operation]:
    found = []
    for template, methods in document["paths"].items():
        for method, spec in methods.items():
            body = spec.get("requestBody", {}).get("content", {}).get("application/json", {})
            query = {
                p["name"]: p.get("schema", {})
                for p in spec.get("parameters", [])
                if p["in"] == "query" and p["name"] not in NEVER_GENERATED
            }
            stream = any(
                "text/event-stream" in answer.get("content", {})
                for answer in spec.get("responses", {}).values()
            )
            schema = body.get("schema")
            resolved = schema or {}
            while "$ref" in resolved:
                name = resolved["$ref"].rsplit("/", 1)[1]
                resolved = document["components"]["schemas"][name]
            fields = resolved.get("properties", {})
            found.append(Operation(method.upper(), template, schema, query, stream, fields))
    return found


def is_integer_schema(schema: dict[str, Any]) -> tuple[int, int] | None:
    for option in [schema, *schema.get("anyOf", [])]:
        if option.get("type") == "integer":
            return option.get("minimum", INT64_MIN), option.get("maximum", INT64_MAX)
    return None


class Fuzzer:
    def __init__(self, server: Server, client: httpx.Client, document: dict[str, Any]) -> None:
        self.server = server
        self.client = client
        self.components: dict[str, Any] = document.get("components", {}).get("schemas", {})
        self.operations = operations_of(document)
        self.message_ids: list[str] = []
        self.receipts: list[str] = []
        self.unread: set[str] = set()
        """Queues created by fuzzed requests and not read back yet."""
        self.published: dict[str, Any] = {}
        """Message id -> the body it was published with."""
        self.seen: set[str] = set()
        """Messages whose resource has been read back."""
        self.issued: set[str] = set()
        """Every receipt a receive answered with."""
        self._hints: dict[str, SearchStrategy[Any]] | None = None

    # -- set-up and sending --

    def seed(self) -> None:
        for name in POOL:
            self.create(name)
            batch = {"messages": [{"body": {"seed": i}} for i in range(4)]}
            answer = self.client.post(f"/v1/queues/{name}/messages/batch", json=batch)
            assert answer.status_code == 201, answer.text
            for entry, result in zip(batch["messages"], answer.json()["results"], strict=True):
                self.published[result["id"]] = entry["body"]
                self.message_ids.append(result["id"])
            leased = self.client.post(
                f"/v1/queues/{name}/receive",
                json={"max_messages": 2, "visibility_timeout_s": 43200},
            )
            assert leased.status_code == 200, leased.text
            self.receipts += [m["receipt"] for m in leased.json()["messages"]]
        self.issued.update(self.receipts)

    def create(self, name: str) -> None:
        answer = self.client.post("/v1/queues", json={"name": name})
        assert answer.status_code == 201, answer.text

    def send(self, call: Call) -> httpx.Response:
        note(repr(call))  # this Hypothesis prints composite values as empty
        op = call.operation
        url = call.path + (f"?{call.query}" if call.query else "")
        if op.stream:
            with self.client.stream(op.method, url, headers=call.headers) as response:
                if response.status_code == 200:
                    self.check_feed_opening(response)
                else:
                    response.read()
                    check_answer(response)
        else:
            response = self.client.request(
                op.method, url, headers=call.headers, content=call.content
            )
            document = check_answer(response)
            self.remember(call, response, document)
        expected = expectation(call)
        if expected is not None:
            what = f"{describe(response)} -> {response.status_code}"
            assert response.status_code in expected.statuses, (
                f"{what}, expected {sorted(expected.statuses)}: {response.content[:300]!r}"
            )
            if expected.field is not None:
                fields = [e.get("field") for e in response.json().get("errors") or []]
                assert expected.field in fields, f"{what}: {response.text}"
        return response

    def check_feed_opening(self, response: httpx.Response) -> None:
        what = describe(response)
        assert media_type(response.headers.get("content-type")) == "text/event-stream", what
        first = next(sse_frames(response, what))  # sent at once, before any replay
        assert first.retry is not None and 0 <= first.retry <= 5000, f"{what}: {first}"

    def remember(self, call: Call, response: httpx.Response, document: Any) -> None:
        op, status = call.operation, response.status_code
        if op.key == ("DELETE", "/v1/queues/{name}") and status == 204:
            name = unquote(call.path.rsplit("/", 1)[1])
            if name in POOL:
                self.create(name)
        elif op.key == ("POST", "/v1/queues") and status == 201:
            self.unread.add(document["name"])
        elif op.key == ("POST", "/v1/queues/{name}/receive") and status == 200:
            self.issued.update(m["receipt"] for m in document["messages"])
        elif op.key == PUBLISH and status == 201 and isinstance(call.document, dict):
            self.published[document["id"]] = call.document["body"]
        elif op.key == PUBLISH_BATCH and status == 201 and isinstance(call.document, dict):
            sent = call.document["messages"]
            for entry, result in zip(sent, document["results"], strict=True):
                if not result["duplicate"]:
                    self.published[result["id"]] = entry["body"]

    # -- reading everything back --

    def read_back(self) -> None:
        events = self.read_log()
        positions = [e["position"] for e in events]
        assert positions, "the log is empty"
        assert positions == list(range(1, len(positions) + 1)), "positions are not contiguous"
        self.keeps_no_receipt(json.dumps(events), "the event log")
        bodies = {
            e["message_id"]: e["data"]["body"] for e in events if e["type"] == "message.published"
        }
        for message_id, body in self.published.items():
            assert message_id in bodies, f"no message.published event for {message_id}"
            assert bodies[message_id] == body, f"{message_id} was published with {body!r}"
        queues = self.get("/v1/queues")["queues"]
        assert set(POOL) <= {q["name"] for q in queues}
        for name in sorted({*POOL, *self.unread}):
            self.read_queue(name)
        self.unread.clear()
        self.replay_feed()

    def get(self, url: str) -> Any:
        response = self.client.get(url)
        document = check_answer(response)
        assert response.status_code == 200, f"{describe(response)} -> {response.status_code}"
        return document

    def read_log(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after = 0
        while True:
            page = self.get(f"/v1/events?after={after}&limit=1000")
            found += page["events"]
            if not page["events"]:
                assert page["next_after"] == after
                return found
            assert page["next_after"] == page["events"][-1]["position"]
            after = page["next_after"]

    def read_queue(self, name: str) -> None:
        path = f"/v1/queues/{quote(name, safe='')}"
        found = self.client.get(path)
        check_answer(found)
        if found.status_code == 404:  # deleted by a fuzzed request
            assert name not in POOL
            return
        assert found.status_code == 200, f"{describe(found)} -> {found.status_code}"
        received = self.client.post(f"{path}/receive", json={"max_messages": 100})
        for message in (check_answer(received) or {}).get("messages", []):
            self.compare(message)
            self.issued.add(message["receipt"])
        cursor = ""
        while True:
            page = self.get(f"{path}/messages?limit=500{cursor}")
            for item in page["messages"]:
                self.compare(item)
                if item["id"] not in self.seen:
                    self.seen.add(item["id"])
                    resource = self.get(f"{path}/messages/{quote(item['id'], safe='')}")
                    self.compare(resource)
                    assert resource["history"], resource
                    self.keeps_no_receipt(json.dumps(resource["history"]), resource["id"])
            if page["next"] is None:
                return
            cursor = f"&after={quote(page['next'], safe='')}"

    def keeps_no_receipt(self, text: str, where: str) -> None:
        """Receipts are the consumer's secret: only the receive answer carries one."""
        leaked = [receipt for receipt in self.issued if receipt in text]
        assert not leaked, f"{where} carries the receipt {leaked[0]!r}"

    def compare(self, message: dict[str, Any]) -> None:
        if message["id"] in self.published:
            expected = self.published[message["id"]]
            assert message["body"] == expected, f"{message} was published with {expected!r}"

    def replay_feed(self) -> None:
        head = self.get("/v1/projections")["head"]
        what = "GET /v1/events/stream?after=0"
        with self.client.stream("GET", "/v1/events/stream?after=0") as response:
            assert response.status_code == 200, what
            assert media_type(response.headers.get("content-type")) == "text/event-stream"
            expected, replayed = 1, []
            for frame in sse_frames(response, what):
                if frame.id is None:
                    continue
                assert frame.id == expected, f"{what}: {frame.id} after {expected - 1}"
                check_event_frame(frame, what)
                replayed += frame.data_lines
                if frame.id >= head:
                    self.keeps_no_receipt("\n".join(replayed), "the event feed")
                    return
                expected += 1
        raise AssertionError(f"{what}: the feed ended before position {head}")

    # -- strategies --

    @property
    def body_operations(self) -> list[Operation]:
        return [op for op in self.operations if op.takes_body]

    def hints(self) -> dict[str, SearchStrategy[Any]]:
        """Valid values for fields and parameters, by name, that reach past the validation."""
        if self._hints is None:
            self._hints = self._make_hints()
        return self._hints

    def _make_hints(self) -> dict[str, SearchStrategy[Any]]:
        pool = st.sampled_from(POOL)
        return {
            "name": NAMES.map(lambda s: f"fz-{s}") | pool,
            "dead_letter_queue": pool | NAMES | st.none(),
            "to": pool | NAMES | st.none(),
            "queue": pool | NAMES,
            "types": EVENT_TYPES,
            "receipt": st.sampled_from(self.receipts) | st.text(CHARACTERS, min_size=1),
            "id": st.sampled_from(self.message_ids) | st.text(CHARACTERS, min_size=1),
            "wait_s": st.just(0),
            "attributes": weighted(
                (
                    4,
                    st.dictionaries(
                        st.text(NAME_ALPHABET, min_size=1, max_size=20), TEXT, max_size=4
                    ),
                ),
                (1, st.just({"source_queue": "elsewhere"})),  # reserved for the broker
            ),
            "dedup_id": st.none()
            | st.sampled_from(["dup-1", "dup-2"])
            | st.text(CHARACTERS, min_size=1, max_size=20),
        }

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.components[schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def valid(
        self, schema: dict[str, Any], name: str | None, gen: SearchStrategy[Any] | None
    ) -> SearchStrategy[Any]:
        """Values that fit ``schema`` (objects and arrays in it get ``gen``'s values inside)."""
        hints = self.hints()
        if name in hints:
            return hints[name]
        schema = self.resolve(schema)
        if "anyOf" in schema:
            return st.one_of([self.valid(option, None, gen) for option in schema["anyOf"]])
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        kind = schema.get("type")
        if kind == "integer":
            return st.integers(schema.get("minimum", -1000), schema.get("maximum", 1000))
        if kind == "number":
            low, high = schema.get("minimum", -1e3), schema.get("maximum", 1e3)
            return st.floats(low, high, allow_nan=False)
        if kind == "string":
            if "pattern" in schema:
                return NAMES
            low = schema.get("minLength", 0)
            return st.text(
                CHARACTERS, min_size=low, max_size=max(low, min(32, schema.get("maxLength", 32)))
            )
        if kind == "boolean":
            return st.booleans()
        if kind == "null":
            return st.none()
        if kind == "array":
            low = max(1, schema.get("minItems", 0))
            high = max(low, min(3, schema.get("maxItems", 3)))
            return st.lists(
                self.value(schema.get("items", {}), None, gen), min_size=low, max_size=high
            )
        if kind == "object":
            if "properties" in schema:
                return self.shape_of(schema, gen)
            values = self.valid(schema.get("additionalProperties", {}), None, None)
            return st.dictionaries(NAMES, values, max_size=3)
        return JSON_VALUES

    def value(
        self, schema: dict[str, Any], name: str | None, gen: SearchStrategy[Any] | None
    ) -> SearchStrategy[Any]:
        """A field's value: mostly valid, sometimes ``gen``'s."""
        valid = self.valid(schema, name, gen)
        if gen is None or name in NEVER_GENERATED:
            return valid
        return weighted((3, valid), (1, gen))

    def shape_of(
        self, schema: dict[str, Any], gen: SearchStrategy[Any] | None
    ) -> SearchStrategy[dict[str, Any]]:
        properties: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", ()))

        @st.composite
        def shapes(draw: st.DrawFn) -> dict[str, Any]:
            document: dict[str, Any] = {}
            for key, sub in properties.items():
                wanted = draw(st.integers(0, 15)) > 0 if key in required else draw(st.booleans())
                if wanted or (key in required and gen is None):
                    document[key] = draw(self.value(sub, key, gen))
            if gen is not None and draw(st.integers(0, 7)) == 0:
                extra = draw(
                    TEXT.filter(lambda k: k not in properties and k not in NEVER_GENERATED)
                )
                document[extra] = draw(gen)
            return document

        return shapes()

    def shape(self, op: Operation, gen: SearchStrategy[Any] | None) -> SearchStrategy[Any]:
        """A request body for ``op``: its schema's shape, with ``gen``'s values in places."""
        if op.body is None:
            return st.dictionaries(TEXT, gen if gen is not None else JSON_VALUES, max_size=3)
        return self.valid(op.body, None, gen)

    def paths(self, op: Operation, *, aimed: bool = False) -> SearchStrategy[tuple[str, bool]]:
        """The path of ``op`` with its parameters filled in, and whether it names a pool queue
        (always, when ``aimed``)."""
        pieces = _PARAMETER.split(op.template)
        ids = st.sampled_from(self.message_ids).map(lambda s: quote(s, safe=""))
        odd = (
            ids if aimed else TEXT.map(lambda s: quote(s, safe="")) | st.sampled_from(PATH_SEGMENTS)
        )

        @st.composite
        def paths(draw: st.DrawFn) -> tuple[str, bool]:
            parts, addressed = [], True
            for index, piece in enumerate(pieces):
                if index % 2 == 0:
                    parts.append(piece)
                elif piece == "name" and (aimed or draw(st.integers(0, 9)) < 7):
                    parts.append(draw(st.sampled_from(POOL)))
                elif piece == "name":
                    addressed = False
                    parts.append(draw(NAMES.map(lambda s: quote(s, safe="")) | odd))
                else:
                    segment = draw(weighted((2, ids), (1, odd)) if piece == "id" else odd)
                    addressed = addressed and clean_segment(segment)
                    parts.append(segment)
            return "".join(parts), addressed

        return paths()

    def body_calls(self, bodies: Bodies) -> SearchStrategy[Call]:
        @st.composite
        def calls(draw: st.DrawFn) -> Call:
            publishing = [op for op in self.body_operations if op.key in {PUBLISH, PUBLISH_BATCH}]
            op = draw(st.sampled_from(self.body_operations + publishing))  # the most varied
            path, addressed = draw(self.paths(op))
            content, document = draw(bodies(op))
            content_type = draw(
                CONTENT_TYPES if draw(st.integers(0, 9)) == 0 else JSON_CONTENT_TYPES
            )
            headers = {} if content_type is None else {"content-type": content_type}
            return Call(op, path, "", headers, content, addressed, document)

        return calls()


@st.composite
def encoded(draw: st.DrawFn, document: Any) -> bytes:
    """``document`` as JSON text, with varied (valid) whitespace and escaping."""
    text = json.dumps(
        document,
        ensure_ascii=draw(st.booleans()),
        separators=draw(SEPARATORS),
        allow_nan=False,
    )
    around = draw(st.sampled_from(["", " ", "\n", "\r\n\t "]))
    return (around + text + around).encode()


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def clean_segment(segment: str) -> bool:
    """Whether a (percent-encoded) path segment reaches the route as one segment: UTF-8, not
    empty, no ``/`` once decoded, and no dot segment a client would resolve."""
    decoded = unquote_to_bytes(segment)
    return is_utf8(decoded) and decoded not in {b"", b".", b".."} and b"/" not in decoded


def expectation(call: Call) -> Expectation | None:
    """What the contract makes of this request's body, query or Last-Event-ID, when that alone
    decides the answer."""
    op = call.operation
    if op.query and call.query and not is_utf8(unquote_to_bytes(call.query.replace("+", " "))):
        # A queue name that cannot exist may be a 404 first.
        return Expectation(frozenset({400} if call.addressed else {400, 404}))
    if not call.addressed:
        return None
    if op.takes_body:
        if call.content is None or not call.content.strip():
            return None
        content_type = call.headers.get("content-type")
        if content_type is None or not is_json_media(content_type):
            return Expectation(frozenset({415}))
        if request_is_json(call.content) is False:
            return Expectation(frozenset({400}))
        if isinstance(call.document, dict) and len(call.document) == 1:
            [(key, value)] = call.document.items()
            bounds = is_integer_schema(op.fields[key]) if key in op.fields else None
            if bounds is not None and type(value) is int and not bounds[0] <= value <= bounds[1]:
                return Expectation(frozenset({422}), f"body.{key}")
        return None
    if op.query and call.query:
        pairs = call.query.split("&")
        name, _, value = pairs[0].partition("=")
        schema = op.query.get(unquote(name))
        bounds = is_integer_schema(schema) if schema is not None and len(pairs) == 1 else None
        if bounds is not None and _INTEGER.fullmatch(unquote(value)):
            low, high = bounds
            if not low <= int(unquote(value)) <= high:
                return Expectation(frozenset({422}), f"query.{unquote(name)}")
        return None
    if op.stream and not call.query:
        header = call.headers.get("last-event-id", "").strip()
        if _INTEGER.fullmatch(header):
            if 0 <= int(header) <= INT64_MAX:
                return Expectation(frozenset({200}))
            return Expectation(frozenset({422}), "header.Last-Event-ID")
    return None


# --- body strategies --------------------------------------------------------------------------


def json_inner(text: str) -> bytes:
    return json.dumps(text, ensure_ascii=False)[1:-1].encode()


@st.composite
def junk_strings(draw: st.DrawFn) -> bytes:
    """A JSON string literal with invalid UTF-8, escapes (lone surrogates among them) or raw
    control characters inside."""
    junk = draw(st.lists(st.sampled_from(BAD_UTF8 + ESCAPES + RAW_CONTROL), min_size=1, max_size=3))
    return b'"' + json_inner(draw(TEXT)) + b"".join(junk) + json_inner(draw(TEXT)) + b'"'


@st.composite
def deep_documents(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(50, 200) | st.sampled_from([62, 63, 64, 65, 1_000, 100_000]))
    opening, closing = draw(
        st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'[{"k":', b"}]"), (b'{"":[', b"]}")])
    )
    leaf = draw(st.sampled_from([b"1", b'"x"', b"null", b"[]", b"{}", b"1e400", b'"\\ud800"']))
    unbalanced = draw(st.sampled_from([0, 0, 0, 1]))
    return opening * depth + leaf + closing * (depth - unbalanced)


def duplicate_keys(fuzz: Fuzzer, op: Operation) -> SearchStrategy[bytes]:
    """The request's own fields with one of them twice, or an object with a key twice."""

    @st.composite
    def documents(draw: st.DrawFn) -> bytes:
        document = draw(fuzz.shape(op, None))
        pairs = list(document.items()) if isinstance(document, dict) and document else [("k", 1)]
        key, _ = draw(st.sampled_from(pairs))
        pairs.insert(draw(st.integers(0, len(pairs))), (key, draw(JSON_VALUES)))
        members = [json.dumps(k).encode() + b":" + json.dumps(v).encode() for k, v in pairs]
        return b"{" + b",".join(members) + b"}"

    return documents() | st.sampled_from([b'{"k":"v","k":"w"}', b'{"a":1,"a":{"a":2,"a":3}}'])


def templates(fuzz: Fuzzer, fragments: SearchStrategy[bytes]) -> Bodies:
    """Bodies for ``op``: its shape with a hand-built fragment for one or more values, or the
    fragment as the whole document."""

    def bodies(op: Operation) -> SearchStrategy[tuple[bytes, Any]]:
        @st.composite
        def build(draw: st.DrawFn) -> tuple[bytes, Any]:
            fragment = draw(fragments)
            if draw(st.integers(0, 4)) == 0:
                content = fragment
            else:
                text = draw(encoded(draw(fuzz.shape(op, st.just(MARKER)))))
                content = text.replace(MARKER_JSON, fragment)
            return content, unique_json(content)

        return build()

    return bodies


def raw_bodies(fuzz: Fuzzer) -> Bodies:
    """Arbitrary bytes; documents with invalid UTF-8, bad escapes or raw control characters in
    a string; bytes inserted anywhere; documents cut short (mid-sequence, too)."""

    def bodies(op: Operation) -> SearchStrategy[tuple[bytes, Any]]:
        @st.composite
        def build(draw: st.DrawFn) -> tuple[bytes, Any]:
            kind = draw(st.sampled_from(["binary", "junk", "inserted", "truncated"]))
            if kind == "binary":
                return draw(st.binary(max_size=512)), None
            if kind == "junk":  # inside a string literal, where a value of the shape was
                text = draw(encoded(draw(fuzz.shape(op, st.just(MARKER)))))
                content = text.replace(MARKER_JSON, draw(junk_strings()))
                return content, unique_json(content)
            text = draw(encoded(draw(fuzz.shape(op, JSON_VALUES))))
            if kind == "inserted":  # anywhere at all
                at = draw(st.integers(0, len(text)))
                junk = draw(st.sampled_from(BAD_UTF8 + RAW_CONTROL))
                content = text[:at] + junk + text[at:]
            else:
                content = text[: draw(st.integers(0, max(0, len(text) - 1)))]
            return content, unique_json(content)

        return build()

    return bodies


def generated_bodies(fuzz: Fuzzer) -> Bodies:
    """Hypothesis's own JSON documents, in the request's shape or as the whole body."""

    def bodies(op: Operation) -> SearchStrategy[tuple[bytes, Any]]:
        @st.composite
        def build(draw: st.DrawFn) -> tuple[bytes, Any]:
            if draw(st.integers(0, 5)) == 0:
                document = draw(JSON_VALUES)
            else:
                document = draw(fuzz.shape(op, JSON_VALUES))
            if isinstance(document, dict) and "wait_s" in document:
                document["wait_s"] = 0
            return draw(encoded(document)), document

        return build()

    return bodies


def odd_bodies(fuzz: Fuzzer) -> Bodies:
    """Numbers JSON has and some it has not, string escapes, duplicate keys."""

    def bodies(op: Operation) -> SearchStrategy[tuple[bytes, Any]]:
        fragments = st.one_of(
            st.sampled_from(NUMBERS),
            INTEGERS.map(lambda n: str(n).encode()),
            junk_strings(),
            duplicate_keys(fuzz, op),
        )
        return templates(fuzz, fragments)(op)

    return bodies


def deep_bodies(fuzz: Fuzzer) -> Bodies:
    return templates(fuzz, deep_documents())


def query_calls(fuzz: Fuzzer) -> SearchStrategy[Call]:
    """Any route, with a generated query string (and Last-Event-ID for feeds); a valid body
    where the route takes one."""

    def pairs(op: Operation) -> SearchStrategy[str]:
        known = sorted(op.query)
        names = weighted(
            (6 if known else 0, st.sampled_from(known or [""])),
            (1, TEXT.map(lambda s: quote(s, safe=""))),
            (1, st.sampled_from(QUERY_PIECES)),
        ).filter(lambda n: unquote(n) not in NEVER_GENERATED)
        bad = st.tuples(TEXT, st.sampled_from(QUERY_PIECES), TEXT).map(
            lambda t: quote(t[0], safe="") + t[1] + quote(t[2], safe="")
        )
        odd = st.sampled_from(["", "+5", " 5", "1e3", "1.0", "-0", "00", "true"]).map(quote)
        integers = INTEGERS.map(str) | BEYOND_64_BITS.map(str)

        @st.composite
        def pair(draw: st.DrawFn) -> str:
            name = draw(names)
            schema = op.query.get(unquote(name), {})
            valid = fuzz.valid(schema, unquote(name), None).map(
                lambda v: "" if v is None else quote(str(v), safe="")
            )
            text = TEXT.map(lambda s: quote(s, safe=""))
            integer = is_integer_schema(schema) is not None
            value = draw(
                weighted(
                    (1 if integer else 2, valid),
                    (2 if integer else 1, integers),
                    (1, bad),
                    (1, odd),
                    (1, text),
                )
            )
            form = draw(st.sampled_from(["{n}={v}", "{n}={v}", "{n}={v}", "{n}", "={v}"]))
            return form.format(n=name, v=value)

        return pair()

    # Without surrounding whitespace, which HTTP clients refuse to send.
    header_values = (INTEGERS | BEYOND_64_BITS).map(str) | st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20
    ).map(str.strip)

    @st.composite
    def calls(draw: st.DrawFn) -> Call:
        op = draw(st.sampled_from(fuzz.operations + [op for op in fuzz.operations if op.query]))
        path, addressed = draw(fuzz.paths(op))
        query = "&".join(draw(st.lists(pairs(op), min_size=draw(st.integers(0, 1)), max_size=4)))
        headers: dict[str, str] = {}
        if op.stream and draw(st.booleans()):
            headers["last-event-id"] = draw(header_values)
        content = None
        if op.takes_body:
            content = json.dumps(draw(fuzz.shape(op, None))).encode()
            headers["content-type"] = "application/json"
        return Call(op, path, query, headers, content, addressed)

    return calls()


def out_of_range_calls(fuzz: Fuzzer) -> SearchStrategy[Call]:
    """One integer query parameter or body field, beyond 64 bits or out of its range."""
    targets = [
        (op, where, name)
        for op in fuzz.operations
        for where, fields in (("query", op.query), ("body", op.fields))
        for name, schema in fields.items()
        if is_integer_schema(schema) is not None and name not in NEVER_GENERATED
    ]

    @st.composite
    def calls(draw: st.DrawFn) -> Call:
        op, where, name = draw(st.sampled_from(targets))
        schema = op.query[name] if where == "query" else op.fields[name]
        low, high = is_integer_schema(schema) or (INT64_MIN, INT64_MAX)
        outside = st.integers(max_value=low - 1) | st.integers(min_value=high + 1)
        value = draw(
            weighted((2, BEYOND_64_BITS), (1, st.sampled_from(EDGE_INTEGERS)), (1, outside))
        )
        assume(not low <= value <= high)
        path, addressed = draw(fuzz.paths(op, aimed=True))
        if where == "query":
            return Call(op, path, f"{name}={value}", addressed=addressed)
        document = {name: value}
        content = draw(encoded(document))
        headers = {"content-type": "application/json"}
        return Call(op, path, "", headers, content, addressed, document)

    return calls()


# --- the tests --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz(server: Server) -> Iterator[Fuzzer]:
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        answer = client.get("/openapi.json")
        document = check_answer(answer)
        fuzzer = Fuzzer(server, client, document)
        fuzzer.seed()
        yield fuzzer


def test_the_openapi_document_lists_every_route_of_the_contract(fuzz: Fuzzer) -> None:
    listed = {op.key for op in fuzz.operations}
    assert listed >= CONTRACT_ROUTES, sorted(CONTRACT_ROUTES - listed)
    assert fuzz.body_operations and all(op.template.startswith("/") for op in fuzz.operations)


# Each test's inner function has its own name: Hypothesis keys its example database by it.


def test_raw_byte_bodies(fuzz: Fuzzer) -> None:
    @FUZZ
    @given(call=fuzz.body_calls(raw_bodies(fuzz)))
    def raw_byte_bodies(call: Call) -> None:
        fuzz.send(call)

    raw_byte_bodies()
    fuzz.read_back()


def test_generated_json_documents_in_valid_shapes(fuzz: Fuzzer) -> None:
    @FUZZ
    @given(call=fuzz.body_calls(generated_bodies(fuzz)))
    def generated_json_documents(call: Call) -> None:
        fuzz.send(call)

    generated_json_documents()
    fuzz.read_back()


def test_odd_numbers_escapes_and_duplicate_keys(fuzz: Fuzzer) -> None:
    @FUZZ
    @given(call=fuzz.body_calls(odd_bodies(fuzz)))
    def odd_numbers_escapes_and_duplicate_keys(call: Call) -> None:
        fuzz.send(call)

    odd_numbers_escapes_and_duplicate_keys()
    fuzz.read_back()


def test_deeply_nested_documents(fuzz: Fuzzer) -> None:
    @FUZZ
    @given(call=fuzz.body_calls(deep_bodies(fuzz)))
    def deeply_nested_documents(call: Call) -> None:
        fuzz.send(call)

    deeply_nested_documents()
    fuzz.read_back()


def test_query_strings_headers_and_path_parameters(fuzz: Fuzzer) -> None:
    @FUZZ
    @given(call=query_calls(fuzz))
    def query_strings_headers_and_path_parameters(call: Call) -> None:
        fuzz.send(call)

    query_strings_headers_and_path_parameters()
    fuzz.read_back()


def test_integers_out_of_range_are_a_422_naming_them(fuzz: Fuzzer) -> None:
    @FUZZ
    @given(call=out_of_range_calls(fuzz))
    def integers_out_of_range(call: Call) -> None:
        expected = expectation(call)
        assert expected is not None and expected.statuses == {422}, call
        fuzz.send(call)

    integers_out_of_range()
    fuzz.read_back()
