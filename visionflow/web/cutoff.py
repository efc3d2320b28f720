"""A request cut off by the shutdown gets a 503 in the usual error shape, not an empty 500.

At the end of ``server.shutdown_grace`` hypercorn cancels the requests still running (an import
of a large graph, say). Cancelled before its response began, a request used to end as a 500
with an empty body; the client could not tell a crash from a stop. This middleware answers
such a request 503 ``shutting_down`` (within a short shielded bound) and re-raises the
cancellation, as every cancellation must be.
"""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from visionflow.web.errors import error_response

#: How long the shielded 503 may take to write (the connection is being torn down).
ANSWER_TIMEOUT_S = 1.0


class ShutdownAnswer:
    """ASGI middleware: see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except anyio.get_cancelled_exc_class():
            if not started:
                with anyio.CancelScope(shield=True), anyio.move_on_after(ANSWER_TIMEOUT_S):
                    response = error_response(
                        503,
                        "shutting_down",
                        "the server is stopping and this request did not finish; what it "
                        "changed may not have been saved: send it again once the server is back",
                        headers={"Retry-After": "5", "Connection": "close"},
                    )
                    await response(scope, receive, send)
            raise
