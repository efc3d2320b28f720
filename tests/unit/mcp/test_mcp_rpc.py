"""RpcSession: correlation and every stream quirk of docs/architecture.md section 10."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from visionflow.errors import LocalProtocolError, RemoteProtocolError, RpcTransportError
from visionflow.mcp.rpc import (
    CallFailed,
    ErrorResponse,
    IncomingRequest,
    InvalidMessage,
    Notification,
    Response,
    RpcEvent,
    RpcSession,
    SkippedLine,
    StrayError,
    UnknownResponse,
    remote_error_from,
)


def feed(session: RpcSession, data: bytes, cuts: list[int] | None = None) -> list[RpcEvent]:
    if not cuts:
        return session.receive_data(data)
    points = sorted({c % (len(data) + 1) for c in cuts})
    events: list[RpcEvent] = []
    last = 0
    for p in [*points, len(data)]:
        events.extend(session.receive_data(data[last:p]))
        last = p
    return events


def test_request_bytes_are_one_jsonrpc_line() -> None:
    session = RpcSession()
    rid, data = session.send_request("tools/call", {"name": "agent_list", "arguments": {}})
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert msgspec.json.decode(data) == {
        "jsonrpc": "2.0",
        "method": "tools/call",
        "id": rid,
        "params": {"name": "agent_list", "arguments": {}},
    }
    assert session.pending == {rid: "tools/call"}


def test_request_without_params_omits_them() -> None:
    _, data = RpcSession().send_request("tools/list")
    assert "params" not in msgspec.json.decode(data)


def test_notification_has_no_id() -> None:
    data = RpcSession().send_notification("notifications/initialized")
    assert msgspec.json.decode(data) == {"jsonrpc": "2.0", "method": "notifications/initialized"}


def test_ids_are_unique_and_increasing() -> None:
    session = RpcSession()
    ids = [session.send_request("m")[0] for _ in range(5)]
    assert ids == sorted(set(ids))


# A whole 2.x-style conversation with every quirk, replies out of order.
def _conversation(session: RpcSession) -> tuple[bytes, int, int, int]:
    a, _ = session.send_request("initialize", {})
    b, _ = session.send_request("tools/list")
    c, _ = session.send_request("tools/call", {"name": "agent_list"})
    wire = (
        b"Claude-Flow banner, not JSON\n"
        + b'{"jsonrpc":"2.0","method":"server.initialized","params":{}}\n'
        + f'{{"jsonrpc":"2.0","id":{b},"result":{{"tools":[]}}}}\r\n'.encode()
        + b'{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n'
        + b'{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found"}}\n'
        + b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}\n'
        + f'{{"jsonrpc":"2.0","id":"{a}","result":{{"protocolVersion":"2024-11-05"}}}}\n'.encode()
        + b'{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}\n'
        + b'{"jsonrpc":"2.0","id":999,"result":{}}\n'
        + f'{{"jsonrpc":"2.0","id":{c},"error":{{"code":-32601,"message":"Tool not found: x",'
        f'"data":{{"k":1}}}}}}\n'.encode()
    )
    return wire, a, b, c


def _check_conversation(events: list[RpcEvent], a: int, b: int, c: int) -> None:
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "SkippedLine",
        "Notification",
        "Response",
        "Notification",
        "StrayError",
        "StrayError",
        "Response",
        "Notification",
        "UnknownResponse",
        "ErrorResponse",
    ]
    assert events[1] == Notification("server.initialized", {})
    assert events[2] == Response(b, "tools/list", {"tools": []})
    stray = events[4]
    assert isinstance(stray, StrayError) and stray.error.code == -32601
    assert events[6] == Response(a, "initialize", {"protocolVersion": "2024-11-05"})
    assert isinstance(events[8], UnknownResponse) and events[8].id == 999
    err = events[9]
    assert isinstance(err, ErrorResponse) and err.id == c and err.method == "tools/call"
    assert (err.error.code, err.error.message, err.error.data) == (
        -32601,
        "Tool not found: x",
        {"k": 1},
    )


def test_conversation_whole() -> None:
    session = RpcSession()
    wire, a, b, c = _conversation(session)
    _check_conversation(feed(session, wire), a, b, c)
    assert session.pending == {}


@given(st.lists(st.integers(min_value=0, max_value=5000), max_size=60))
@settings(max_examples=150, deadline=None)
def test_conversation_any_chunking(cuts: list[int]) -> None:
    session = RpcSession()
    wire, a, b, c = _conversation(session)
    _check_conversation(feed(session, wire, cuts), a, b, c)


def test_reply_twice_second_is_unknown() -> None:
    session = RpcSession()
    rid, _ = session.send_request("m")
    line = f'{{"jsonrpc":"2.0","id":{rid},"result":1}}\n'.encode()
    assert session.receive_data(line) == [Response(rid, "m", 1)]
    assert session.receive_data(line) == [UnknownResponse(rid, 1, None)]


def test_forgotten_call_reply_is_unknown() -> None:
    session = RpcSession()
    rid, _ = session.send_request("slow")
    assert session.forget(rid) is True
    assert session.forget(rid) is False
    (event,) = session.receive_data(
        f'{{"jsonrpc":"2.0","id":{rid},"error":{{"code":1,"message":"late"}}}}\n'.encode()
    )
    assert isinstance(event, UnknownResponse) and event.error is not None and event.result is None


def test_non_numeric_string_id_is_unknown() -> None:
    session = RpcSession()
    session.send_request("m")
    (event,) = session.receive_data(b'{"jsonrpc":"2.0","id":"abc","result":1}\n')
    assert isinstance(event, UnknownResponse) and event.id == "abc"


def test_a_5000_digit_string_id_is_unknown_not_a_crash() -> None:
    session = RpcSession()
    session.send_request("m")
    line = b'{"jsonrpc":"2.0","id":"' + b"7" * 5000 + b'","result":1}\n'
    (event,) = session.receive_data(line)  # int() refuses over 4300 digits: was ValueError
    assert isinstance(event, UnknownResponse)


def test_server_request_surfaces_and_can_be_answered() -> None:
    session = RpcSession()
    (event,) = session.receive_data(b'{"jsonrpc":"2.0","id":"s1","method":"ping"}\n')
    assert event == IncomingRequest("s1", "ping", None)
    assert msgspec.json.decode(session.send_result("s1", {})) == {
        "jsonrpc": "2.0",
        "id": "s1",
        "result": {},
    }
    refused = msgspec.json.decode(session.send_error(7, -32601, "Method not found"))
    assert (
        refused["error"] == {"code": -32601, "message": "Method not found"} and refused["id"] == 7
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"jsonrpc":"2.0","id":1}', "no method, result or error"),
        (b'{"jsonrpc":"2.0","id":1,"result":1,"error":{}}', "both result and error"),
        (b'{"jsonrpc":"2.0","result":5}', "result without an id"),
    ],
)
def test_invalid_messages_are_events(line: bytes, reason: str) -> None:
    (event,) = RpcSession().receive_data(line + b"\n")
    assert isinstance(event, InvalidMessage) and reason in event.reason


def test_malformed_error_object_tolerated() -> None:
    session = RpcSession()
    rid, _ = session.send_request("m")
    (event,) = session.receive_data(f'{{"jsonrpc":"2.0","id":{rid},"error":"boom"}}\n'.encode())
    assert isinstance(event, ErrorResponse)
    assert event.error.code == -32603 and "malformed error object" in event.error.message


def test_remote_error_from_rejects_bool_code() -> None:
    assert remote_error_from({"code": True, "message": "x"}).code == -32603
    assert remote_error_from({"code": 5, "message": "x", "data": [1]}).data == [1]


def test_garbage_line_then_message() -> None:
    events = RpcSession().receive_data(b'\x00\x01garbage\n{"jsonrpc":"2.0","method":"n"}\n')
    assert isinstance(events[0], SkippedLine) and events[1] == Notification("n", None)


def test_fail_all_fails_every_pending_and_closes() -> None:
    session = RpcSession()
    ids = [session.send_request(f"m{i}")[0] for i in range(3)]
    failed = session.fail_all(RpcTransportError("link down"))
    assert [f.id for f in failed] == ids
    assert all(isinstance(f, CallFailed) and str(f.error) == "link down" for f in failed)
    assert session.pending == {} and session.closed
    with pytest.raises(RpcTransportError, match="link down"):
        session.send_request("again")
    with pytest.raises(RpcTransportError):
        session.send_notification("n")
    assert session.fail_all() == []  # idempotent


def test_fail_all_default_error() -> None:
    session = RpcSession()
    session.send_request("m")
    (failed,) = session.fail_all()
    assert isinstance(failed.error, RpcTransportError)


def test_pending_is_bounded() -> None:
    session = RpcSession(max_pending=2)
    session.send_request("a")
    session.send_request("b")
    with pytest.raises(LocalProtocolError):
        session.send_request("c")


def test_oversize_line_raises_remote_protocol_error() -> None:
    session = RpcSession(max_line_bytes=64)
    with pytest.raises(RemoteProtocolError):
        session.receive_data(b"{" + b" " * 100)


def test_a_servers_error_text_is_one_bounded_line() -> None:
    # it went raw into the log (a line of its own: forged lines, ANSI colours) and last_error,
    # up to max_line_bytes (8 MiB)
    error = remote_error_from({"code": -32600, "message": "nope\n\x1b[31mRED" + "x" * 5000})
    assert "\n" not in str(error) and "\x1b" not in str(error)
    assert error.message.startswith("nope [31mREDxxx")
    assert len(error.message) == 300 and error.message.endswith("\u2026")
    assert remote_error_from({"code": 1, "message": "database locked"}).message == (
        "database locked"
    )
