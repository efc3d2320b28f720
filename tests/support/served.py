"""A whole Service served on loopback from a worker thread, for synchronous clients.

Schemathesis and hypothesis's ``@given`` drive blocking clients (requests, websockets' sync
client); the service runs meanwhile on its own trio loop in an anyio blocking portal. The loop
also runs the MCP swarm simulator the service is configured to reach, so the swarm routes have a
real server to talk to.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal
from loguru import logger

from support.servicekit import running
from visionflow.mcpsim.server import serve_simulator
from visionflow.service import Service

TOKEN = "fuzz-token-0123456789"


def examples(count: int) -> int:
    """A fuzzer's example count, times ``VISIONFLOW_FUZZ_SCALE`` (default 1: the suite's quick
    run; 20 or more for a long one). Each run stays derandomized: the same scale, the same cases."""
    return max(1, round(count * float(os.environ.get("VISIONFLOW_FUZZ_SCALE", "1"))))


@dataclass
class Served:
    svc: Service
    portal: BlockingPortal
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return str(self.svc.http.url)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/wss"

    def tracebacks(self) -> list[str]:
        """Lines of the log that carry a traceback or an unhandled error."""
        return [line for line in self.log if "Traceback" in line or "Exception in" in line]


class _Records(logging.Handler):
    """Hypercorn and starlette log through the standard library: an ASGI error ends up here."""

    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\nTraceback: " + logging.Formatter().formatException(record.exc_info)
        self.into.append(text)


class _Simulated:
    """The simulator on port 0 in the portal's loop, for as long as the service runs."""

    def __init__(self) -> None:
        self.port = 0
        self._scope: anyio.CancelScope | None = None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        with anyio.CancelScope() as self._scope:
            async with anyio.create_task_group() as tg:
                start = partial(serve_simulator, "127.0.0.1", 0, tick_interval=0, autopilot=False)
                self.port = await tg.start(start)  # type: ignore[arg-type]
                task_status.started()

    def stop(self) -> None:
        if self._scope is not None:
            self._scope.cancel()


@contextmanager
def served(state_dir: Path, **server: Any) -> Iterator[Served]:
    """The service with its state under ``state_dir``, one MCP simulator endpoint, the example
    vault (read from the package, never written) and ``server`` settings (``token=``...);
    every WARNING or worse that it logs is kept."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING", format="{message}")
    records = _Records(lines)
    logging.getLogger().addHandler(records)
    try:
        with start_blocking_portal("trio") as portal:
            sim = _Simulated()
            portal.start_task(sim.run)
            raw = {
                "state": {"dir": str(state_dir)},
                "knowledge": {"path": ""},  # the example vault: notes to read, nodes to drag
                "server": server,
                "mcp": {"endpoints": [{"name": "sim", "port": sim.port, "poll_interval": 0.5}]},
            }
            cm: AbstractAsyncContextManager[tuple[Service, Any]] = running(raw)
            with portal.wrap_async_context_manager(cm) as (svc, _):
                portal.call(_ready, svc)
                yield Served(svc, portal, lines)
            portal.call(sim.stop)
    finally:
        logging.getLogger().removeHandler(records)
        logger.remove(sink)


async def _ready(svc: Service) -> None:
    """Until the restore is done and the MCP endpoint is connected (the routes answer 200)."""
    with anyio.fail_after(60):
        while svc.ctx.registry.starting is not None or not all(
            w.status.connected for w in svc.ctx.watchers.values()
        ):
            await anyio.sleep(0.05)
