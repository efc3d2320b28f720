"""What requests are checked for before they reach a route.

Every request: its Host, and for mutating ones the Origin and Content-Type (the rules are in
:mod:`visionflow.web.security`; :class:`RequestGuard` applies them). Each mutating route then
checks the token and reads a body within the size limit.
"""

from __future__ import annotations

import contextlib

import anyio
import msgspec
from loguru import logger
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from visionflow import jsonsafe
from visionflow.live_settings import LiveSettings
from visionflow.web import uploads
from visionflow.web.auth import presented_token, token_ok
from visionflow.web.context import ServiceContext
from visionflow.web.errors import error_response, methods_of
from visionflow.web.security import http_refusal
from visionflow.web.uploads import UploadSlots

log = logger.bind(subsystem="http")


class RequestGuard:
    """ASGI middleware: refuse a foreign Host, a cross-site Origin or a non-JSON body first.

    HTTP only: ``/wss`` applies the same rules in its upgrade check, because a WebSocket refusal
    has to be a close frame (see :mod:`visionflow.web.ws`).
    """

    def __init__(self, app: ASGIApp, live: LiveSettings) -> None:
        self.app = app
        self.live = live

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            method: str = scope["method"]
            refusal = http_refusal(
                self.live.current.server,
                method,
                headers.get("host"),
                headers.get("origin"),
                headers.get("content-type"),
                scope["path"],
            )
            if refusal is not None and refusal.status == 415 and not _route_takes(scope):
                # no route takes this method here: the router's 404 or 405 (with its Allow
                # header) says what is wrong; a 415 would send the client after a body type
                refusal = None
            if refusal is not None:
                log.info("refused {} {}: {}", method, scope["path"], refusal.message)
                response = error_response(
                    refusal.status, refusal.code, refusal.message, refusal.path
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _route_takes(scope: Scope) -> bool:
    """Whether a route of the app takes this request's method at its path."""
    app = scope.get("app")
    routes = getattr(getattr(app, "router", None), "routes", None)
    if routes is None:
        return True  # not under a Starlette app: keep the rule
    method = scope["method"]
    # a Mount matches whatever the method: the methods its files take are asked separately
    return any(
        route.matches(scope)[0] is Match.FULL and method in methods_of(route) for route in routes
    )


def authorized(ctx: ServiceContext, request: Request) -> bool:
    """The request carries the token (always true when no token is set)."""
    return token_ok(ctx.live.current.server.token, presented_token(request.headers))


def require_token(ctx: ServiceContext, request: Request) -> Response | None:
    """None when the request may mutate state; else the 401 response to send."""
    if authorized(ctx, request):
        return None
    return error_response(
        401,
        "unauthorized",
        "this route needs 'Authorization: Bearer <token>'",
        headers={"WWW-Authenticate": "Bearer"},
    )


# What a client waiting for the start-up restore is told to wait before trying again.
STARTING_RETRY_AFTER_S = 5


def require_started(ctx: ServiceContext) -> Response | None:
    """None once start-up work (the restore of the saved graph) is done; else 503: the graph
    is not all there yet, and an import now would be overwritten by the restore."""
    starting = ctx.registry.starting
    if starting is None:
        return None
    return error_response(
        503,
        "starting",
        f"not ready yet: {starting}; try again shortly",
        headers={"Retry-After": str(STARTING_RETRY_AFTER_S)},
    )


# What a client refused by a full import queue is told to wait (an import takes seconds or more).
IMPORTS_RETRY_AFTER_S = 5


def imports_busy(max_waiting: int, *, close: bool = False) -> Response:
    """503 for an import refused because one runs and ``max_waiting`` more wait their turn;
    ``close`` when its body is left unread (the connection cannot carry another request)."""
    headers = {"Retry-After": str(IMPORTS_RETRY_AFTER_S)}
    if close:
        headers["Connection"] = "close"
    return error_response(
        503,
        "busy",
        f"an import is running and {max_waiting} more are waiting their turn "
        "(server.max_queued_imports); try again",
        headers=headers,
    )


async def read_body(request: Request, limit: int) -> bytes | Response:
    """The raw body, or the refusal: 413 once it passes ``limit`` bytes (declared or read),
    408 when it arrives too slowly, 503 when too many bodies are being read (web/uploads.py)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        return error_response(413, "too_large", f"request body over {limit} bytes")
    slots: UploadSlots = request.app.state.uploads  # set by create_app
    client = request.client.host if request.client is not None else ""
    with slots.slot(client) as upload:
        if upload is None:
            return _busy("too many request bodies are being received")
        chunks = bytearray()
        start = anyio.current_time()
        with anyio.CancelScope(deadline=start + uploads.deadline_for(0)) as scope:
            try:
                # aclosing: a refusal leaves the loop early, and the stream must close now
                async with contextlib.aclosing(request.stream()) as stream:
                    async for chunk in stream:
                        chunks += chunk
                        if len(chunks) > limit:
                            return error_response(
                                413, "too_large", f"request body over {limit} bytes"
                            )
                        if not upload.charge(len(chunks), limit):
                            return _busy("too many bytes of request bodies are held", close=True)
                        scope.deadline = start + uploads.deadline_for(len(chunks))
            except ClientDisconnect:  # gone mid-upload: nobody to answer, nothing to log
                log.debug("client {} left during a {}-byte upload", client, len(chunks))
                return Response(status_code=400)
        if scope.cancelled_caught:
            return error_response(
                408,
                "body_too_slow",
                f"the request body arrived too slowly ({len(chunks)} bytes in "
                f"{anyio.current_time() - start:.0f} s; at least {uploads.MIN_RATE} bytes/s "
                f"after the first {uploads.GRACE_S:g} s)",
                headers={"Connection": "close"},
            )
    return bytes(chunks)


def _busy(why: str, *, close: bool = False) -> Response:
    headers = {"Retry-After": str(uploads.RETRY_AFTER_S)}
    if close:  # the rest of the body is not read: the connection cannot carry another request
        headers["Connection"] = "close"
    return error_response(503, "busy", f"{why}; try again", headers=headers)


async def read_json_body(request: Request, limit: int) -> object | Response:
    """The parsed JSON body, or the error response (413 too large, 400 not JSON)."""
    data = await read_body(request, limit)
    if isinstance(data, Response):
        return data
    try:
        body: object = jsonsafe.decode(data)
    except msgspec.DecodeError as exc:
        return error_response(400, "bad_json", f"body is not valid JSON: {exc}")
    return body
