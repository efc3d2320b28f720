"""JSON control messages: union round trips and clear refusals."""

from __future__ import annotations

import msgspec
import pytest

from visionflow.errors import RemoteProtocolError
from visionflow.protocol.messages import (
    AgentsChanged,
    ClientMessage,
    ConnectionEstablished,
    ErrorMessage,
    GraphChanged,
    Moving,
    Ping,
    Pong,
    Release,
    RequestInitialData,
    ServerMessage,
    Settled,
    Subscribed,
    SubscribePositionUpdates,
    UnsubscribePositionUpdates,
    decode_client_message,
    decode_server_message,
    encode_server_message,
    encode_server_text,
)

CLIENT: list[ClientMessage] = [
    Ping(timestamp=1712345678901),
    Ping(timestamp=12.5),
    RequestInitialData(),
    SubscribePositionUpdates(),
    SubscribePositionUpdates(interval=50),
    UnsubscribePositionUpdates(),
    Release(ids=[0, 7, 0x3FFFFFFF]),
]
SERVER: list[ServerMessage] = [
    ConnectionEstablished(timestamp=1, protocol="2", client_id="c1", graph_revision=3),
    GraphChanged(revision=4),
    AgentsChanged(
        endpoint="sim",
        revision=2,
        live=True,
        changed=[{"id": 1, "agent_id": "a1", "status": "busy"}],
        removed=["a0"],
        count=1,
    ),
    Settled(sequence=10),
    Moving(sequence=11),
    Pong(timestamp=5),
    Subscribed(interval=100),
    ErrorMessage(code="bad_message", message="nope"),
]


@pytest.mark.parametrize("message", CLIENT)
def test_client_round_trip(message: ClientMessage) -> None:
    raw = msgspec.json.encode(message)
    assert decode_client_message(raw) == message
    assert decode_client_message(raw.decode()) == message


@pytest.mark.parametrize("message", SERVER)
def test_server_round_trip(message: ServerMessage) -> None:
    data = encode_server_message(message)
    assert msgspec.json.decode(data)["type"] == type(message).__struct_config__.tag
    assert decode_server_message(data) == message
    assert encode_server_text(message) == data.decode()


def test_wire_names() -> None:
    assert encode_server_text(Pong(timestamp=7)) == '{"type":"pong","timestamp":7}'
    assert decode_client_message('{"type":"requestInitialData"}') == RequestInitialData()
    # Extra fields from older clients are ignored.
    assert decode_client_message('{"type":"ping","timestamp":1,"x":2}') == Ping(timestamp=1)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{nope", "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "must be a JSON object, not an array"),
        ("null", "must be a JSON object, not null"),  # it said "got NoneType"
        ("1", "must be a JSON object, not a number"),
        ('{"type": "' + "x" * 10_000 + '"}', r"type 'x{64}'\.\.\. \(expected"),  # not all of it
        ("[1, nope", "not valid JSON"),
        ('{"timestamp": 1}', "string field 'type'"),
        ('{"type": 5}', "string field 'type'"),
        ('{"type": "pong"}', "unknown control message type 'pong'"),
        ('{"type": "ping", "timestamp": "soon"}', "bad 'ping' message"),
        ('{"type": "release"}', "missing required field `ids`"),
        ('{"type": "release", "ids": [1, "2"]}', r"\$\.ids\[1\]"),
        ('{"type": "release", "ids": [-1]}', ">= 0"),
        ('{"type": "release", "ids": [1073741824]}', "<= 1073741823"),
        ('{"type": "release", "ids": [' + ",".join(["1"] * 4097) + "]}", "length <= 4096"),
        ('{"type": "subscribe_position_updates", "interval": 0}', "> 0"),
        ('{"type": "subscribe_position_updates", "interval": "fast"}', "bad 'subscribe"),
    ],
)
def test_client_refusals(raw: str, reason: str) -> None:
    with pytest.raises(RemoteProtocolError, match=reason):
        decode_client_message(raw)


def test_bad_server_message() -> None:
    with pytest.raises(RemoteProtocolError):
        decode_server_message(b'{"type": "ping"}')
