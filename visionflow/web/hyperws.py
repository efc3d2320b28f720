"""hypercorn's WebSocket stream with a few adjustments, and the server config that drives them.

hypercorn has no hook for any of them, so :func:`install` has its HTTP/1.1 and HTTP/2 protocols
create :class:`OversizeAwareStream` instead of its own ``WSStream``. That is a swap of a class in
hypercorn's modules, so process-wide; ``web/server.py`` calls it once before serving
(idempotent). What varies per server is read from that server's :class:`ServerConfig`, never from
module state, so two servers in one process keep their own settings; a server started with
hypercorn's plain ``Config`` gets hypercorn's own behaviour apart from the oversize handling
(``websocket_max_message_size`` bounds it).

Compression: hypercorn accepts permessage-deflate whenever the client offers it (every browser
does), reading the offer from the raw request before the app sees the scope. Position frames
barely compress (docs/protocol.md section 4: ratio 1.12 for 66 ms per 100k-node frame), so
``websocket.compression`` is off by default, and while it is off the stream drops the client's
``Sec-WebSocket-Extensions`` offer before hypercorn's handshake reads it (as if the client had
offered no extension).

Oversize messages: failing a connection at once.

hypercorn enforces ``websocket_max_message_size`` (set to ``websocket.max_inbound_bytes``) itself,
before the app sees the message: it sends a close frame with 1009 and then waits for the peer's
answer, without telling the app. So the app kept sending frames into a closing connection (hypercorn
dropped them), and a peer still busy sending its message kept the connection open: a 300 KB
message against 64 KiB held it ~10 s in CLOSING. It also went on buffering the rest of the message
after refusing it.

:class:`OversizeAwareStream` keeps hypercorn's close frame (1009 on the wire), discards the rest of
the message instead of buffering it, and tells the app at once with ``websocket.disconnect``
(code 1009): the endpoint stops sending, releases the viewer and returns, which makes hypercorn
close the TCP connection.

Compressed messages: inflating within the limit.

wsproto inflates a compressed message's data as it arrives, without a bound, and hypercorn
measures the message only afterwards: a 0.94 MB message inflating to 0.97 GB added 400 MB RSS
and held the event loop 5.1 s before the 1009. :class:`BoundedDeflate` inflates at most one byte
past ``websocket_max_message_size`` per message; past it, wsproto reports the message as too big
and the stream refuses it as above. The stream builds the handshake with it when the app accepts.

Peers that stop reading: dropping the connection.

The endpoint bounds each send (``websocket.send_timeout``, ``max_lag``, the close flush) and
returns once it has given up; hypercorn then closes the TCP connection gracefully, which waits
for the unsent bytes to drain: a peer that never reads held its socket until TCP_USER_TIMEOUT
(20 s, ``web/server.py``), and on trio, where hypercorn shields its socket writes from
cancellation, held the endpoint's handler as long. So the connection is reset at once (linger 0,
then close: the kernel sends RST and frees the socket with its unsent data) when the app's
deadline cuts a send short; on trio, when a send outlives that deadline by ``_WATCH_GRACE_S``
(a watchdog per connection); and when hypercorn's close after the app returned takes longer
than ``websocket_send_timeout``. No send is bounded by more than that either.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import socket
import struct
import zlib
from collections.abc import Awaitable, Callable, Iterable

import anyio
import sniffio
from hypercorn.config import Config
from hypercorn.protocol import h2, h11, ws_stream
from hypercorn.protocol.events import Event, Request, StreamClosed
from hypercorn.typing import ASGISendEvent, WebsocketAcceptEvent
from loguru import logger
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import CloseConnection, Message, Ping
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol
from wsproto.handshake import server_extensions_handshake

from visionflow.protocol.wire import CLOSE_TOO_BIG

__all__ = [
    "BoundedDeflate",
    "OversizeAwareStream",
    "ServerConfig",
    "install",
    "reset_connection",
]

log = logger.bind(subsystem="ws")


class ServerConfig(Config):
    """hypercorn's config plus what :class:`OversizeAwareStream` reads per server."""

    websocket_compression: bool = False
    #: Bounds a send (and hypercorn's close after the app returned); beyond it the connection
    #: is reset. None: no bound of ours.
    websocket_send_timeout: float | None = None


_EXTENSIONS = b"sec-websocket-extensions"


class BoundedDeflate(PerMessageDeflate):
    """wsproto's permessage-deflate, inflating at most ``max_message`` bytes per message.

    One byte more than that ends the message with close code 1009 (wsproto reports it as a
    ``CloseConnection`` while the connection is still open).
    """

    def __init__(self, max_message: int) -> None:
        super().__init__()
        self.max_message = max_message
        self._inflated = 0  # of the message being received

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        assert self._decompressor is not None  # made by frame_inbound_header
        room = self.max_message - self._inflated
        try:
            # At most room + 1 bytes (0 would mean no bound, but room >= 0 here): stopping
            # short leaves the rest of the input unread, and the message is refused anyway.
            out = self._decompressor.decompress(data, room + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        return self._count(out)

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        data_frame = self._inbound_is_compressible  # False for a control frame
        # The end of a message inflates the 4-byte flush marker: at most a few hundred bytes.
        result = super().frame_inbound_complete(proto, fin)
        if isinstance(result, bytes):
            result = self._count(result)
        if fin and data_frame:
            self._inflated = 0
        return result

    def _count(self, out: bytes) -> bytes | CloseReason:
        self._inflated += len(out)
        return CloseReason.MESSAGE_TOO_BIG if self._inflated > self.max_message else out


class _BoundedHandshake(ws_stream.Handshake):
    """hypercorn's handshake, answering with a :class:`BoundedDeflate` connection."""

    def __init__(
        self, headers: list[tuple[bytes, bytes]], http_version: str, max_message: int
    ) -> None:
        super().__init__(headers, http_version)
        self.max_message = max_message

    def accept(
        self, subprotocol: str | None, additional_headers: Iterable[tuple[bytes, bytes]]
    ) -> tuple[int, list[tuple[bytes, bytes]], Connection]:
        status_code, headers, _ = super().accept(subprotocol, additional_headers)
        deflate = BoundedDeflate(self.max_message)
        if self.extensions is not None:
            # hypercorn's negotiation again, on our extension: the same offer gives the same
            # parameters, so its response headers describe this connection too.
            server_extensions_handshake(self.extensions, [deflate])
        return status_code, headers, Connection(ConnectionType.SERVER, [deflate])


#: How often a connection's send watchdog (trio) looks while no send is in flight.
_WATCH_PERIOD_S = 1.0
#: How long past the app's deadline the watchdog waits: the app's own checks (the hub judges a
#: viewer's lag on every tick) get to close it with a code and a reason first.
_WATCH_GRACE_S = 1.0


class OversizeAwareStream(ws_stream.WSStream):
    """hypercorn's ``WSStream`` with the adjustments described in the module docstring."""

    _refused_oversize = False
    _request: Request | None = None
    #: The connection was reset: nothing more is written.
    _dropped = False
    #: When the send in flight is due (read by the trio watchdog); None while none is.
    _send_due: float | None = None
    #: Set once the app has finished: the watchdog's cue to end.
    _app_done: anyio.Event | None = None

    async def handle(self, event: Event) -> None:
        config = self.config
        if isinstance(event, Request):
            if isinstance(config, ServerConfig) and not config.websocket_compression:
                headers = [(k, v) for k, v in event.headers if k.lower() != _EXTENSIONS]
                event = dataclasses.replace(event, headers=headers)
            self._request = event
        await super().handle(event)

    async def _accept(self, message: WebsocketAcceptEvent) -> None:
        # Here rather than in handle(): on trio the app may accept before handle() returns.
        request = self._request
        if request is not None:
            self.handshake = _BoundedHandshake(
                request.headers, request.http_version, self.config.websocket_max_message_size
            )
        await super()._accept(message)
        if sniffio.current_async_library() == "trio":
            self._app_done = anyio.Event()
            self.task_group.spawn(self._watch_sends)

    # ---------------------------------------------------------------- peers that do not read

    def _send_timeout(self) -> float:
        config = self.config
        timeout = config.websocket_send_timeout if isinstance(config, ServerConfig) else None
        return math.inf if timeout is None else timeout

    async def app_send(self, message: ASGISendEvent | None) -> None:
        if message is None and self._app_done is not None:
            self._app_done.set()
        if self._dropped:
            if message is None:  # the state is CLOSED: this only ends the stream
                await super().app_send(None)
            return  # the connection is gone: what the app still sends goes nowhere
        if message is None:
            await self._app_finished()
            return
        # The app's deadline for this send (ws.py bounds every send); -inf: cancelled already,
        # the connection is ending for another reason (the peer's close), so not a timeout.
        deadline = anyio.current_effective_deadline()
        timed = math.isfinite(deadline)
        if self._app_done is not None:  # the watchdog reads it
            grace = deadline + _WATCH_GRACE_S if timed else math.inf
            self._send_due = min(grace, anyio.current_time() + self._send_timeout())
        try:
            await super().app_send(message)
        except anyio.get_cancelled_exc_class():
            if timed and anyio.current_time() >= deadline:
                # The app stopped waiting for this send: its bytes stay queued, and the close
                # would wait for the peer to take them.
                self._drop("a send timed out")
            raise
        finally:
            self._send_due = None

    async def _app_finished(self) -> None:
        # hypercorn closes the connection here; on asyncio that waits for the unsent bytes.
        with anyio.move_on_after(self._send_timeout()) as scope:
            await super().app_send(None)
        if scope.cancel_called:  # (hypercorn swallows the cancellation of that wait)
            self._drop("the close did not complete in time")

    async def _watch_sends(self) -> None:
        """trio: hypercorn's socket writes are shielded, so the app cannot cut a send short;
        a send still in flight when it is due resets the connection, which ends the write."""
        done = self._app_done
        assert done is not None
        while not (done.is_set() or self._dropped):
            due, now = self._send_due, anyio.current_time()
            if due is not None and now >= due:
                self._drop("a send did not complete in time")
                return
            with anyio.move_on_after(_WATCH_PERIOD_S if due is None else due - now):
                await done.wait()

    def _drop(self, why: str) -> None:
        if self._dropped:
            return
        self._dropped = True
        self.state = ws_stream.ASGIWebsocketState.CLOSED  # hypercorn writes no close frame now
        if reset_connection(self.send):
            client = self.client
            peer = f"{client[0]}:{client[1]}" if client else "?"
            log.debug("reset the connection from {}: {}", peer, why)

    async def _handle_events(self) -> None:
        # hypercorn's loop, except for the FrameTooLargeError branch and discarding after it.
        for event in self.connection.events():
            if isinstance(event, Message):
                if self._refused_oversize:
                    continue  # the rest of a refused message (or anything after it)
                try:
                    self.buffer.extend(event)
                except ws_stream.FrameTooLargeError:
                    await self._refuse_oversize(f"a message of {self.buffer.length}+")
                    continue
                if event.message_finished:
                    assert self.app_put is not None  # messages come after the handshake
                    await self.app_put(self.buffer.to_message())
                    self.buffer.clear()
            elif isinstance(event, Ping):
                await self._send_wsproto_event(event.response())
            elif isinstance(event, CloseConnection):
                if (
                    event.code == CLOSE_TOO_BIG
                    and self.connection.state == ConnectionState.OPEN
                    and not self._refused_oversize
                ):
                    # Not the peer's close frame (that would be REMOTE_CLOSING) but BoundedDeflate:
                    # the message inflates past the limit. wsproto reads nothing more after it.
                    limit = self.config.websocket_max_message_size
                    await self._refuse_oversize(f"a compressed message inflating past {limit}")
                    continue
                if self.connection.state == ConnectionState.OPEN and not self._refused_oversize:
                    # wsproto could not read the peer's frames (1002 protocol error, 1007 bad
                    # UTF-8) and hands us the close to send; hypercorn dropped the TCP connection
                    # without it, so the peer only saw 1006.
                    await self._fail(event.code, event.reason or "")
                    continue
                if self.connection.state == ConnectionState.REMOTE_CLOSING:
                    await self._send_wsproto_event(event.response())
                await self.send(StreamClosed(stream_id=self.stream_id))

    async def _fail(self, code: int, reason: str) -> None:
        client = self.client
        peer = f"{client[0]}:{client[1]}" if client else "?"
        log.info("closing a viewer from {} with {}: {}", peer, code, reason)
        short = reason.encode()[:_MAX_CLOSE_REASON].decode(errors="ignore")
        await self._send_wsproto_event(CloseConnection(code=code, reason=short))
        if self.app_put is not None:
            await self.app_put({"type": "websocket.disconnect", "code": code})
        await self.send(StreamClosed(stream_id=self.stream_id))

    async def _refuse_oversize(self, what: str) -> None:
        self._refused_oversize = True
        self.buffer.clear()
        client = self.client
        peer = f"{client[0]}:{client[1]}" if client else "?"
        log.warning("closing a viewer from {} with 1009: {} bytes", peer, what)
        await self._send_wsproto_event(CloseConnection(code=CLOSE_TOO_BIG))  # ignored if closing
        if self.app_put is not None:
            await self.app_put({"type": "websocket.disconnect", "code": CLOSE_TOO_BIG})


_LINGER_ZERO = struct.pack("ii", 1, 0)
#: A close frame's reason holds at most 123 bytes of UTF-8.
_MAX_CLOSE_REASON = 123


def reset_connection(stream_send: Callable[..., Awaitable[None]]) -> bool:
    """Reset the TCP connection under an HTTP/1.1 stream at once; False if it cannot be reached.

    hypercorn has no way to abort a connection, so this follows its wiring (0.18): a stream's
    ``send`` is its H11Protocol's ``stream_send``, whose ``send`` is the TCPServer's
    ``protocol_send``; the TCPServer holds an asyncio ``StreamWriter`` (``writer``) or a trio
    ``SocketStream`` (``stream``). HTTP/2 is left alone: its other streams share the connection.
    Closing with linger 0 sends RST and discards the unsent bytes; the reads and any write in
    progress end with the connection lost, so hypercorn tears the rest down as usual.
    """
    protocol = getattr(stream_send, "__self__", None)
    if not isinstance(protocol, h11.H11Protocol):
        return False
    server = getattr(protocol.send, "__self__", None)
    writer = getattr(server, "writer", None)
    if isinstance(writer, asyncio.StreamWriter):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            _linger_zero(sock)
        writer.transport.abort()
        return True
    sock = getattr(getattr(server, "stream", None), "socket", None)  # trio.SocketStream
    if sock is None:
        return False
    _linger_zero(sock)
    sock.close()  # trio wakes a task blocked on it with ClosedResourceError
    return True


def _linger_zero(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # gone already: closing it is all that is left
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)


def install() -> None:
    """Have hypercorn's HTTP/1.1 and HTTP/2 protocols use :class:`OversizeAwareStream`.

    Idempotent: the same class is assigned every time, and nothing else changes.
    """
    h11.WSStream = OversizeAwareStream  # type: ignore[attr-defined]
    h2.WSStream = OversizeAwareStream  # type: ignore[attr-defined]
