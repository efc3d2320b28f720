"""Sans-IO JSON-RPC 2.0 client session, in the style of h11's ``Connection``.

No sockets, no clock, no await: :meth:`RpcSession.send_request` returns bytes to write and
:meth:`RpcSession.receive_data` turns bytes read into events. The async shell (``client.py``)
owns the socket, the deadlines and the futures.

Tolerated on the same stream (docs/architecture.md section 10): banner/garbage lines, the
non-standard ``server.initialized`` notification, error replies without ``id``, replies out of
order, replies to ids we never sent or already gave up on, unrelated notifications between
replies, and ids echoed back as strings.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

import msgspec

from visionflow.errors import LocalProtocolError, RpcError, RpcRemoteError, RpcTransportError

from .framing import DEFAULT_MAX_LINE_BYTES, LineFramer, RawMessage, SkippedLine, encode_line

__all__ = [
    "DEFAULT_MAX_PENDING",
    "CallFailed",
    "ErrorResponse",
    "IncomingRequest",
    "InvalidMessage",
    "Notification",
    "RequestId",
    "Response",
    "RpcEvent",
    "RpcSession",
    "SkippedLine",
    "StrayError",
    "UnknownResponse",
    "remote_error_from",
]

RequestId = int | str

#: Calls in flight on one connection; a caller past this is a bug (nothing awaits its answers).
DEFAULT_MAX_PENDING = 1024

#: JSON-RPC "internal error", used when a server's error object is itself malformed.
_MALFORMED_ERROR_CODE = -32603


@dataclass(frozen=True, slots=True)
class Response:
    id: int
    method: str
    result: Any


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    id: int
    method: str
    error: RpcRemoteError


@dataclass(frozen=True, slots=True)
class Notification:
    method: str
    params: Any


@dataclass(frozen=True, slots=True)
class IncomingRequest:
    """The server asked us something (MCP ``ping``, sampling); the shell answers or refuses."""

    id: RequestId
    method: str
    params: Any


@dataclass(frozen=True, slots=True)
class StrayError:
    """An error reply with no usable ``id``; 2.x sends one in answer to a notification."""

    error: RpcRemoteError


@dataclass(frozen=True, slots=True)
class UnknownResponse:
    """A reply whose id is not pending: never sent, answered twice, or already timed out."""

    id: RequestId
    result: Any
    error: RpcRemoteError | None


@dataclass(frozen=True, slots=True)
class InvalidMessage:
    """A JSON object that is neither request, notification nor reply."""

    reason: str


@dataclass(frozen=True, slots=True)
class CallFailed:
    """Returned by :meth:`RpcSession.fail_all`: this pending call will never be answered."""

    id: int
    method: str
    error: RpcError


RpcEvent = (
    Response
    | ErrorResponse
    | Notification
    | IncomingRequest
    | StrayError
    | UnknownResponse
    | InvalidMessage
    | SkippedLine
)


# ``jsonrpc`` has no default on purpose: omit_defaults would drop a defaulted "2.0".
class _Request(msgspec.Struct, omit_defaults=True):
    jsonrpc: str
    method: str
    id: int | str | msgspec.UnsetType = msgspec.UNSET
    params: Any = msgspec.UNSET


class _Reply(msgspec.Struct, omit_defaults=True):
    jsonrpc: str
    id: int | str | None
    result: Any = msgspec.UNSET
    error: Any = msgspec.UNSET


#: A server's error text is shown (log, last_error, a 502's message) up to this long.
REMOTE_MESSAGE_MAX = 300
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def shown_text(text: str) -> str:
    """A server's own words made safe to show: control characters (line breaks, ANSI escapes:
    it could forge log lines or colour a terminal) as one space, at most REMOTE_MESSAGE_MAX."""
    one_line = _CONTROL.sub(" ", text).strip()
    if len(one_line) > REMOTE_MESSAGE_MAX:
        return one_line[: REMOTE_MESSAGE_MAX - 1] + "\u2026"
    return one_line


def remote_error_from(error: Any) -> RpcRemoteError:
    """Turn a JSON-RPC error member into an exception, tolerating a malformed one."""
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message")
        if isinstance(code, int) and not isinstance(code, bool) and isinstance(message, str):
            return RpcRemoteError(code, shown_text(message), error.get("data"))
    return RpcRemoteError(_MALFORMED_ERROR_CODE, f"malformed error object: {error!r:.200}", error)


def _as_our_id(raw: int | str) -> int | None:
    """Our ids are ints; some bridges echo them back as strings."""
    if isinstance(raw, int):
        return raw
    if len(raw) <= 19 and raw.isascii() and raw.isdigit():  # int() refuses > 4300 digits
        return int(raw)
    return None


class RpcSession:
    """One JSON-RPC conversation, client side.

    Once :meth:`fail_all` ran (the link dropped) the session is closed: sending raises the
    error it was closed with, so a late caller gets the same transport error as everyone else.
    """

    def __init__(
        self,
        *,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self._framer = LineFramer(max_line_bytes)
        self._ids = itertools.count(1)
        self._pending: dict[int, str] = {}
        self._max_pending = max_pending
        self._closed: RpcError | None = None

    # -- outgoing ---------------------------------------------------------------------------

    @property
    def pending(self) -> dict[int, str]:
        """Ids awaiting an answer, with the method each was for (a copy)."""
        return dict(self._pending)

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def send_request(self, method: str, params: Any = None) -> tuple[int, bytes]:
        self._check_open()
        if len(self._pending) >= self._max_pending:
            raise LocalProtocolError(f"more than {self._max_pending} calls in flight")
        request_id = next(self._ids)
        data = encode_line(
            _Request(
                "2.0", method, id=request_id, params=msgspec.UNSET if params is None else params
            )
        )
        self._pending[request_id] = method
        return request_id, data

    def send_notification(self, method: str, params: Any = None) -> bytes:
        self._check_open()
        return encode_line(
            _Request("2.0", method, params=msgspec.UNSET if params is None else params)
        )

    def send_result(self, request_id: RequestId, result: Any) -> bytes:
        """Answer an :class:`IncomingRequest`."""
        self._check_open()
        return encode_line(_Reply("2.0", request_id, result=result))

    def send_error(self, request_id: RequestId, code: int, message: str) -> bytes:
        """Refuse an :class:`IncomingRequest` (e.g. -32601 for a method we do not serve)."""
        self._check_open()
        return encode_line(_Reply("2.0", request_id, error={"code": code, "message": message}))

    def forget(self, request_id: int) -> bool:
        """Stop waiting for ``request_id`` (its caller timed out or was cancelled).

        A reply that still arrives later becomes an :class:`UnknownResponse`.
        """
        return self._pending.pop(request_id, None) is not None

    def fail_all(self, error: RpcError | None = None) -> list[CallFailed]:
        """The link is gone: close the session and list every call that will never be answered."""
        if self._closed is None:
            self._closed = error or RpcTransportError("connection closed")
        failed = [CallFailed(i, m, self._closed) for i, m in self._pending.items()]
        self._pending.clear()
        return failed

    def _check_open(self) -> None:
        if self._closed is not None:
            # A fresh exception per caller: one instance raised in many tasks would collect
            # all their tracebacks.
            closed = self._closed
            raise RpcTransportError(str(closed)) from (closed.__cause__ or closed)

    # -- incoming ---------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[RpcEvent]:
        """Bytes in, events out. Raises RemoteProtocolError for an oversize line."""
        return [self._classify(frame) for frame in self._framer.feed(data)]

    def _classify(self, frame: RawMessage | SkippedLine) -> RpcEvent:
        if isinstance(frame, SkippedLine):
            return frame
        msg = frame
        if msg.method is not msgspec.UNSET:
            params = None if msg.params is msgspec.UNSET else msg.params
            if msg.id is msgspec.UNSET or msg.id is None:
                return Notification(msg.method, params)
            return IncomingRequest(msg.id, msg.method, params)
        has_result = msg.result is not msgspec.UNSET
        has_error = msg.error is not msgspec.UNSET
        if has_result == has_error:
            what = "both result and error" if has_result else "no method, result or error"
            return InvalidMessage(f"message has {what}")
        error = remote_error_from(msg.error) if has_error else None
        if msg.id is msgspec.UNSET or msg.id is None:
            if error is None:
                return InvalidMessage("result without an id")
            return StrayError(error)
        our_id = _as_our_id(msg.id)
        method = self._pending.pop(our_id, None) if our_id is not None else None
        if our_id is None or method is None:
            return UnknownResponse(msg.id, None if has_error else msg.result, error)
        if error is not None:
            return ErrorResponse(our_id, method, error)
        return Response(our_id, method, msg.result)
