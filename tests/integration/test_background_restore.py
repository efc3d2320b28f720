"""The port opens before the saved state is restored: probes answer, the graph routes wait.

A 1M-node saved graph takes tens of seconds to restore; liveness probes must not fail
meanwhile, nothing may change the graph under the restore, and a stop must not wait for it.
The restore here blocks on an event, so the window is as long as the test needs.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from support.servicekit import JSON, eventually

from visionflow import settings as s
from visionflow.service import Service

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def restoring(
    tmp_path: Path,
) -> AsyncIterator[tuple[Service, httpx.AsyncClient, threading.Event]]:
    """A service whose restore waits for the yielded event (set it to let the restore run)."""
    svc = Service(
        s.validate({"server": {"port": 0, "shutdown_grace": 2.0}, "state": {"dir": str(tmp_path)}})
    )
    release = threading.Event()
    real_restore = svc.changes.restore

    def slow_restore(state_dir: str, endpoints: list[str]) -> None:
        release.wait(60)
        real_restore(state_dir, endpoints)

    svc.changes.restore = slow_restore  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc.run)
        await eventually(lambda: getattr(svc, "http", None) is not None and svc.http.url)
        async with httpx.AsyncClient(base_url=str(svc.http.url), timeout=10) as client:
            await eventually(lambda: _answers(client))
            try:
                yield svc, client, release
            finally:
                release.set()
                svc.request_stop()


async def _answers(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/healthz")).status_code == 200
    except httpx.TransportError:
        return False


async def test_probes_answer_and_graph_routes_wait_while_restoring(tmp_path: Path) -> None:
    async with restoring(tmp_path) as (svc, client, release):
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert "restoring the saved graph and layout" in ready.json()["reasons"]
        doc = b'{"nodes": [{"id": "a"}], "edges": []}'
        for r in (
            await client.post("/api/graph/import", content=doc, headers=JSON),
            await client.get("/api/graph/data"),
            await client.get("/api/graph/export"),
            await client.post("/api/bots/spawn-agent", json={"type": "coder"}),
        ):
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "starting" and r.headers["retry-after"] == "5"
        assert len(svc.ctx.store) == 0  # nothing reached the graph
        assert svc.ctx.registry.get("physics").state == "starting"  # type: ignore[union-attr]

        release.set()
        await eventually(lambda: _ready(client))
        r = await client.post("/api/graph/import", content=doc, headers=JSON)
        assert r.status_code == 200, r.text
        assert (await client.get("/api/graph/data")).json()["node_count"] == 1


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


async def test_a_stop_during_the_restore_does_not_wait_for_it(tmp_path: Path) -> None:
    svc = Service(
        s.validate({"server": {"port": 0, "shutdown_grace": 2.0}, "state": {"dir": str(tmp_path)}})
    )
    entered = threading.Event()
    release = threading.Event()

    def stuck_restore(state_dir: str, endpoints: list[str]) -> None:
        entered.set()
        release.wait(60)  # a restore that would take a minute

    svc.changes.restore = stuck_restore  # type: ignore[method-assign]
    try:
        with anyio.fail_after(30):  # generous: the point is not waiting the 60 s
            async with anyio.create_task_group() as tg:
                tg.start_soon(svc.run)
                await eventually(entered.is_set)
                svc.request_stop()
        # the saver never started, so nothing overwrote the saved layout with a partial one
        assert svc.ctx.registry.get("layout") is None
        assert not (tmp_path / "layout.json").exists()
    finally:
        release.set()
