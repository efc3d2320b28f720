"""A response whose client has gone ends quietly, not with a traceback.

Under trio, hypercorn closes the socket when the client's EOF arrives, without waiting for a
response still being written (``TCPServer._close`` sends EOF outside the send lock), so the
app's next ``send`` raises ``trio.BusyResourceError``. That happens whenever a client reads a
refusal's head and hangs up (an early 413, 503 or 408 while the body is still unread), and it
surfaced as an "Error in ASGI application" traceback. Nobody is left to answer: log it at
debug and stop.
"""

from __future__ import annotations

import trio
from loguru import logger
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from visionflow.errors import VisionflowError

log = logger.bind(subsystem="http")


class _PeerGoneError(VisionflowError):
    """The connection went away while the response was being written."""


class PeerGoneGuard:
    """ASGI middleware: a send that fails because the client left ends the request quietly."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def guarded(message: Message) -> None:
            try:
                await send(message)
            except trio.BusyResourceError as exc:
                raise _PeerGoneError from exc

        try:
            await self.app(scope, receive, guarded)
        except _PeerGoneError:
            where = f"{scope['method']} {scope['path']}"
            log.debug("client {} left while {} was answered", scope.get("client"), where)
