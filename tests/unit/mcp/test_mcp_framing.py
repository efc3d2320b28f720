"""LineFramer: bytes in arbitrary chunks -> JSON-RPC messages (docs/architecture.md section 10)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from visionflow.errors import RemoteProtocolError
from visionflow.mcp.framing import LineFramer, RawMessage, SkippedLine, encode_line


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in [*points, len(data)]:
        out.append(data[last:p])
        last = p
    return out


def feed_all(framer: LineFramer, chunks: list[bytes]) -> list[RawMessage | SkippedLine]:
    events: list[RawMessage | SkippedLine] = []
    for chunk in chunks:
        events.extend(framer.feed(chunk))
    return events


STREAM = (
    b"Claude-Flow MCP server v2.0 starting...\n"  # banner of older 2.x builds
    b'{"jsonrpc":"2.0","method":"server.initialized",'
    b'"params":{"v":"\xc3\xa9t\xc3\xa9 \xf0\x9f\x90\x9d"}}\r\n'
    b"\n\r\n   \n"
    b'{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2024-11-05"}}\n'
    b'{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found"}}\n'
    b'{"jsonrpc":"2.0","id":"7","result":null}\n'
)


def check_stream(events: list[RawMessage | SkippedLine]) -> None:
    assert len(events) == 5
    banner, hello, init, stray, late = events
    assert isinstance(banner, SkippedLine)
    assert banner.preview.startswith("Claude-Flow MCP server")
    assert isinstance(hello, RawMessage) and hello.method == "server.initialized"
    assert hello.params == {"v": "été 🐝"}
    assert isinstance(init, RawMessage) and init.id == 1
    assert init.result == {"protocolVersion": "2024-11-05"}
    assert isinstance(stray, RawMessage) and stray.id is msgspec.UNSET
    assert isinstance(late, RawMessage) and late.id == "7" and late.result is None


def test_whole_stream_at_once() -> None:
    check_stream(LineFramer().feed(STREAM))


def test_one_byte_at_a_time_splits_utf8() -> None:
    check_stream(feed_all(LineFramer(), [STREAM[i : i + 1] for i in range(len(STREAM))]))


@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
@settings(max_examples=150, deadline=None)
def test_any_chunking_gives_same_events(cuts: list[int]) -> None:
    check_stream(feed_all(LineFramer(), chunked(STREAM, cuts)))


def test_result_null_differs_from_absent() -> None:
    (msg,) = LineFramer().feed(b'{"jsonrpc":"2.0","id":3,"result":null}\n')
    assert isinstance(msg, RawMessage)
    assert msg.result is None and msg.error is msgspec.UNSET and msg.method is msgspec.UNSET


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{not json", "invalid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"id": [1]}', "not a JSON-RPC message"),
        (b"\xff\xfe{}", "not a JSON object"),
        # hostile lines that used to escape as foreign exceptions and crash the watcher
        (b'{"method": "\xff\xfe"}', "not valid UTF-8"),
        (b'{"params": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
    ],
)
def test_garbage_becomes_skipped_line(line: bytes, reason: str) -> None:
    framer = LineFramer()
    events = framer.feed(line + b"\n" + b'{"jsonrpc":"2.0","method":"x"}\n')
    assert isinstance(events[0], SkippedLine) and reason in events[0].reason
    assert isinstance(events[1], RawMessage) and events[1].method == "x"


def test_skipped_preview_is_80_chars() -> None:
    (event,) = LineFramer().feed(b"B" * 500 + b"\n")
    assert isinstance(event, SkippedLine)
    assert event.preview == "B" * 80 and event.size == 500


def test_partial_line_waits_for_newline() -> None:
    framer = LineFramer()
    assert framer.feed(b'{"jsonrpc":"2.0",') == []
    assert framer.buffered == len(b'{"jsonrpc":"2.0",')
    (msg,) = framer.feed(b'"method":"m"}\n')
    assert isinstance(msg, RawMessage) and framer.buffered == 0


def test_line_over_cap_without_newline_raises_and_stays_broken() -> None:
    framer = LineFramer(max_line_bytes=1000)
    framer.feed(b"x" * 999)
    with pytest.raises(RemoteProtocolError, match="max_line_bytes=1000"):
        framer.feed(b"x" * 10)
    assert framer.buffered == 0  # nothing kept from the oversize line
    with pytest.raises(RemoteProtocolError):
        framer.feed(b"{}\n")


def test_complete_line_over_cap_raises() -> None:
    with pytest.raises(RemoteProtocolError):
        LineFramer(max_line_bytes=10).feed(b'{"jsonrpc":"2.0","method":"x"}\n')


def test_line_exactly_at_cap_is_accepted() -> None:
    line = encode_line({"jsonrpc": "2.0", "method": "pad", "params": "y" * 100})
    (msg,) = LineFramer(max_line_bytes=len(line) - 1).feed(line)
    assert isinstance(msg, RawMessage)


def test_several_hundred_kb_line_in_small_chunks() -> None:
    tools = [{"name": f"tool_{i}", "inputSchema": {"properties": {"a": {}}}} for i in range(5000)]
    line = encode_line({"jsonrpc": "2.0", "id": 2, "result": {"tools": tools}})
    assert len(line) > 250_000
    framer = LineFramer()
    events = feed_all(framer, [line[i : i + 4096] for i in range(0, len(line), 4096)])
    assert len(events) == 1 and isinstance(events[0], RawMessage)
    assert len(events[0].result["tools"]) == 5000


def test_encode_line_is_one_line() -> None:
    data = encode_line({"text": "a\nb"})
    assert data.count(b"\n") == 1 and data.endswith(b"\n")


def test_bad_cap_rejected() -> None:
    with pytest.raises(ValueError, match="positive"):
        LineFramer(max_line_bytes=0)
