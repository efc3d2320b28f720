"""A whole Service in-process on an ephemeral port, for integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx

from visionflow import settings as s
from visionflow.service import Service

#: Mutating routes take JSON only (415 otherwise): the header for bodies sent with ``content=``.
JSON = {"Content-Type": "application/json"}


@asynccontextmanager
async def running(raw: dict[str, Any]) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    # No example vault unless a test asks (knowledge.path = ""): tests count what they put in.
    raw = {
        **raw,
        "server": {"port": 0, "shutdown_grace": 2.0, **raw.get("server", {})},
        "knowledge": {"path": "none", **raw.get("knowledge", {})},
    }
    svc = Service(s.validate(raw))
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(15):
            await tg.start(svc.run)
        async with httpx.AsyncClient(base_url=str(svc.http.url), timeout=10) as client:
            yield svc, client
        svc.request_stop()


async def eventually(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll an async or sync check until it returns something truthy."""
    with anyio.fail_after(timeout):
        while True:
            result = check()
            if hasattr(result, "__await__"):
                result = await result
            if result:
                return result
            await anyio.sleep(0.02)
