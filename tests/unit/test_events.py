"""The event codec: what is stored comes back as the same typed event, and the public JSON is
built from the stored pieces without parsing them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from broker import events
from broker.events import StoredEvent

times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
names = st.from_regex(r"[A-Za-z0-9_.-]{1,80}", fullmatch=True)
texts = st.text(max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
bodies = json_values.map(lambda v: msgspec.Raw(msgspec.json.encode(v)))
attributes = st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), texts, max_size=4)


def _strategy(cls: type[Any]) -> st.SearchStrategy[Any]:
    overrides: dict[str, Any] = {"at": times, "queue": names}
    hints = {name: typ for name, typ in cls.__annotations__.items()}
    for field in cls.__struct_fields__:
        if field == "body":
            overrides[field] = bodies
        elif field == "attributes":
            overrides[field] = attributes
        elif field in ("visible_at",):
            overrides[field] = times
        elif field in hints and "str | None" in str(hints[field]):
            overrides[field] = st.none() | texts
    return st.builds(cls, **overrides)


any_event = st.one_of(*[_strategy(cls) for cls in events.AnyEvent.__args__])


def _stored(position: int, event: events.AnyEvent) -> StoredEvent:
    return StoredEvent(
        position=position,
        type=events.type_of(event),
        at=events.encode_at(event.at),
        queue=event.queue,
        message_id=events.message_id_of(event),
        data=events.encode_data(event),
    )


def _equal(a: events.AnyEvent, b: events.AnyEvent) -> bool:
    # Raw compares by identity; compare what the bytes say instead.
    return msgspec.json.encode(a) == msgspec.json.encode(b)


@given(any_event, st.integers(min_value=1, max_value=2**53))
def test_a_stored_event_decodes_to_the_event_that_was_stored(
    event: events.AnyEvent, position: int
) -> None:
    assert _equal(_stored(position, event).event(), event)


@given(any_event, st.integers(min_value=1, max_value=2**53))
def test_the_public_json_has_the_envelope_and_the_events_own_fields(
    event: events.AnyEvent, position: int
) -> None:
    public = msgspec.json.decode(_stored(position, event).json())
    whole = msgspec.json.decode(msgspec.json.encode(event))
    assert public["position"] == position
    assert public["type"] == whole.pop("type")
    assert public["at"] == events.encode_at(event.at)
    assert public["queue"] == whole.pop("queue")
    assert public["message_id"] == whole.pop("message_id", None)
    whole.pop("at")
    if whole.get("trace", 0) is None:
        del whole["trace"]  # absent from the stored JSON when the command carried none
    assert public["data"] == whole


def test_every_event_type_is_listed_once() -> None:
    tags = [cls.__struct_config__.tag for cls in events.AnyEvent.__args__]
    assert sorted(tags) == sorted(events.EVENT_TYPES)
    assert len(set(tags)) == len(tags)


def test_an_older_reader_skips_fields_it_does_not_know() -> None:
    stored = StoredEvent(
        position=1,
        type="queue.purged",
        at="2026-01-01T00:00:00.000000Z",
        queue="q",
        message_id=None,
        data=b'{"purged": 3, "added_later": {"x": 1}}',
    )
    event = stored.event()
    assert isinstance(event, events.QueuePurged) and event.purged == 3
