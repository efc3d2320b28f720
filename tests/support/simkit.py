"""The simulator on a fixed loopback port that can be taken down and brought back."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from visionflow.mcpsim.server import Simulator


def free_port() -> int:
    """An ephemeral port, reused across restarts of the same simulator."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def listening(sim: Simulator, port: int) -> AsyncIterator[None]:
    """Serve ``sim`` on ``port`` until the block ends (then every connection is dropped)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, sim.handle, tg)
        yield
        tg.cancel_scope.cancel()
