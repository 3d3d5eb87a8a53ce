"""W3C Trace Context (API.md "Tracing"; https://www.w3.org/TR/trace-context/): which headers
give a trace context, and the command's trace stamped on every event it appends."""

from __future__ import annotations

import json

import msgspec
import pytest
from starlette.datastructures import Headers

from api.tracing import trace_of
from broker.commands import (
    AckEntry,
    AckMessages,
    NackMessage,
    NewMessage,
    PublishMessages,
    PurgeQueue,
    ReceiveMessages,
    UndoPurge,
)
from broker.decide import Context, PublishReply, PurgeReply, ReceiveReply
from broker.events import Trace
from broker.writer import apply_batch
from tests.conftest import Broker
from tests.helpers import Counter

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{PARENT_ID}-01"


def headers(*pairs: tuple[str, str]) -> Headers:
    return Headers(raw=[(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in pairs])


def parent_only(value: str) -> Trace | None:
    return trace_of(headers(("traceparent", value)))


# --- traceparent ----------------------------------------------------------------------------


def test_a_valid_traceparent_is_kept_as_sent() -> None:
    assert parent_only(VALID) == Trace(VALID, None)


def test_no_traceparent_is_no_trace() -> None:
    assert trace_of(headers()) is None
    assert trace_of(headers(("tracestate", "foo=1"))) is None  # a tracestate alone is dropped


@pytest.mark.parametrize("name", ["TraceParent", "TRACEPARENT", "tRaCePaReNt"])
def test_the_header_name_is_case_insensitive(name: str) -> None:
    assert trace_of(Headers(headers={name: VALID})) == Trace(VALID, None)


@pytest.mark.parametrize("name", ["trace-parent", "trace.parent", "trace_parent"])
def test_other_header_names_are_not_traceparent(name: str) -> None:
    assert trace_of(Headers(headers={name: VALID})) is None


@pytest.mark.parametrize("padded", [f" {VALID}", f"\t{VALID}", f"{VALID} ", f"\t {VALID} \t"])
def test_optional_whitespace_around_a_traceparent_is_allowed(padded: str) -> None:
    assert parent_only(padded) == Trace(VALID, None)


@pytest.mark.parametrize("flags", ["00", "01", "ff", "0a"])
def test_any_trace_flags_are_accepted(flags: str) -> None:
    value = f"00-{TRACE_ID}-{PARENT_ID}-{flags}"
    assert parent_only(value) == Trace(value, None)


@pytest.mark.parametrize(
    "value",
    [
        f"cc-{TRACE_ID}-{PARENT_ID}-01",
        f"cc-{TRACE_ID}-{PARENT_ID}-01-what-the-future-will-be-like",
        f"01-{TRACE_ID}-{PARENT_ID}-00-",
        f"fe-{TRACE_ID}-{PARENT_ID}-01-xyz",
    ],
)
def test_a_future_version_may_carry_more_fields(value: str) -> None:
    assert parent_only(value) == Trace(value, None)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(f"ff-{TRACE_ID}-{PARENT_ID}-01", id="version ff"),
        pytest.param(f"00-{'0' * 32}-{PARENT_ID}-01", id="all-zero trace id"),
        pytest.param(f"00-{TRACE_ID}-{'0' * 16}-01", id="all-zero parent id"),
        pytest.param(f"00-{TRACE_ID.upper()}-{PARENT_ID}-01", id="uppercase trace id"),
        pytest.param(f"00-{TRACE_ID}-{PARENT_ID.upper()}-01", id="uppercase parent id"),
        pytest.param(f"0A-{TRACE_ID}-{PARENT_ID}-01", id="uppercase version"),
        pytest.param(f"00-{TRACE_ID}-{PARENT_ID}-0A", id="uppercase flags"),
        pytest.param(f"000-{TRACE_ID}-{PARENT_ID}-01", id="version too long"),
        pytest.param(f"0-{TRACE_ID}-{PARENT_ID}-01", id="version too short"),
        pytest.param(f"00-{TRACE_ID}3-{PARENT_ID}-01", id="trace id too long"),
        pytest.param(f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01", id="trace id too short"),
        pytest.param(f"00-{TRACE_ID}-{PARENT_ID}7-01", id="parent id too long"),
        pytest.param(f"00-{TRACE_ID}-{PARENT_ID[:-1]}-01", id="parent id too short"),
        pytest.param(f"00-{TRACE_ID}-{PARENT_ID}-001", id="flags too long"),
        pytest.param(f"00-{TRACE_ID}-{PARENT_ID}-1", id="flags too short"),
        pytest.param(f".0-{TRACE_ID}-{PARENT_ID}-01", id="illegal version character"),
        pytest.param(f"00-.{TRACE_ID[1:]}-{PARENT_ID}-01", id="illegal trace id character"),
        pytest.param(f"00-{TRACE_ID}-{PARENT_ID[:-1]}.-01", id="illegal parent id character"),
        pytest.param(f"00-{TRACE_ID}-{PARENT_ID}-.0", id="illegal flags character"),
        pytest.param(f"00-{TRACE_ID}-{PARENT_ID}-01-extra", id="version 00 with an extra field"),
        pytest.param(f"00-{TRACE_ID}-{PARENT_ID}-01-", id="version 00 with a trailing dash"),
        pytest.param(f"00-{TRACE_ID}-{PARENT_ID}-01.", id="version 00 with a trailing dot"),
        pytest.param(
            f"cc-{TRACE_ID}-{PARENT_ID}-01.what-the-future-will-be-like",
            id="future version, extra without a dash",
        ),
        pytest.param(f"cc-{TRACE_ID}-{PARENT_ID}-01x", id="future version, glued extra"),
        pytest.param(f"00_{TRACE_ID}_{PARENT_ID}_01", id="wrong separators"),
        pytest.param(f"00-{TRACE_ID}-{PARENT_ID}", id="missing flags"),
        pytest.param(f"00-{TRACE_ID}-01", id="missing parent id"),
        pytest.param("", id="empty"),
        pytest.param(f"00 - {TRACE_ID} - {PARENT_ID} - 01", id="whitespace inside"),
        pytest.param(f"00-{TRACE_ID}-{PARENT_ID}-01\n", id="trailing newline"),
    ],
)
def test_an_invalid_traceparent_is_ignored(value: str) -> None:
    assert parent_only(value) is None
    assert trace_of(headers(("traceparent", value), ("tracestate", "foo=1"))) is None


def test_two_traceparent_headers_are_ignored() -> None:
    """W3C's test suite (test_traceparent_duplicated): a request with two ``traceparent``
    headers starts a new trace; neither of them is taken."""
    other = f"00-{'1' * 32}-{PARENT_ID}-01"
    assert trace_of(headers(("traceparent", VALID), ("traceparent", other))) is None


# --- tracestate -----------------------------------------------------------------------------


def test_a_tracestate_rides_with_a_valid_traceparent() -> None:
    got = trace_of(headers(("traceparent", VALID), ("tracestate", "rojo=00f067aa0ba902b7")))
    assert got == Trace(VALID, "rojo=00f067aa0ba902b7")


def test_several_tracestate_headers_are_joined_in_order() -> None:
    got = trace_of(
        headers(
            ("traceparent", VALID),
            ("tracestate", "foo=1,bar=2"),
            ("tracestate", "rojo=1,congo=2"),
            ("tracestate", "baz=3"),
        )
    )
    assert got == Trace(VALID, "foo=1,bar=2,rojo=1,congo=2,baz=3")


@pytest.mark.parametrize("name", ["TraceState", "TRACESTATE"])
def test_the_tracestate_header_name_is_case_insensitive(name: str) -> None:
    got = trace_of(Headers(headers={"traceparent": VALID, name: "foo=1"}))
    assert got == Trace(VALID, "foo=1")


@pytest.mark.parametrize(
    "value",
    ["foo=1 \t , \t bar=2, \t baz=3", "foo=1\t \t,\t \tbar=2,\t \tbaz=3", " foo=1,bar=2,baz=3\t"],
)
def test_optional_whitespace_in_a_tracestate_is_dropped(value: str) -> None:
    got = trace_of(headers(("traceparent", VALID), ("tracestate", value)))
    assert got == Trace(VALID, "foo=1,bar=2,baz=3")


def test_empty_tracestate_headers_and_members_are_skipped() -> None:
    only_empty = trace_of(headers(("traceparent", VALID), ("tracestate", "")))
    assert only_empty == Trace(VALID, None)
    mixed = trace_of(
        headers(("traceparent", VALID), ("tracestate", ""), ("tracestate", "foo=1,,bar=2"))
    )
    assert mixed == Trace(VALID, "foo=1,bar=2")


def test_all_characters_the_spec_allows_are_kept() -> None:
    key = "".join(map(chr, range(0x61, 0x7B))) + "0123456789_-*/"
    value = "".join(
        [
            "".join(map(chr, range(0x20, 0x2C))),
            "".join(map(chr, range(0x2D, 0x3D))),
            "".join(map(chr, range(0x3E, 0x7F))),
        ]
    )
    for member_key in (key, key + "@a-z0-9_-*/"):
        got = trace_of(headers(("traceparent", VALID), ("tracestate", f"{member_key}={value}")))
        assert got == Trace(VALID, f"{member_key}={value}")


def test_thirty_two_members_are_kept() -> None:
    members = [f"bar{i:02d}={i:02d}" for i in range(1, 33)]
    got = trace_of(headers(("traceparent", VALID), ("tracestate", ",".join(members))))
    assert got == Trace(VALID, ",".join(members))


def test_a_tracestate_of_512_characters_is_kept() -> None:
    members = [f"k{i}=" + "v" * 60 for i in range(7)] + ["last=" + "v" * 59]
    value = ",".join(members)
    assert len(value) == 512  # "vendors SHOULD propagate at least 512 characters"
    got = trace_of(headers(("traceparent", VALID), ("tracestate", value)))
    assert got == Trace(VALID, value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("foo =1", id="space in key"),
        pytest.param("FOO=1", id="uppercase key"),
        pytest.param("foo.bar=1", id="dot in key"),
        pytest.param("foo@=1,bar=2", id="empty vendor"),
        pytest.param("@foo=1,bar=2", id="empty tenant"),
        pytest.param("foo@@bar=1,bar=2", id="two at signs"),
        pytest.param("foo@bar@baz=1,bar=2", id="two vendors"),
        pytest.param("foo=", id="empty value"),
        pytest.param("foo=1=2", id="equals sign in value"),
        pytest.param("foo=bar\x7f", id="DEL in value"),
        pytest.param("just-a-key", id="no equals sign"),
        pytest.param(",".join(f"bar{i:02d}={i:02d}" for i in range(1, 34)), id="33 members"),
        pytest.param("k" * 257 + "=1", id="key too long"),
        pytest.param("k=" + "v" * 257, id="value too long"),
    ],
)
def test_an_invalid_tracestate_is_dropped_but_the_traceparent_kept(value: str) -> None:
    got = trace_of(headers(("traceparent", VALID), ("tracestate", value)))
    assert got == Trace(VALID, None)


def test_one_invalid_tracestate_header_spoils_the_joined_value() -> None:
    got = trace_of(
        headers(("traceparent", VALID), ("tracestate", "foo=1"), ("tracestate", "BAD=2"))
    )
    assert got == Trace(VALID, None)


def test_a_tracestate_over_33_members_across_headers_is_dropped() -> None:
    first = ",".join(f"a{i:02d}=1" for i in range(20))
    second = ",".join(f"b{i:02d}=1" for i in range(13))
    got = trace_of(headers(("traceparent", VALID), ("tracestate", first), ("tracestate", second)))
    assert got == Trace(VALID, None)


@pytest.mark.parametrize(
    "states",
    [("foo=1,foo=1",), ("foo=1,foo=2",), ("foo=1", "foo=1"), ("foo=1", "foo=2")],
)
def test_a_tracestate_with_a_duplicated_key_is_dropped(states: tuple[str, ...]) -> None:
    """W3C's test suite (test_tracestate_duplicated_keys): keys are unique in a tracestate;
    one with a repeated key is invalid and discarded, the traceparent kept."""
    got = trace_of(headers(("traceparent", VALID), *(("tracestate", s) for s in states)))
    assert got == Trace(VALID, None)


# --- stamping on events ---------------------------------------------------------------------

PRODUCER = Trace(VALID, "vendor=producer")
CONSUMER = Trace(f"00-{'a' * 32}-{'b' * 16}-01", None)
_ids = Counter("trc")


def new(body: object = None) -> NewMessage:
    return NewMessage(message_id=_ids(), body=msgspec.Raw(msgspec.json.encode(body)))


async def test_every_event_a_command_appends_carries_its_trace(broker: Broker) -> None:
    await broker.create("q")
    await broker.run(PublishMessages(queue="q", messages=(new(1), new(2)), trace=PRODUCER))
    traced = [e for e in await broker.events() if e.trace is not None]
    assert [type(e).__name__ for e in traced] == ["MessagePublished", "MessagePublished"]
    assert all(e.trace == PRODUCER for e in traced)


async def test_the_event_json_shows_the_trace_and_omits_it_when_there_is_none(
    broker: Broker,
) -> None:
    await broker.create("q")
    await broker.run(PublishMessages(queue="q", messages=(new(),), trace=PRODUCER))
    await broker.run(PublishMessages(queue="q", messages=(new(),), trace=Trace(VALID)))
    created, with_state, without_state = [
        json.loads(stored.json()) for stored in await broker.store.read(0, 100)
    ]
    assert "trace" not in created and "trace" not in created["data"]
    assert with_state["trace"] == {"traceparent": VALID, "tracestate": "vendor=producer"}
    assert without_state["trace"] == {"traceparent": VALID}
    assert "trace" not in with_state["data"]
    assert with_state["type"] == "message.published" and with_state["data"]["body"] is None


async def test_a_received_message_carries_its_publishers_trace(broker: Broker) -> None:
    await broker.create("q")
    await broker.run(PublishMessages(queue="q", messages=(new("traced"),), trace=PRODUCER))
    await broker.run(PublishMessages(queue="q", messages=(new("untraced"),)))
    reply = await broker.run(ReceiveMessages(queue="q", max_messages=10, trace=CONSUMER))
    assert isinstance(reply, ReceiveReply)
    assert [(bytes(d.body), d.trace) for d in reply.messages] == [
        (b'"traced"', PRODUCER),
        (b'"untraced"', None),
    ]
    leased = [e for e in await broker.events() if type(e).__name__ == "MessageLeased"]
    assert [e.trace for e in leased] == [CONSUMER, CONSUMER]


async def test_a_nack_that_dead_letters_stamps_all_three_events(broker: Broker) -> None:
    await broker.create("dlq")
    await broker.create("q", max_receive_count=1, dead_letter_queue="dlq")
    await broker.run(PublishMessages(queue="q", messages=(new(),), trace=PRODUCER))
    reply = await broker.run(ReceiveMessages(queue="q"))
    assert isinstance(reply, ReceiveReply)
    [held] = reply.messages
    await broker.run(
        NackMessage(queue="q", message_id=held.id, receipt=held.receipt, trace=CONSUMER)
    )
    stored = await broker.store.read(0, 100)
    last = stored[-3:]
    assert [s.type for s in last] == [
        "message.nacked",
        "message.dead_lettered",
        "message.published",
    ]
    assert all(s.event().trace == CONSUMER for s in last)


async def test_a_purge_and_its_undo_are_stamped(broker: Broker) -> None:
    await broker.create("q")
    await broker.run(PublishMessages(queue="q", messages=(new(),)))
    purged = await broker.run(PurgeQueue(queue="q", trace=CONSUMER))
    assert isinstance(purged, PurgeReply)
    await broker.run(UndoPurge(queue="q", purge=purged.position, trace=PRODUCER))
    events = await broker.events()
    assert [(type(e).__name__, e.trace) for e in events[-3:]] == [
        ("QueuePurged", CONSUMER),
        ("QueuePurgeUndone", PRODUCER),
        ("MessageRestored", PRODUCER),
    ]


async def test_each_command_of_a_batch_stamps_its_own_trace(broker: Broker) -> None:
    await broker.create("q")
    ctx = Context(now=broker.clock(), new_id=Counter("n"), new_receipt=Counter("r"))
    commands = [
        PublishMessages(queue="q", messages=(new("a"),), trace=PRODUCER),
        PublishMessages(queue="q", messages=(new("b"),)),
        PublishMessages(queue="q", messages=(new("c"),), trace=CONSUMER),
    ]
    batch = await broker.store.transact(lambda tx: apply_batch(tx, commands, ctx))
    assert all(isinstance(o, PublishReply) for o in batch.outcomes)
    events = (await broker.events())[-3:]
    assert [e.trace for e in events] == [PRODUCER, None, CONSUMER]


async def test_an_ack_is_stamped_with_the_acking_requests_trace(broker: Broker) -> None:
    await broker.create("q")
    await broker.run(PublishMessages(queue="q", messages=(new(),), trace=PRODUCER))
    reply = await broker.run(ReceiveMessages(queue="q"))
    assert isinstance(reply, ReceiveReply)
    [held] = reply.messages
    entry = AckEntry(message_id=held.id, receipt=held.receipt)
    await broker.run(AckMessages(queue="q", entries=(entry,), trace=CONSUMER))
    assert (await broker.events())[-1].trace == CONSUMER
