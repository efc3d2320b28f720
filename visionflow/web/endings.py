"""How an HTTP request ends when it cannot end normally: the client left, or the shutdown cut it.

- **The client left mid-response.** Under trio, hypercorn closes the socket when the client's
  EOF arrives, without waiting for a response still being written (``TCPServer._close`` sends
  EOF outside the send lock), so the app's next ``send`` raises ``trio.BusyResourceError``. That
  happens whenever a client reads a refusal's head and hangs up (an early 413, 503 or 408 while
  the body is still unread), and it surfaced as an "Error in ASGI application" traceback.
  Nobody is left to answer: a debug line, and the request ends.
- **The shutdown cut it off.** At the end of ``server.shutdown_grace`` hypercorn cancels the
  requests still running (an import of a large graph, say). Cancelled before its response
  began, a request used to end as a 500 with an empty body, and the client could not tell a
  crash from a stop. It is answered 503 ``shutting_down`` (within a short shielded bound) and
  the cancellation is re-raised, as every cancellation must be.
"""

from __future__ import annotations

import contextlib

import anyio
import trio
from loguru import logger
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from visionflow.errors import VisionflowError
from visionflow.web.errors import error_response

log = logger.bind(subsystem="http")

#: How long the shielded 503 may take to write (the connection is being torn down).
ANSWER_TIMEOUT_S = 1.0


class _PeerGoneError(VisionflowError):
    """The connection went away while the response was being written."""


class RequestEndings:
    """ASGI middleware: see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def guarded(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            try:
                await send(message)
            except trio.BusyResourceError as exc:
                raise _PeerGoneError from exc

        try:
            await self.app(scope, receive, guarded)
        except _PeerGoneError:
            where = f"{scope['method']} {scope['path']}"
            log.debug("client {} left while {} was answered", scope.get("client"), where)
        except anyio.get_cancelled_exc_class():
            if not started:
                with (
                    anyio.CancelScope(shield=True),
                    anyio.move_on_after(ANSWER_TIMEOUT_S),
                    contextlib.suppress(trio.BusyResourceError),  # gone too: the cancel stands
                ):
                    response = error_response(
                        503,
                        "shutting_down",
                        "the server is stopping and this request was cut off before its "
                        "answer: it may or may not have taken effect (an import may still be "
                        "applied and saved); send it again once the server is back",
                        headers={"Retry-After": "5", "Connection": "close"},
                    )
                    await response(scope, receive, send)
            raise
