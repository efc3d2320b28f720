"""One NATS connection at a time, made again with stamina whenever it drops.

nats-py can reconnect by itself, but then it buffers what is published meanwhile and replays
it later (old frames), and it retries at a fixed pace. Here a connection lives until the broker
goes away; then the link reports ``cluster`` degraded in health, and connects anew with
stamina's exponential backoff and jitter (``cluster.backoff_initial`` to
``cluster.backoff_max``). ``on_connect`` sets up each new connection (subscriptions) and then
serves it until it is closed; whatever it published on the old one is gone with it.

nats-py runs on asyncio only: :func:`require_asyncio` says so in one line.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Final

import anyio
import anyio.abc
import nats
import nats.errors
import sniffio
import stamina
from loguru import logger
from nats.aio.client import Client

from visionflow import logs
from visionflow.errors import StartupError
from visionflow.settings import ClusterSettings
from visionflow.supervisor import SubsystemHealth

__all__ = ["NATS_FAILURES", "NatsLink", "require_asyncio"]

log = logger.bind(subsystem="cluster")

#: What a broker that is away or goes away raises (nats-py's own errors, sockets, timeouts).
NATS_FAILURES: Final = (OSError, nats.errors.Error, asyncio.TimeoutError, TimeoutError)
#: Keepalive: a broker that stops answering (no RST: a cable, a frozen VM) is noticed in ~10 s.
PING_INTERVAL_S: Final = 5
MAX_OUTSTANDING_PINGS: Final = 2


def require_asyncio(what: str) -> None:
    """Raise :class:`StartupError` unless running on asyncio (nats-py's only backend)."""
    backend = sniffio.current_async_library()
    if backend != "asyncio":
        raise StartupError(
            f"{what} needs the asyncio backend (nats-py is asyncio only), not {backend}: "
            "run without --backend trio, or leave cluster.nats_url empty"
        )


class NatsLink:
    """Keeps a connection to ``cluster.nats_url`` and hands each new one to ``on_connect``."""

    def __init__(
        self,
        settings: ClusterSettings,
        health: SubsystemHealth,
        on_connect: Callable[[Client], Awaitable[None]],
        *,
        name: str,
        read_chunk: int | None = None,
    ) -> None:
        self.settings = settings
        self.read_chunk = read_chunk
        self.health = health
        self.on_connect = on_connect
        self.name = name
        #: The open connection, or None while the broker is away.
        self.nc: Client | None = None
        self.connects = 0
        health.detail.update(url=settings.nats_url, connected=False, degraded=True)

    @property
    def connected(self) -> bool:
        nc = self.nc
        return nc is not None and nc.is_connected

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Connect, serve, and connect again, until cancelled. Started at once: a broker that
        is away is a health state (degraded), not a failure to start."""
        require_asyncio(self.name)
        task_status.started()
        while True:
            nc = await self._connect()
            closed = anyio.Event()
            lost = True
            try:
                self._up(nc)
                async with anyio.create_task_group() as tg:

                    async def serve(nc: Client = nc) -> None:
                        await self.on_connect(nc)
                        await anyio.sleep_forever()

                    async def until_closed(closed: anyio.Event = closed) -> None:
                        await closed.wait()
                        tg.cancel_scope.cancel()

                    tg.start_soon(serve)
                    tg.start_soon(until_closed)
                    self._watch(nc, closed)
            except anyio.get_cancelled_exc_class():
                lost = False  # stopping, not a broker gone
                raise
            finally:
                self.nc = None
                self._down(nc, lost)
                with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                    await nc.close()

    def _watch(self, nc: Client, closed: anyio.Event) -> None:
        """Turn nats-py's "connection closed" into ``closed``: with reconnects off, a lost
        broker closes the client (its callback fires on the loop)."""
        previous = nc._closed_cb

        async def on_closed() -> None:
            closed.set()
            if previous is not None:
                await previous()

        nc._closed_cb = on_closed
        if nc.is_closed:
            closed.set()

    async def _connect(self) -> Client:
        settings = self.settings
        with logs.retrying(f"NATS at {settings.nats_url}", "cluster"):
            async for attempt in stamina.retry_context(
                on=NATS_FAILURES,
                attempts=None,
                timeout=None,
                wait_initial=settings.backoff_initial,
                wait_max=settings.backoff_max,
                wait_jitter=settings.backoff_initial,
            ):
                with attempt:
                    try:
                        return await self._connect_once()
                    except NATS_FAILURES as exc:
                        self.health.last_error = (
                            f"cannot reach NATS at {settings.nats_url}: {exc!r}"
                        )
                        raise
        raise AssertionError("unreachable: stamina retries forever")  # pragma: no cover

    async def _connect_once(self) -> Client:
        settings = self.settings
        servers = settings.nats_url.split(",")

        async def on_error(exc: Exception) -> None:
            log.debug("NATS ({}): {!r}", self.name, exc)

        # Each server tried twice at once, then NoServersError: the backoff is stamina's.
        limit = 2 * len(servers) * settings.connect_timeout + 1.0
        with anyio.fail_after(limit):
            return await nats.connect(
                servers,
                name=f"{self.name}-{secrets.token_hex(3)}",
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                connect_timeout=max(1, round(settings.connect_timeout)),
                ping_interval=PING_INTERVAL_S,
                max_outstanding_pings=MAX_OUTSTANDING_PINGS,
                error_cb=on_error,
            )

    def _up(self, nc: Client) -> None:
        if self.read_chunk is not None:
            _widen_reads(nc, self.read_chunk)
        self.nc = nc
        self.connects += 1
        self.health.last_error = None
        self.health.detail.update(
            connected=True,
            degraded=False,
            server=str(nc.connected_url.netloc if nc.connected_url else ""),
        )
        self.health.detail.pop("degraded", None)
        log.info("{}: connected to NATS at {}", self.name, self.health.detail["server"])

    def _down(self, nc: Client, lost: bool) -> None:
        self.health.detail.update(connected=False, degraded=True)
        if not lost:
            log.info("{}: NATS connection closed", self.name)
            return
        if self.health.last_error is None:
            self.health.last_error = f"lost NATS at {self.settings.nats_url}"
        log.warning("{}: NATS connection lost; reconnecting", self.name)


def _widen_reads(nc: Client, size: int) -> None:
    """Let one read of the socket take up to ``size`` bytes instead of asyncio's 256 KiB.

    asyncio reads a socket once per loop iteration. A relay's loop is busy sending to its
    viewers; at 256 KiB an iteration, a 10k-node stream at 30 Hz (8.4 MB/s) fell behind once
    an iteration took over 30 ms, and the lag grew by seconds. Reaches into nats-py's transport
    (no public way): where that is not there (another nats-py, TLS), reads stay as they are.
    """
    writer = getattr(getattr(nc, "_transport", None), "_io_writer", None)
    transport = getattr(writer, "transport", None)
    if transport is not None and isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = size
