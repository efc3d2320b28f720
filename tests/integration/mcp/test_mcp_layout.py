"""Agents keep their places across a run in which their server never answered."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.servicekit import eventually, running
from support.simkit import free_port, listening

from visionflow.graph.store import NodeKey, NodeKind
from visionflow.mcpsim.server import Simulator
from visionflow.state.layout import layout_path, load_layout

pytestmark = pytest.mark.anyio

Position = tuple[float, float, float]


async def agent_positions(client: httpx.AsyncClient) -> dict[str, list[float]] | None:
    nodes = (await client.get("/api/graph/data")).json()["nodes"]
    agents = {n["key"]: n["position"] for n in nodes if "/agent/" in n["key"]}
    return agents if agents and all(p is not None for p in agents.values()) else None


async def agent_ids(client: httpx.AsyncClient) -> dict[str, int]:
    nodes = (await client.get("/api/graph/data")).json()["nodes"]
    return {n["key"]: n["id"] for n in nodes if "/agent/" in n["key"]}


async def test_agent_positions_survive_a_run_with_their_server_down(tmp_path: Path) -> None:
    sim = Simulator(flavor="v2", tick_interval=0, autopilot=False)
    sim.model.spawn("coder", "keeper")
    port = free_port()
    raw: dict[str, Any] = {
        "state": {"dir": str(tmp_path), "save_interval": 0.2},
        "mcp": {"endpoints": [{"name": "sim", "port": port, "poll_interval": 0.2}]},
    }
    path = layout_path(tmp_path)

    def saved_agents() -> dict[NodeKey, Position]:
        return {
            k: p
            for k, p in load_layout(path).positions.items()
            if k.kind is NodeKind.AGENT and "/agent/" in k.external_id
        }

    async with listening(sim, port), running(raw) as (_, client):
        await eventually(saved_agents)
        first_ids = await agent_ids(client)
    first = saved_agents()  # as of the save on shutdown
    assert len(first) == 1

    # The server is down for this whole run, while the layout keeps being saved.
    async with running(raw) as (_, client):
        graph = {"nodes": [{"id": "k1"}, {"id": "k2"}], "edges": [{"source": "k1", "target": "k2"}]}
        assert (await client.post("/api/graph/import", json=graph)).status_code == 200
        await eventually(lambda: NodeKey(NodeKind.KNOWLEDGE, "k1") in load_layout(path).positions)
    assert saved_agents() == first

    async with listening(sim, port), running(raw) as (_, client):
        back = await eventually(lambda: agent_positions(client))
        assert await agent_ids(client) == first_ids  # the same node id two restarts later
    [(key, saved)] = first.items()
    assert math.dist(back[key.external_id], saved) < 5.0
