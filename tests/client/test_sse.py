"""The client's SSE parser: the same frames however the bytes are cut into chunks and whichever
line endings the server uses (WHATWG: CRLF, LF or CR), comments and ``retry`` included."""

from __future__ import annotations

from cairn_client.feed import Frame, SseParser
from hypothesis import given
from hypothesis import strategies as st

line_text = st.text(
    st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=30
)
events = st.lists(
    st.tuples(
        st.integers(1, 10**12),
        st.sampled_from(["message.published", "queue.created", "x.unknown"]),
        st.lists(line_text, min_size=1, max_size=3),
    ),
    max_size=8,
)


def encode(stream: list[tuple[int, str, list[str]]], newline: str, retry: int) -> bytes:
    out = [f": cairn event feed{newline}retry: {retry}{newline}{newline}"]
    for position, type_, data in stream:
        lines = [f"id: {position}", f"event: {type_}", *(f"data: {d}" for d in data)]
        out.append(newline.join([": heartbeat", *lines]) + newline + newline)
    return "".join(out).encode()


@given(
    events,
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.integers(1, 5000),
    st.lists(st.integers(0, 400), max_size=12),
)
def test_frames_do_not_depend_on_how_the_stream_is_chunked(
    stream: list[tuple[int, str, list[str]]], newline: str, retry: int, cuts: list[int]
) -> None:
    raw = encode(stream, newline, retry)
    parser = SseParser()
    frames: list[Frame] = []
    start = 0
    for cut in sorted(min(c, len(raw)) for c in cuts):
        frames += parser.feed(raw[start:cut])
        start = max(start, cut)
    frames += parser.feed(raw[start:])
    assert frames == [Frame(str(p), t, "\n".join(d)) for p, t, d in stream]
    assert parser.retry_ms == retry
