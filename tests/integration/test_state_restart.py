"""What a restart keeps (node ids, the revision) and how a failing state dir shows in health."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from support.servicekit import eventually, running

from visionflow.graph.store import NodeKey, NodeKind
from visionflow.state.layout import layout_path, load_layout

pytestmark = pytest.mark.anyio


async def ids_by_key(client: httpx.AsyncClient) -> tuple[dict[str, int], int]:
    body = (await client.get("/api/graph/data", params={"limit": 1000})).json()
    return {n["key"]: n["id"] for n in body["nodes"]}, body["revision"]


async def test_node_ids_and_revision_survive_a_restart(tmp_path: Path) -> None:
    raw: dict[str, Any] = {"state": {"dir": str(tmp_path), "save_interval": 0.2}}
    doc = {
        "nodes": [{"id": f"n{i}"} for i in range(200)],
        "edges": [{"source": f"n{i}", "target": f"n{(i * 7) % 200}"} for i in range(200)],
    }
    async with running(raw) as (_, client):
        # an earlier node deleted first, so the ids do not simply start at 1 again
        assert (await client.post("/api/graph/import", json={"nodes": [{"id": "x"}]})).is_success
        assert (await client.post("/api/graph/import?mode=replace", json=doc)).is_success
        last = NodeKey(NodeKind.KNOWLEDGE, "n199")
        await eventually(lambda: last in load_layout(layout_path(tmp_path)).positions)
        before, revision = await ids_by_key(client)
    assert len(before) == 200
    async with running(raw) as (_, client):
        after, revision_after = await ids_by_key(client)
        assert after == before
        assert revision_after > revision  # a viewer's old baseline cannot match
        r = await client.post("/api/graph/import", json={"nodes": [{"id": "new"}]})
        assert r.is_success
        again, _ = await ids_by_key(client)
        assert again["new"] > max(before.values())  # ids are not reused after a restart


async def test_unwritable_state_dir_makes_layout_degraded(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    state_dir = blocker / "state"  # cannot be created, even by root
    raw: dict[str, Any] = {"state": {"dir": str(state_dir), "save_interval": 0.2}}

    async def degraded(client: httpx.AsyncClient) -> dict[str, Any] | None:
        health = (await client.get("/api/health")).json()
        return health if health["status"] == "degraded" else None

    async with running(raw) as (_, client):
        r = await client.post("/api/graph/import", json={"nodes": [{"id": "a"}]})
        assert r.is_success
        health = await eventually(lambda: degraded(client), timeout=30)
        layout = health["subsystems"]["layout"]
        assert layout["state"] == "running"
        assert layout["detail"]["degraded"] is True
        assert (
            layout["detail"]["error"]
            == "a file stands where this folder (or one above it) should be"
        )
        assert layout["detail"]["path"] == str(state_dir / "layout.json")
