"""/api/bots/* against the whole service and the swarm simulator over loopback TCP."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from support.servicekit import JSON, eventually, running

from visionflow.mcpsim.server import serve_simulator

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def simulator(flavor: str) -> AsyncIterator[int]:
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            partial(
                serve_simulator, "127.0.0.1", 0, flavor=flavor, tick_interval=0, autopilot=False
            )  # type: ignore[arg-type]
        )
        yield port
        tg.cancel_scope.cancel()


def config(tmp_path: Path, port: int, **server: Any) -> dict[str, Any]:
    return {
        "state": {"dir": str(tmp_path)},
        "server": server,
        "mcp": {"endpoints": [{"name": "sim", "port": port, "poll_interval": 0.2}]},
    }


async def agents(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    return list((await client.get("/api/bots/data")).json()["agents"])


@pytest.mark.parametrize("flavor", ["v2", "v3"])
async def test_swarm_lifecycle_through_rest(tmp_path: Path, flavor: str) -> None:
    async with simulator(flavor) as port, running(config(tmp_path, port)) as (svc, client):
        status = await eventually(lambda: svc.ctx.watchers["sim"].status.connected, timeout=10)
        assert status
        r = await client.get("/api/bots/status")
        ep = r.json()["endpoints"][0]
        assert ep["connected"] and ep["breaker"] == "closed"
        assert ep["server"]["name"] == "claude-flow"
        assert "agent_spawn" in ep["tools"]
        assert await agents(client) == []  # 2.x placeholders are not shown as live agents
        r = await client.post(
            "/api/bots/initialize-swarm",
            json={
                "topology": "mesh",
                "maxAgents": 5,
                "strategy": "balanced",
                "agentTypes": ["coder", "tester"],
            },
        )
        assert r.status_code == 200, r.text
        swarm_id = r.json()["swarmId"]
        assert swarm_id
        r = await client.post("/api/bots/spawn-agent", json={"type": "researcher", "name": "R"})
        assert r.status_code == 200, r.text
        found = await eventually(lambda: _count(client, 3), timeout=10)
        kinds = {a["kind"] for a in found}
        assert kinds == {"coder", "tester", "researcher"}
        assert all(a["id"] & 0x80000000 for a in found)
        assert all(a["live"] for a in found)
        r = await client.post("/api/bots/task", json={"task": "write docs", "priority": "high"})
        assert r.status_code == 200, r.text
        health = (await client.get("/api/health")).json()
        assert health["subsystems"]["mcp:sim"]["detail"]["agents"] == 3


async def _count(client: httpx.AsyncClient, n: int) -> list[dict[str, Any]] | None:
    found = await agents(client)
    return found if len(found) == n else None


async def test_bodies_are_validated(tmp_path: Path) -> None:
    async with simulator("v2") as port, running(config(tmp_path, port)) as (_, client):
        r = await client.post("/api/bots/initialize-swarm", json={"topology": "blob"})
        assert r.status_code == 400
        assert r.json()["error"]["path"] == "topology"
        r = await client.post(
            "/api/bots/initialize-swarm", json={"topology": "mesh", "maxAgents": "7"}
        )
        assert r.status_code == 400 and r.json()["error"]["path"] == "maxAgents"
        r = await client.post("/api/bots/spawn-agent", json={})
        assert r.status_code == 400 and "type" in r.json()["error"]["message"]
        assert r.json()["error"]["path"] == "type"  # the field missed, named as a path
        r = await client.post("/api/bots/task", json={"task": "x", "bogus": 1})
        assert r.status_code == 400 and r.json()["error"]["path"] == "bogus"
        r = await client.post("/api/bots/task", json={"task": ""})
        assert r.status_code == 400 and r.json()["error"]["path"] == "task"
        r = await client.post("/api/bots/task", content=b"[", headers=JSON)
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_json"
        # these two were 500s: msgspec raises RecursionError and UnicodeDecodeError for them
        for body in (b"[" * 100_000, b'{"task": "\xff\xfe"}'):
            r = await client.post("/api/bots/task", content=body, headers=JSON)
            assert r.status_code == 400 and r.json()["error"]["code"] == "bad_json", r.text
        r = await client.post("/api/bots/spawn-agent", json={"type": "coder", "endpoint": "x"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_endpoint"


async def test_down_endpoint_is_503_and_degraded(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here
    async with running(config(tmp_path, port)) as (_, client):
        r = await client.post("/api/bots/spawn-agent", json={"type": "coder"})
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "endpoint_down"
        health = await client.get("/api/health")
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        assert health.json()["subsystems"]["mcp:sim"]["state"] == "backoff"
        assert (await client.get("/readyz")).status_code == 200


async def test_mutations_need_the_token(tmp_path: Path) -> None:
    async with simulator("v2") as port, running(config(tmp_path, port, token="k")) as (_, c):
        r = await c.post("/api/bots/spawn-agent", json={"type": "coder"})
        assert r.status_code == 401
        assert (await c.get("/api/bots/status")).status_code == 200


async def test_openapi_describes_every_route(tmp_path: Path) -> None:
    async with running({"state": {"dir": str(tmp_path)}}) as (_, client):
        r = await client.get("/openapi.json")
        assert r.status_code == 200
        spec = r.json()
        assert spec["openapi"].startswith("3.")
        paths = spec["paths"]
        for path in [
            "/healthz",
            "/readyz",
            "/api/health",
            "/metrics",
            "/api/settings",
            "/api/graph/data",
            "/api/graph/import",
            "/api/graph/export",
            "/api/bots/data",
            "/api/bots/status",
            "/api/bots/initialize-swarm",
            "/api/bots/spawn-agent",
            "/api/bots/task",
            "/wss",
        ]:
            assert path in paths, path
        body = paths["/api/bots/initialize-swarm"]["post"]["requestBody"]
        ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        schema = spec["components"]["schemas"][ref]
        assert set(schema["properties"]) >= {"topology", "maxAgents", "strategy", "agentTypes"}
        assert "400" in paths["/api/graph/import"]["post"]["responses"]
