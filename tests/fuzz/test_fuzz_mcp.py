"""Hypothesis over the MCP client's sans-IO core: JSON-RPC lines from a server, well formed or
not, fed to ``LineFramer`` and ``RpcSession`` (visionflow/mcp/framing.py, rpc.py) in any chunks.

Whatever a server sends, the core answers with events, one per non-blank line, and raises only
``RemoteProtocolError`` (a line over the limit: then on every later feed); a reply settles the
pending call it names once, and only that one; splitting the bytes differently changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.served import examples

from visionflow.errors import RemoteProtocolError, RpcRemoteError
from visionflow.jsonsafe import MAX_DEPTH
from visionflow.mcp.framing import LineFramer, RawMessage, SkippedLine, encode_line
from visionflow.mcp.rpc import (
    ErrorResponse,
    IncomingRequest,
    InvalidMessage,
    Notification,
    Response,
    RpcSession,
    StrayError,
    UnknownResponse,
)

FUZZ = settings(
    max_examples=examples(300),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
EVENTS = (
    Response,
    ErrorResponse,
    Notification,
    IncomingRequest,
    StrayError,
    UnknownResponse,
    InvalidMessage,
    SkippedLine,
)

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
IDS = st.integers(-3, 12) | st.text(max_size=4) | st.sampled_from(["1", "2", "007"]) | st.none()


@st.composite
def message(draw: st.DrawFn) -> dict[str, Any]:
    """A JSON-RPC-shaped object: any mix of jsonrpc, id, method, params, result and error."""
    msg: dict[str, Any] = {}
    if draw(st.booleans()):
        msg["jsonrpc"] = draw(st.sampled_from(["2.0", "1.0"]) | JSON)
    if draw(st.booleans()):
        msg["id"] = draw(IDS | JSON)
    shape = draw(st.sampled_from(["call", "result", "error", "both", "neither"]))
    if shape == "call":
        msg["method"] = draw(st.sampled_from(["ping", "notifications/message"]) | JSON)
        if draw(st.booleans()):
            msg["params"] = draw(JSON)
    if shape in ("result", "both"):
        msg["result"] = draw(JSON)
    if shape in ("error", "both"):
        code = draw(st.integers(-33000, 0) | JSON)
        msg["error"] = draw(st.just({"code": code, "message": draw(st.text(max_size=12))}) | JSON)
    return msg


def deep(depth: int) -> str:
    return '{"jsonrpc":"2.0","id":1,"result":' + "[" * depth + "]" * depth + "}"


LINE = (
    message().map(lambda m: json.dumps(m).encode())
    | st.binary(max_size=40).map(lambda b: b.replace(b"\n", b""))
    | st.text(max_size=40).map(lambda t: t.replace("\n", "").encode())
    | st.sampled_from(
        [
            b"",
            b"  ",
            b"\r",
            b"[1,2]",
            b'{"id":1',
            b"\xff\xfe{",
            b"null",
            b'{"id":1,"result":Infinity}',
        ]
    )
    | st.integers(MAX_DEPTH - 2, MAX_DEPTH + 2).map(lambda d: deep(d).encode())
)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def comparable(event: Any) -> Any:
    """An event with its error as (code, message): exceptions do not compare equal."""
    if isinstance(event, ErrorResponse | StrayError | UnknownResponse):
        error = event.error
        shown = None if error is None else (error.code, error.message)
        return (type(event).__name__, getattr(event, "id", None), shown)
    return event


@FUZZ
@given(lines=st.lists(LINE, max_size=12), cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_a_stream_gives_one_event_per_line_however_it_is_split(
    lines: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(line + b"\n" for line in lines)
    whole = LineFramer().feed(data)
    framer = LineFramer()
    pieces = [event for chunk in chunked(data, cuts) for event in framer.feed(chunk)]
    assert pieces == whole
    assert len(whole) == sum(1 for line in lines if line.strip())
    assert framer.buffered == 0
    for event, line in zip(whole, [line for line in lines if line.strip()], strict=True):
        assert isinstance(event, RawMessage | SkippedLine)
        if isinstance(event, SkippedLine):
            assert event.size == len(line) and len(event.preview) <= 80


@FUZZ
@given(
    calls=st.integers(0, 6),
    lines=st.lists(LINE, max_size=12),
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
)
def test_replies_settle_their_own_calls_once(
    calls: int, lines: list[bytes], cuts: list[int]
) -> None:
    session = RpcSession()
    sent = dict(session.send_request("tools/call", {"n": i}) for i in range(calls))
    assert list(session.pending) == list(sent)
    data = b"".join(line + b"\n" for line in lines)
    events = [e for chunk in chunked(data, cuts) for e in session.receive_data(chunk)]
    assert len(events) == sum(1 for line in lines if line.strip())
    settled = [e.id for e in events if isinstance(e, Response | ErrorResponse)]
    assert len(settled) == len(set(settled)), "a call settled twice"
    assert set(settled) <= set(sent)
    assert set(session.pending) == set(sent) - set(settled)
    for event in events:
        assert isinstance(event, EVENTS), event
        if isinstance(event, ErrorResponse | StrayError):
            assert isinstance(event.error, RpcRemoteError)
            assert isinstance(event.error.code, int) and isinstance(event.error.message, str)
    # the same lines, split another way, tell the same story
    again = RpcSession()
    for i in range(calls):
        again.send_request("tools/call", {"n": i})
    assert [comparable(e) for e in again.receive_data(data)] == [comparable(e) for e in events]


@FUZZ
@given(value=JSON, method=st.text(min_size=1, max_size=20))
def test_what_we_send_reads_back_as_sent(value: Any, method: str) -> None:
    session = RpcSession()
    request_id, line = session.send_request(method, value)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    (raw,) = LineFramer().feed(line)
    assert isinstance(raw, RawMessage)
    assert (raw.id, raw.method) == (request_id, method)
    assert raw.params == (msgspec.UNSET if value is None else value)
    reply = encode_line({"jsonrpc": "2.0", "id": request_id, "result": value})
    (event,) = session.receive_data(reply)
    assert event == Response(request_id, method, value)
    assert session.pending == {}


@settings(max_examples=50, deadline=None, derandomize=True, database=None)
@given(
    limit=st.integers(8, 200),
    extra=st.integers(1, 300),
    cuts=st.lists(st.integers(0, 600), max_size=5),
)
def test_an_oversize_line_fails_the_stream_for_good(
    limit: int, extra: int, cuts: list[int]
) -> None:
    framer = LineFramer(max_line_bytes=limit)
    data = b"x" * (limit + extra) + b"\n" + b'{"jsonrpc":"2.0","method":"ok"}\n'
    with pytest.raises(RemoteProtocolError, match="max_line_bytes"):
        for chunk in chunked(data, cuts):
            framer.feed(chunk)
    with pytest.raises(RemoteProtocolError):
        framer.feed(b'{"jsonrpc":"2.0","method":"ok"}\n')
