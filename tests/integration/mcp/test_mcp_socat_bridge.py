"""The TCP bridge line of docs/mcp.md, with socat in front of a stdio MCP server (the simulator's
``--stdio`` mode standing in for ``npx claude-flow mcp start``): each connection gets its own
server process, and the line protocol goes through unchanged. Skipped without socat."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator

import anyio
import pytest
from support.simkit import free_port

from visionflow import settings as s
from visionflow.errors import RpcError
from visionflow.mcp.client import connect_mcp
from visionflow.mcp.endpoint import EndpointWatcher
from visionflow.metrics import Metrics
from visionflow.supervisor import HealthRegistry

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

SOCAT = shutil.which("socat")


@pytest.fixture
def bridge() -> Iterator[int]:
    if SOCAT is None:
        pytest.skip("socat is not on PATH")
    port = free_port()
    server = f"{sys.executable} -m visionflow mcp-sim --stdio --tick 0.2"
    # the line of docs/mcp.md, bound to loopback and to a free port for the test
    line = [SOCAT, f"TCP-LISTEN:{port},reuseaddr,fork,bind=127.0.0.1", f"EXEC:{server}"]
    process = subprocess.Popen(line, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield port
    process.terminate()
    process.wait(10)


async def connect_retrying(port: int) -> None:
    with anyio.fail_after(30):
        while True:  # socat may not listen yet
            try:
                async with connect_mcp("127.0.0.1", port, call_timeout=20):
                    return
            except RpcError:  # refused until socat listens
                await anyio.sleep(0.1)


async def test_two_sessions_through_the_bridge_each_with_its_own_server(bridge: int) -> None:
    port = bridge
    await connect_retrying(port)
    with anyio.fail_after(60):
        async with (
            connect_mcp("127.0.0.1", port, call_timeout=20) as a,
            connect_mcp("127.0.0.1", port, call_timeout=20) as b,
        ):
            for client in (a, b):
                assert client.server_info["name"] == "claude-flow"
                assert "agent_list" in client.catalog.names
                await client.list_agents()


async def test_a_watcher_behind_the_bridge(bridge: int) -> None:
    port = bridge
    await connect_retrying(port)
    settings = s.validate(
        {"mcp": {"call_timeout": 20.0, "endpoints": [{"name": "cf", "port": port}]}}
    )
    registry = HealthRegistry("t")
    watcher = EndpointWatcher(
        settings.mcp.endpoints[0],
        settings.mcp,
        registry.register("mcp:cf"),
        Metrics(),
        lambda name, agents, live: None,
    )
    async with anyio.create_task_group() as tg:
        await tg.start(watcher.run)
        with anyio.fail_after(60):
            while watcher.status.last_poll is None:
                await anyio.sleep(0.05)
        doc = watcher.status.as_json()
        assert doc["transport"] == "tcp" and doc["state"] == "connected"
        assert doc["server"]["protocol_version"] == "2024-11-05"
        assert registry.status() == "ok"
        tg.cancel_scope.cancel()
