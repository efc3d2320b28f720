"""hypercorn's WebSocket stream with two adjustments, and the server config that drives them.

hypercorn has no hook for either, so :func:`install` has its HTTP/1.1 and HTTP/2 protocols
create :class:`OversizeAwareStream` instead of its own ``WSStream``. That is a swap of a class in
hypercorn's modules, so process-wide; ``web/server.py`` calls it once before serving
(idempotent). What varies per server is read from that server's :class:`ServerConfig`, never from
module state, so two servers in one process keep their own settings; a server started with
hypercorn's plain ``Config`` gets hypercorn's own behaviour apart from the oversize handling.

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
"""

from __future__ import annotations

import dataclasses

from hypercorn.config import Config
from hypercorn.protocol import h2, h11, ws_stream
from hypercorn.protocol.events import Event, Request, StreamClosed
from loguru import logger
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, Message, Ping

from visionflow.protocol.wire import CLOSE_TOO_BIG

__all__ = ["OversizeAwareStream", "ServerConfig", "install"]

log = logger.bind(subsystem="ws")


class ServerConfig(Config):
    """hypercorn's config plus what :class:`OversizeAwareStream` reads per server."""

    websocket_compression: bool = False


_EXTENSIONS = b"sec-websocket-extensions"


class OversizeAwareStream(ws_stream.WSStream):
    """hypercorn's ``WSStream`` with the adjustments described in the module docstring."""

    _refused_oversize = False

    async def handle(self, event: Event) -> None:
        config = self.config
        if (
            isinstance(event, Request)
            and isinstance(config, ServerConfig)
            and not config.websocket_compression
        ):
            headers = [(k, v) for k, v in event.headers if k.lower() != _EXTENSIONS]
            event = dataclasses.replace(event, headers=headers)
        await super().handle(event)

    async def _handle_events(self) -> None:
        # hypercorn's loop, except for the FrameTooLargeError branch and discarding after it.
        for event in self.connection.events():
            if isinstance(event, Message):
                if self._refused_oversize:
                    continue  # the rest of a refused message (or anything after it)
                try:
                    self.buffer.extend(event)
                except ws_stream.FrameTooLargeError:
                    await self._refuse_oversize()
                    continue
                if event.message_finished:
                    assert self.app_put is not None  # messages come after the handshake
                    await self.app_put(self.buffer.to_message())
                    self.buffer.clear()
            elif isinstance(event, Ping):
                await self._send_wsproto_event(event.response())
            elif isinstance(event, CloseConnection):
                if self.connection.state == ConnectionState.REMOTE_CLOSING:
                    await self._send_wsproto_event(event.response())
                await self.send(StreamClosed(stream_id=self.stream_id))

    async def _refuse_oversize(self) -> None:
        size = self.buffer.length
        self._refused_oversize = True
        self.buffer.clear()
        client = self.client
        peer = f"{client[0]}:{client[1]}" if client else "?"
        log.warning("closing a viewer from {} with 1009: a message of {}+ bytes", peer, size)
        await self._send_wsproto_event(CloseConnection(code=CLOSE_TOO_BIG))  # ignored if closing
        if self.app_put is not None:
            await self.app_put({"type": "websocket.disconnect", "code": CLOSE_TOO_BIG})


def install() -> None:
    """Have hypercorn's HTTP/1.1 and HTTP/2 protocols use :class:`OversizeAwareStream`.

    Idempotent: the same class is assigned every time, and nothing else changes.
    """
    h11.WSStream = OversizeAwareStream  # type: ignore[attr-defined]
    h2.WSStream = OversizeAwareStream  # type: ignore[attr-defined]
