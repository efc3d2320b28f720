"""The HTTP listener: hypercorn serving the Starlette app on a socket we bind ourselves.

Binding here (not in hypercorn) lets a busy port fail start-up with one clear line, lets port 0
report the port it got, and lets us set socket options hypercorn does not know.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import sniffio
from hypercorn.config import Sockets
from hypercorn.utils import wrap_app
from loguru import logger

from visionflow.errors import StartupError
from visionflow.logs import quiet_asyncio_reports
from visionflow.settings import Settings
from visionflow.web import h2idle, hyperws
from visionflow.web.acceptlog import (
    AcceptErrors,
    TrioAcceptFilter,
    is_asyncio_accept_error,
    is_asyncio_stale_accept_retry,
)
from visionflow.web.tls import check_tls_files

log = logger.bind(subsystem="http")

# A viewer that stops reading must not wedge shutdown: unacknowledged data fails the socket
# after this long (accepted sockets inherit it from the listener on Linux).
TCP_USER_TIMEOUT_MS = 20_000
# Unsent bytes the kernel queues per connection before a write waits (inherited like the above).
# Bytes in flight are not capped (throughput keeps its autotuned window); without it a viewer
# that stopped reading had ~1000 small frames buffered before a write stalled, so its lag
# (websocket.max_lag, judged by the age of the frame being written) never showed.
TCP_NOTSENT_LOWAT_BYTES = 16 * 1024


def bind_socket(host: str, port: int, backlog: int = 512) -> socket.socket:
    """Bind and listen, or raise StartupError with one line saying why."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {host}:{port}: unknown host ({exc})") from exc
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, TCP_USER_TIMEOUT_MS)
        if hasattr(socket, "TCP_NOTSENT_LOWAT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, TCP_NOTSENT_LOWAT_BYTES)
        sock.bind(addr)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise StartupError(f"cannot listen on {host}:{port}: {reason}") from exc
    return sock


def _quiet_cancelled_callbacks(loop: asyncio.AbstractEventLoop) -> None:
    """Quiet asyncio's reports of drained or failed connections (logs.quiet_asyncio_reports),
    and count failed accepts instead of logging each (ACCEPT_ERRORS, once per burst)."""

    def accept_error(context: dict[str, Any]) -> bool:
        if is_asyncio_stale_accept_retry(context):
            log.debug("an accept retry found its listener closed (the server stopped)")
            return True
        if not is_asyncio_accept_error(context):
            return False
        exc = context.get("exception")
        ACCEPT_ERRORS.note(str(exc) if exc is not None else "out of system resources")
        return True

    quiet_asyncio_reports(loop, also=accept_error)


#: Failed accepts of this process (both backends), logged once per burst (web/acceptlog.py).
ACCEPT_ERRORS = AcceptErrors()


def _quiet_trio_accept_errors() -> None:
    """trio logs every failed accept (every 100 ms while out of descriptors) with a traceback."""
    std = logging.getLogger("trio.serve_listeners")
    if not any(isinstance(f, TrioAcceptFilter) for f in std.filters):
        std.addFilter(TrioAcceptFilter(ACCEPT_ERRORS))


#: The part of ``server.shutdown_grace`` hypercorn gets to drain; the rest is for ending it.
GRACE_SHARE = 0.75


class _PlainLifespan:
    """Answers the ASGI lifespan itself (the app has no start-up or shutdown hooks).

    Starlette answers a cancelled lifespan with ``lifespan.shutdown.failed``, which hypercorn
    raises as LifespanFailureError in a task nobody awaits: when a second SIGINT (or, on Python
    3.13, a SIGTERM with a stalled request) cut the drain short, asyncio.run printed its
    traceback at exit. Cancelled here, the lifespan just ends. (An app that gains lifespan
    hooks must run them here: the app's own lifespan is never called.)
    """

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self._app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


class HttpServer:
    """Critical child: serves until ``stopping`` is set, then drains within the grace."""

    def __init__(self, app: Any, settings: Settings, stopping: anyio.Event) -> None:
        self._app = app
        self._settings = settings
        self._stopping = stopping
        self.port: int | None = None
        self.url: str | None = None

    def _config(self) -> hyperws.ServerConfig:
        config = hyperws.ServerConfig()
        # hypercorn ends its own drain first (cancelling what is still in flight its own way);
        # if the service's outer deadline (the whole grace) struck first, it would cancel
        # hypercorn mid-drain, which spills asyncio tracebacks.
        config.graceful_timeout = self._settings.server.shutdown_grace * GRACE_SHARE
        config.errorlog = logging.getLogger("hypercorn.error")
        # log.access_log lines come from web/access.py (route, status, duration as fields)
        config.accesslog = None
        config.websocket_max_message_size = self._settings.websocket.max_inbound_bytes
        config.h2_max_inbound_frame_size = 1 << 16
        server = self._settings.server
        # Slowloris: hypercorn's idle timer runs from the connection's start (and from the end
        # of each response) until a request's headers are complete; a client dripping its
        # headers is cut off when it runs out. Bodies have their own pace rule (web/uploads.py).
        config.keep_alive_timeout = server.header_timeout
        config.ssl_handshake_timeout = server.header_timeout
        # The request line and headers may not pass this (431, and the connection closes).
        config.h11_max_incomplete_size = server.max_header_bytes
        config.h2_max_header_list_size = server.max_header_bytes
        if server.certfile:
            config.certfile = server.certfile
            config.keyfile = server.keyfile
        # per server, read by hyperws.OversizeAwareStream (hypercorn has no setting for it)
        config.websocket_compression = self._settings.websocket.compression
        config.websocket_send_timeout = self._settings.websocket.send_timeout
        return config

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        server = self._settings.server
        tls = bool(server.certfile)
        if tls:  # a bad file fails start-up with one line naming it, before the port opens
            check_tls_files(server.certfile, server.keyfile)
        sock = bind_socket(server.host, server.port)
        self.port = int(sock.getsockname()[1])
        host = server.host if ":" not in server.host else f"[{server.host}]"
        self.url = f"{'https' if tls else 'http'}://{host}:{self.port}"
        config = self._config()
        # hypercorn's WebSocket stream class, swapped for ours: process-wide, so done here, where
        # hypercorn is started, rather than by an app; idempotent (see web/hyperws.py)
        hyperws.install()
        h2idle.install()  # the header timeout for cleartext HTTP/2 too (see web/h2idle.py)
        app = wrap_app(_PlainLifespan(self._app), config.wsgi_max_body_size, "asgi")
        # hypercorn wraps a secure socket in TLS with the files of config.certfile/keyfile
        secure, insecure = ([sock], []) if tls else ([], [sock])
        sockets = Sockets(secure_sockets=secure, insecure_sockets=insecure, quic_sockets=[])
        log.info("listening on {}", self.url)
        # The socket is already listening, so connections queue from this point on.
        task_status.started(self.port)
        try:
            if sniffio.current_async_library() == "trio":
                _quiet_trio_accept_errors()
                from hypercorn.trio.run import worker_serve as trio_serve

                await trio_serve(app, config, sockets=sockets, shutdown_trigger=self._stopping.wait)
            else:
                from hypercorn.asyncio.run import worker_serve as asyncio_serve

                _quiet_cancelled_callbacks(asyncio.get_running_loop())
                try:
                    await asyncio_serve(
                        app, config, sockets=sockets, shutdown_trigger=self._stopping.wait
                    )
                except asyncio.InvalidStateError:
                    # hypercorn reads a cancelled gather's exception when it is cancelled in
                    # the middle of its drain: what really happened is our cancellation.
                    await anyio.lowlevel.checkpoint()
                    raise
        finally:
            sock.close()
        log.info("stopped")
