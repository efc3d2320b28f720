"""The swarm simulator over Streamable HTTP (``visionflow mcp-sim --http``), and a small ASGI
server runner the tests use for scripted HTTP peers too.

``POST /mcp`` takes one JSON-RPC message: ``initialize`` opens a session (``Mcp-Session-Id``),
every later POST must carry it (404 once it is gone, as the spec says); a request is answered
with a JSON body, or with an event stream (``sse=True``, or when the dialect says more than the
reply, e.g. a notification riding along); a notification or a reply gets 202. ``GET /mcp``
streams what the server says unasked (the 2.x greeting, notifications from notifications) and
``DELETE /mcp`` ends the session. One :class:`Simulator` (its swarm, its faults' delay) backs all.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast

import anyio
import anyio.abc
import msgspec
import sniffio
from hypercorn.config import Config, Sockets
from hypercorn.utils import wrap_app
from loguru import logger

from visionflow import jsonsafe
from visionflow.logs import quiet_asyncio_reports
from visionflow.mcp.framing import RawMessage
from visionflow.mcpsim.server import MAX_REQUEST_LINE, Simulator

__all__ = ["HttpSimulator", "serve_asgi", "serve_simulator_http"]

log = logger.bind(subsystem="mcp")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Sessions kept at once; the oldest is dropped past this (its client gets 404 and starts anew).
MAX_SESSIONS = 256
#: Messages queued for a session's GET stream; past this the oldest are dropped.
QUEUE_SIZE = 64
#: How long a stopping server may take to close its connections before it is cancelled.
STOP_TIMEOUT = 2.0
_decoder = msgspec.json.Decoder(RawMessage)
_encoder = msgspec.json.Encoder()


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None when it is over ``limit`` bytes."""
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body"):
            return bytes(body)


async def respond(
    send: Send, status: int, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    head = list(headers or [])
    if body:
        head.append((b"content-type", b"application/json"))
    head.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def sse_event(message: object) -> bytes:
    return b"event: message\ndata: " + _encoder.encode(message) + b"\n\n"


class _Session:
    """What the server has to say unasked, for the session's GET stream."""

    def __init__(self) -> None:
        self.pending: deque[dict[str, Any]] = deque(maxlen=QUEUE_SIZE)  # the oldest dropped
        self.more = anyio.Event()

    def queue(self, message: dict[str, Any]) -> None:
        self.pending.append(message)
        self.more.set()

    async def next(self) -> dict[str, Any]:
        while not self.pending:
            self.more = anyio.Event()
            await self.more.wait()
        return self.pending.popleft()


class HttpSimulator:
    """The ASGI app. ``sse``: answer every request with an event stream, not JSON."""

    def __init__(self, sim: Simulator, *, path: str = "/mcp", sse: bool = False) -> None:
        self.sim = sim
        self.path = path
        self.sse = sse
        self.sessions: dict[str, _Session] = {}
        self.posts = 0
        self.deletes = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        if scope["type"] != "http":
            return
        if scope["path"] != self.path:
            await respond(send, 404)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        if method == "POST":
            await self._post(headers, receive, send)
        elif method == "GET":
            await self._get(headers, send)
        elif method == "DELETE":
            self.deletes += 1
            gone = self.sessions.pop(headers.get("mcp-session-id", ""), None)
            await respond(send, 200 if gone is not None else 404)
        else:
            await respond(send, 405, headers=[(b"allow", b"GET, POST, DELETE")])

    def _session(self, headers: dict[str, str]) -> _Session | None:
        return self.sessions.get(headers.get("mcp-session-id", ""))

    async def _post(self, headers: dict[str, str], receive: Receive, send: Send) -> None:
        self.posts += 1
        body = await read_body(receive, MAX_REQUEST_LINE)
        if body is None:
            await respond(send, 413)
            return
        try:
            msg = jsonsafe.decode(body, _decoder)
        except msgspec.DecodeError:
            await respond(send, 400, b'{"error": "not a JSON-RPC message"}')
            return
        extra: list[tuple[bytes, bytes]] = []
        if msg.method == "initialize":
            if len(self.sessions) >= MAX_SESSIONS:
                self.sessions.pop(next(iter(self.sessions)))
            sid = secrets.token_hex(16)
            session = self.sessions[sid] = _Session()
            for message in self.sim.dialect.greeting():
                session.queue(message)
            extra.append((b"mcp-session-id", sid.encode()))
        else:
            found = self._session(headers)
            if found is None:
                await respond(send, 404 if "mcp-session-id" in headers else 400)
                return
            session = found
        replies = self.sim.dialect.handle(msg)
        if replies and self.sim.faults.reply_delay > 0:
            await anyio.sleep(self.sim.faults.reply_delay)
        is_request = msg.method is not msgspec.UNSET and msg.id not in (msgspec.UNSET, None)
        if not is_request:
            for message in replies:
                session.queue(message)
            await respond(send, 202, headers=extra)
            return
        if len(replies) == 1 and not self.sse:
            await respond(send, 200, _encoder.encode(replies[0]), extra)
            return
        head = [*extra, (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        for message in replies:
            await send(
                {"type": "http.response.body", "body": sse_event(message), "more_body": True}
            )
        await send({"type": "http.response.body", "body": b""})

    async def _get(self, headers: dict[str, str], send: Send) -> None:
        session = self._session(headers)
        if session is None:
            await respond(send, 404 if "mcp-session-id" in headers else 400)
            return
        head = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        # A keep-alive comment first: the client sees the stream is open.
        await send({"type": "http.response.body", "body": b": open\n\n", "more_body": True})
        while True:
            message = await session.next()
            await send(
                {"type": "http.response.body", "body": sse_event(message), "more_body": True}
            )


class _Lifespan:
    """Answers hypercorn's lifespan events, so an app of ours need not (nor warn about it)."""

    def __init__(self, app: Asgi) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            kind = message["type"].removeprefix("lifespan.")
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return


def bind_loopback(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Inherited by accepted sockets: without it hypercorn's asyncio server answered each request
    # about 45 ms late on loopback (its header and body writes wait on the delayed ACK).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve_asgi(
    app: Asgi,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` with hypercorn (HTTP/1.1) on ``host:port`` until cancelled; reports the
    bound port through ``task_status``.

    A cancellation is turned into hypercorn's own shutdown (open streams cut after 0.1 s):
    cancelled in the middle of its work, its asyncio server logs errors of its tasks.
    """
    sock = bind_loopback(host, port)
    config = Config()
    config.graceful_timeout = 0.1
    config.accesslog = None
    config.loglevel = "WARNING"
    sockets = Sockets(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[])
    wrapped = wrap_app(cast(Any, _Lifespan(app)), config.wsgi_max_body_size, "asgi")
    stop, done = anyio.Event(), anyio.Event()
    shield = anyio.CancelScope(shield=True)

    async def run() -> None:
        with shield:
            try:
                if sniffio.current_async_library() == "trio":
                    from hypercorn.trio.run import worker_serve as trio_serve

                    await trio_serve(wrapped, config, sockets=sockets, shutdown_trigger=stop.wait)
                else:
                    from hypercorn.asyncio.run import worker_serve as asyncio_serve

                    # the streams still open at the end of the drain are cancelled: no traceback
                    quiet_asyncio_reports(asyncio.get_running_loop())
                    await asyncio_serve(
                        wrapped, config, sockets=sockets, shutdown_trigger=stop.wait
                    )
            finally:
                done.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            task_status.started(int(sock.getsockname()[1]))
            try:
                await anyio.sleep_forever()
            finally:
                stop.set()
                with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_TIMEOUT):
                    await done.wait()
                shield.cancel()  # still running after STOP_TIMEOUT: cut it off
    finally:
        sock.close()


async def serve_simulator_http(
    host: str = "127.0.0.1",
    port: int = 3001,
    *,
    sim: Simulator | None = None,
    sse: bool = False,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the simulator at ``http://host:port/mcp`` until cancelled."""
    sim = sim or Simulator()
    async with anyio.create_task_group() as tg:
        tg.start_soon(sim.run_ticker)
        bound = await tg.start(serve_asgi, HttpSimulator(sim, sse=sse), host, port)
        log.info("mcp simulator ({}) listening on http://{}:{}/mcp", sim.flavor, host, bound)
        task_status.started(bound)
