"""JSON control messages (docs/protocol.md section 5) as msgspec tagged unions. Sans-IO.

Every text frame is one JSON object whose string field ``type`` is the union tag. Client
messages ignore unknown extra fields (VisionFlow clients add some) but not unknown types or
wrong field types: those raise :class:`RemoteProtocolError` with a message fit to echo back in
an ``error`` reply.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, TypeAlias

import msgspec

from visionflow import jsonsafe
from visionflow.errors import RemoteProtocolError
from visionflow.protocol.wire import ID_MASK

__all__ = [
    "CLIENT_MESSAGE_TYPES",
    "AgentsChanged",
    "ClientMessage",
    "ConnectionEstablished",
    "ErrorMessage",
    "GraphChanged",
    "Moving",
    "Ping",
    "Pong",
    "Release",
    "RequestInitialData",
    "ServerMessage",
    "SettingsChanged",
    "Settled",
    "SubscribePositionUpdates",
    "Subscribed",
    "UnsubscribePositionUpdates",
    "decode_client_message",
    "decode_server_message",
    "encode_server_message",
    "encode_server_text",
]

Timestamp: TypeAlias = int | float
NodeId: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=ID_MASK)]
IntervalMs: TypeAlias = Annotated[float, msgspec.Meta(gt=0)]


class _Message(msgspec.Struct, tag_field="type", frozen=True, kw_only=True):
    pass


# ---------------------------------------------------------------- client -> server


class Ping(_Message, tag="ping", frozen=True):
    timestamp: Timestamp | None = None


class RequestInitialData(_Message, tag="requestInitialData", frozen=True):
    pass


class SubscribePositionUpdates(_Message, tag="subscribe_position_updates", frozen=True):
    #: Requested interval in ms; the hub clamps it to the configured range.
    interval: IntervalMs | None = None


class UnsubscribePositionUpdates(_Message, tag="unsubscribe_position_updates", frozen=True):
    pass


#: Ids one ``release`` may name, and nodes one drag message may pin (web/ws.py
#: MAX_DRAG_RECORDS): more would be refused by the drag rate limit as a whole, which closed the
#: connection at once for one message over a second's worth.
MAX_RELEASE_IDS: Final = 4096


class Release(_Message, tag="release", frozen=True):
    #: Node ids without flags.
    ids: Annotated[list[NodeId], msgspec.Meta(max_length=MAX_RELEASE_IDS)]


ClientMessage: TypeAlias = (
    Ping | RequestInitialData | SubscribePositionUpdates | UnsubscribePositionUpdates | Release
)

CLIENT_MESSAGE_TYPES: Final[tuple[str, ...]] = (
    "ping",
    "requestInitialData",
    "subscribe_position_updates",
    "unsubscribe_position_updates",
    "release",
)

# ---------------------------------------------------------------- server -> client


class ConnectionEstablished(_Message, tag="connection_established", frozen=True):
    timestamp: int  # ms since the epoch
    protocol: Literal["2", "legacy"]
    client_id: str
    graph_revision: int


class GraphChanged(_Message, tag="graph_changed", frozen=True):
    revision: int


class AgentsChanged(_Message, tag="agents_changed", frozen=True):
    """The agents of one endpoint changed (docs/protocol.md section 5): only what changed."""

    endpoint: str
    #: the endpoint's agents revision: one more than the previous message's for this endpoint
    revision: int
    live: bool
    #: agent objects added or changed, exactly as ``GET /api/bots/data`` lists them
    changed: list[Any]
    #: ``agent_id`` of each agent no longer listed
    removed: list[str]
    count: int


class Settled(_Message, tag="settled", frozen=True):
    sequence: int


class SettingsChanged(_Message, tag="settings_changed", frozen=True):
    """The runtime settings changed (``PATCH /api/settings``, from any client): read them
    again. ``revision`` counts the changes since the service started."""

    revision: int


class Moving(_Message, tag="moving", frozen=True):
    sequence: int


class Pong(_Message, tag="pong", frozen=True):
    timestamp: Timestamp | None = None


class Subscribed(_Message, tag="subscribed", frozen=True):
    #: The interval in ms actually used, after clamping.
    interval: Timestamp


class ErrorMessage(_Message, tag="error", frozen=True):
    code: str
    message: str


ServerMessage: TypeAlias = (
    ConnectionEstablished
    | GraphChanged
    | AgentsChanged
    | Settled
    | SettingsChanged
    | Moving
    | Pong
    | Subscribed
    | ErrorMessage
)

_client_decoder: Final[msgspec.json.Decoder[ClientMessage]] = msgspec.json.Decoder(ClientMessage)
_server_decoder: Final[msgspec.json.Decoder[ServerMessage]] = msgspec.json.Decoder(ServerMessage)
_encoder: Final = msgspec.json.Encoder()


def decode_client_message(data: bytes | str) -> ClientMessage:
    """Parse one client text frame; raise :class:`RemoteProtocolError` saying what is wrong."""
    try:
        return jsonsafe.decode(data, _client_decoder)
    except msgspec.ValidationError as exc:
        raise RemoteProtocolError(_explain(data, exc)) from exc
    except msgspec.DecodeError as exc:
        raise RemoteProtocolError(f"control message is not valid JSON: {exc}") from exc


_TYPE_SHOWN = 64  # characters of an unknown message type said back (it is the client's own)


def _json_kind(value: object) -> str:
    """What a decoded JSON value is, in JSON's words (not Python's NoneType, list, int)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array"


def _explain(data: bytes | str, exc: msgspec.ValidationError) -> str:
    """Turn msgspec's validation error into one naming the message type (failure path only)."""
    try:
        raw = jsonsafe.decode(data)
    except msgspec.DecodeError as bad_json:  # validation can stop before a later syntax error
        return f"control message is not valid JSON: {bad_json}"
    if not isinstance(raw, dict):
        return f"control message must be a JSON object, not {_json_kind(raw)}"
    kind = raw.get("type")
    if not isinstance(kind, str):
        return "control message needs a string field 'type'"
    if kind not in CLIENT_MESSAGE_TYPES:
        allowed = ", ".join(CLIENT_MESSAGE_TYPES)
        shown = repr(kind) if len(kind) <= _TYPE_SHOWN else f"{kind[:_TYPE_SHOWN]!r}..."
        return f"unknown control message type {shown} (expected one of: {allowed})"
    return f"bad {kind!r} message: {exc}"


def decode_server_message(data: bytes | str) -> ServerMessage:
    """Parse a server message (for tests and Python clients); errors as for client messages."""
    try:
        return jsonsafe.decode(data, _server_decoder)
    except msgspec.DecodeError as exc:
        raise RemoteProtocolError(f"bad server message: {exc}") from exc


def encode_server_message(message: ServerMessage) -> bytes:
    """JSON bytes of ``message`` (``type`` first)."""
    return _encoder.encode(message)


def encode_server_text(message: ServerMessage) -> str:
    """The same, as ``str`` for a WebSocket text frame."""
    return _encoder.encode(message).decode()
