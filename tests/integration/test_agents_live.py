"""Done means for the MCP issue: a spawned agent shows in /api/bots/data, in an ``agents``
message and in the position frames of a /wss viewer, all through the real service."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.servicekit import eventually, running
from support.wsharness import Client

from visionflow.mcpsim.server import serve_simulator
from visionflow.protocol.frames import AGENT_FLAG

pytestmark = pytest.mark.anyio


async def test_spawned_agent_reaches_rest_control_messages_and_frames(tmp_path: Path) -> None:
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            partial(serve_simulator, "127.0.0.1", 0, flavor="v2", tick_interval=0, autopilot=False)  # type: ignore[arg-type]
        )
        raw: dict[str, Any] = {
            "state": {"dir": str(tmp_path)},
            "mcp": {"endpoints": [{"name": "sim", "port": port, "poll_interval": 0.2}]},
        }
        async with running(raw) as (svc, client):
            await eventually(lambda: svc.ctx.watchers["sim"].status.connected)
            url = str(svc.http.url).replace("http://", "ws://") + "/wss?graph=agents"
            viewer = await Client.connect(url)
            try:
                hello = await viewer.json()
                assert hello["type"] == "connection_established"
                r = await client.post("/api/bots/spawn-agent", json={"type": "coder", "name": "C"})
                assert r.status_code == 200, r.text
                seen: dict[str, Any] = {}
                with anyio.fail_after(10):
                    while not {"graph_changed", "agents_changed"} <= seen.keys():
                        message = await viewer.json()
                        seen[message["type"]] = message
                change = seen["agents_changed"]
                assert change["endpoint"] == "sim" and change["removed"] == []
                agents = change["changed"]
                assert change["count"] == 1 and change["revision"] >= 1
                assert [a["name"] for a in agents] == ["C"]
                assert agents[0]["kind"] == "coder" and agents[0]["live"]
                node_id = agents[0]["id"]
                assert node_id & AGENT_FLAG
                data = (await client.get("/api/bots/data")).json()
                assert [a["id"] for a in data["agents"]] == [node_id]
                with anyio.fail_after(10):
                    while True:
                        frame = await viewer.frame()
                        if node_id in set(frame.ids.tolist()):
                            break
                assert all(int(i) & AGENT_FLAG for i in frame.ids)  # graph=agents filter
            finally:
                await viewer.aclose()
        tg.cancel_scope.cancel()


async def test_viewers_are_told_when_the_settings_change(tmp_path: Path) -> None:
    async with running({"state": {"dir": str(tmp_path)}}) as (svc, client):
        url = str(svc.http.url).replace("http://", "ws://") + "/wss"
        viewer = await Client.connect(url)
        try:
            assert (await viewer.json())["type"] == "connection_established"
            patch = {"physics": {"knowledge": {"damping": 0.5}}}
            r = await client.patch("/api/settings", json=patch)
            assert r.status_code == 200, r.text
            with anyio.fail_after(10):
                while (message := await viewer.json())["type"] != "settings_changed":
                    pass
            assert message == {"type": "settings_changed", "revision": 1}
            r = await client.patch("/api/settings", json={"physics": {"knowledge": {"damping": 7}}})
            assert r.status_code == 400  # refused: nothing changed, nothing said
            r = await client.patch("/api/settings", json={"log": {"level": "DEBUG"}})
            assert r.status_code == 200, r.text
            with anyio.fail_after(10):
                while (message := await viewer.json())["type"] != "settings_changed":
                    pass
            assert message["revision"] == 2
        finally:
            await viewer.aclose()
