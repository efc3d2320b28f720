"""The bounded event-stream parser (visionflow/mcp/sse.py)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from visionflow.errors import RemoteProtocolError
from visionflow.mcp.sse import SseEvent, SseParser

STREAM = (
    b"\xef\xbb\xbf: a comment first\r\n"
    b"retry: 1500\n"
    b"id: 1\n"
    b'data: {"a":\n'
    b"data:  1}\r\n"
    b"\n"
    b"event: ping\r"
    b"data: x\r"
    b"\r"
    b"id: 2\n"
    b"\n"  # an id alone: no event, but the id is kept
    b"data\n"  # a field with no colon: empty data
    b"\n"
    b"unknown: field\n"
    b"data: tail\n"
    b"\n"
)
EXPECTED = [
    SseEvent(b'{"a":\n 1}', "message", "1"),
    SseEvent(b"x", "ping", "1"),
    SseEvent(b"", "message", "2"),
    SseEvent(b"tail", "message", "2"),
]


def parse_in(chunks: list[bytes], limit: int = 1 << 20) -> tuple[list[SseEvent], SseParser]:
    parser = SseParser(limit)
    events = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events, parser


def test_fields_comments_line_ends_and_ids() -> None:
    events, parser = parse_in([STREAM])
    assert events == EXPECTED
    assert parser.retry == 1500 and parser.last_event_id == "2"


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_into_chunks_gives_the_same_events(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(bounds)]
    assert parse_in(chunks)[0] == EXPECTED


def test_a_cr_at_a_chunk_end_waits_for_a_possible_lf() -> None:
    # "data: a\r" + "\n\n": one event, not an extra blank line dispatching early
    events, _ = parse_in([b"data: a\r", b"\ndata: b\n\n"])
    assert events == [SseEvent(b"a\nb")]


def test_a_line_without_end_over_the_limit_is_refused_and_the_stream_is_dead() -> None:
    parser = SseParser(1000)
    parser.feed(b"data: " + b"x" * 500)
    with pytest.raises(RemoteProtocolError, match="exceeds 1000 bytes"):
        for _ in range(10):
            parser.feed(b"x" * 100)
    with pytest.raises(RemoteProtocolError):
        parser.feed(b"\n\n")


def test_an_event_whose_data_lines_add_up_past_the_limit_is_refused() -> None:
    parser = SseParser(1000)
    with pytest.raises(RemoteProtocolError, match="event's data exceeds 1000 bytes"):
        for _ in range(20):
            parser.feed(b"data: " + b"y" * 99 + b"\n")  # each line short, no blank line


def test_an_event_at_the_limit_is_taken() -> None:
    assert parse_in([b"data: " + b"z" * 1000 + b"\n\n"], 1000)[0] == [SseEvent(b"z" * 1000)]
