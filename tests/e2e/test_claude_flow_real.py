"""Optional: the MCP client against the real claude-flow 2.7.47 stdio server and against
``@modelcontextprotocol/server-everything`` (a generic MCP server that is no orchestrator).

Skipped, with the reason, unless ``node`` is on PATH and the npm packages are in the cache
folder (``$VISIONFLOW_REAL_MCP_CACHE``, default ``~/.cache/visionflow-real-mcp``). A normal run
never downloads anything: ``VISIONFLOW_REAL_MCP=1`` asks for them to be installed there first
(``npm install --ignore-scripts``; claude-flow then runs offline on its in-memory store).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.servicekit import eventually, running

from visionflow import settings as s
from visionflow.mcp.claudeflow import PLACEHOLDER_AGENT_IDS, Agent, is_placeholder, parse_agent_list
from visionflow.mcp.client import PROTOCOL_VERSION
from visionflow.mcp.endpoint import EndpointWatcher
from visionflow.mcp.stdio import launch_mcp
from visionflow.metrics import Metrics
from visionflow.supervisor import HealthRegistry

CLAUDE_FLOW_VERSION = "2.7.47"
PACKAGES = (f"claude-flow@{CLAUDE_FLOW_VERSION}", "@modelcontextprotocol/server-everything")
INSTALL = os.environ.get("VISIONFLOW_REAL_MCP") == "1"
INSTALL_TIMEOUT = 480.0
CACHE = Path(
    os.environ.get("VISIONFLOW_REAL_MCP_CACHE") or Path.home() / ".cache" / "visionflow-real-mcp"
)
MODULES = CACHE / "node_modules"
CLAUDE_FLOW_SERVER = MODULES / "claude-flow" / "src" / "mcp" / "mcp-server.js"
EVERYTHING_SERVER = MODULES / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.slow,
    # An install (only when asked for) runs inside the first test's set-up.
    pytest.mark.timeout(INSTALL_TIMEOUT + 120 if INSTALL else 120),
]


@pytest.fixture(scope="session")
def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.skip("node is not on PATH")
    if not _installed() and INSTALL:
        _install()
    if not _installed():
        pytest.skip(
            f"real MCP servers not installed in {CACHE}; "
            "set VISIONFLOW_REAL_MCP=1 to install them there (needs npm and the registry)"
        )
    return found


def _installed() -> bool:
    return CLAUDE_FLOW_SERVER.is_file() and EVERYTHING_SERVER.is_file()


def _install() -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("VISIONFLOW_REAL_MCP=1 but npm is not on PATH")
    CACHE.mkdir(parents=True, exist_ok=True)
    command = [npm, "install", "--ignore-scripts", "--no-audit", "--no-fund"]
    done = subprocess.run(
        [*command, "--prefix", str(CACHE), *PACKAGES],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"npm install into {CACHE} failed ({done.returncode}):\n{done.stderr[-4000:]}")


@pytest.fixture
def claude_flow(node: str) -> list[str]:
    package = json.loads((MODULES / "claude-flow" / "package.json").read_text())
    if package.get("version") != CLAUDE_FLOW_VERSION:
        pytest.skip(
            f"{CACHE} holds claude-flow {package.get('version')}, not {CLAUDE_FLOW_VERSION}"
        )
    return [node, str(CLAUDE_FLOW_SERVER)]


@pytest.fixture
def everything(node: str) -> list[str]:
    return [node, str(EVERYTHING_SERVER), "stdio"]


class Recorder:
    def __init__(self) -> None:
        self.updates: list[tuple[list[Agent], bool]] = []

    def __call__(self, endpoint: str, agents: list[Agent], live: bool) -> None:
        self.updates.append((agents, live))


def watcher_for(
    command: list[str], cwd: Path, recorder: Recorder
) -> tuple[EndpointWatcher, HealthRegistry]:
    settings = s.validate(
        {
            "mcp": {
                "backoff_initial": 0.05,
                "backoff_max": 0.5,
                "call_timeout": 10.0,
                "endpoints": [{"name": "real", "command": command, "poll_interval": 0.1}],
            }
        }
    )
    registry = HealthRegistry("t")
    watcher = EndpointWatcher(
        settings.mcp.endpoints[0],
        settings.mcp,
        registry.register("mcp:real"),
        Metrics(),
        recorder,
        cwd=cwd,
    )
    return watcher, registry


async def wait_for(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.02)


def _pid(endpoint: str) -> int:
    return int(endpoint.rsplit("pid ", 1)[1].rstrip(")"))


async def test_claude_flow_speaks_with_our_client(claude_flow: list[str], tmp_path: Path) -> None:
    with anyio.fail_after(60):
        async with launch_mcp(claude_flow, name="claude-flow", cwd=tmp_path) as client:
            assert client.server_info == {"name": "claude-flow", "version": CLAUDE_FLOW_VERSION}
            assert client.protocol_version == PROTOCOL_VERSION
            catalog = client.catalog
            wanted = {"swarm_init", "agent_spawn", "agent_list", "swarm_status", "task_orchestrate"}
            assert wanted <= catalog.names
            assert catalog.dialect == "v2"
            assert "type" in catalog.agent_spawn("coder").arguments

            # No agent spawned in this process: only the three built-in placeholders.
            raw = parse_agent_list(
                await client.call_tool(catalog.agent_list()), keep_placeholders=True
            )
            assert {a.id for a in raw} == PLACEHOLDER_AGENT_IDS
            assert all(is_placeholder(a) for a in raw)
            assert await client.list_agents() == []
            assert await client.swarm_status() is None  # "No active swarm found"

            swarm_id = await client.init_swarm("mesh", max_agents=4, strategy="balanced")
            assert swarm_id.startswith("swarm_")
            spawned = await client.spawn_agent(
                "coordinator", name="Boss", capabilities=["plan"], swarm_id=swarm_id
            )
            assert spawned.agent_id.startswith("agent_")
            assert spawned.name == "Boss"
            agents = await client.list_agents()
            assert [a.id for a in agents] == [spawned.agent_id]
            boss = agents[0]
            assert boss.type == "task-orchestrator"  # 2.x renames it; the colour table maps back
            assert boss.kind == "coordinator"
            assert boss.swarm_id == swarm_id
            assert boss.capabilities == ("plan",)
            assert boss.metadata.get("createdBy") == "mcp-server"  # a JSON string, decoded

            status = await client.swarm_status()
            assert status is not None
            assert status.swarm_id == swarm_id
            assert status.topology == "mesh"
            assert status.agent_count == 1
            task = await client.submit_task("write the docs", priority="high")
            assert str(task.data.get("taskId", "")).startswith("task_")

            # An unknown tool is answered with 2.x's generic success stub, not an error.
            stub = await client.call_tool("no_such_tool_here")
            assert stub.stub
    # claude-flow keeps its files under its working directory: the one we gave it.
    assert (tmp_path / ".swarm").is_dir()


async def test_claude_flow_under_the_endpoint_watcher(
    claude_flow: list[str], tmp_path: Path
) -> None:
    recorder = Recorder()
    watcher, registry = watcher_for(claude_flow, tmp_path, recorder)
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            await tg.start(watcher.run)
            await wait_for(lambda: watcher.status.connected and watcher.status.last_poll)
            assert registry.status() == "ok"
            assert watcher.status.server_version == CLAUDE_FLOW_VERSION
            assert watcher.agents == []  # placeholders are not live agents
            assert watcher.status.swarm is None
            assert recorder.updates and recorder.updates[-1] == ([], True)

            client = watcher.client
            assert client is not None
            spawned = await client.spawn_agent("tester", name="T")
            watcher.poll_soon()
            await wait_for(lambda: [a.id for a in watcher.agents] == [spawned.agent_id])
            assert watcher.status.agent_count == 1

            # The server dies: the watcher launches a fresh one, whose in-memory store is empty.
            os.kill(_pid(client.endpoint), signal.SIGKILL)
            await wait_for(lambda: watcher.status.connects == 2 and watcher.status.last_poll)
            await wait_for(lambda: watcher.client is not None and watcher.agents == [])
            assert ([], False) in recorder.updates  # the dead server's agents went not-live
            assert registry.status() == "ok"
            tg.cancel_scope.cancel()
    assert (tmp_path / ".swarm").is_dir()  # written where the watcher launched it


async def test_server_everything_is_healthy_with_zero_agents(
    everything: list[str], tmp_path: Path
) -> None:
    recorder = Recorder()
    watcher, registry = watcher_for(everything, tmp_path, recorder)
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            await tg.start(watcher.run)
            await wait_for(lambda: watcher.status.connected and watcher.status.last_poll)
            first_poll = watcher.status.last_poll
            assert first_poll is not None
            # Several polls later: still the first connection, no error, no agents.
            await wait_for(lambda: (watcher.status.last_poll or 0) > first_poll + 0.3)
            status = watcher.status
            assert status.connects == 1
            assert status.last_error is None
            assert status.breaker == "closed"
            assert "everything" in (status.server_name or "")
            assert status.tools and "agent_list" not in status.tools
            assert watcher.agents == []
            assert registry.status() == "ok"
            assert registry.subsystems["mcp:real"].state == "running"
            assert all(update == ([], True) for update in recorder.updates)
            tg.cancel_scope.cancel()


async def test_server_everything_in_a_whole_service(everything: list[str], tmp_path: Path) -> None:
    raw: dict[str, Any] = {
        "state": {"dir": str(tmp_path / "state")},
        "mcp": {
            "call_timeout": 10.0,
            "endpoints": [{"name": "everything", "command": everything, "poll_interval": 0.2}],
        },
    }
    with anyio.fail_after(60):
        async with running(raw) as (svc, client):
            watcher = svc.ctx.watchers["everything"]
            await eventually(lambda: watcher.status.last_poll, timeout=20)
            health = await client.get("/api/health")
            assert health.status_code == 200
            body = health.json()
            assert body["status"] == "ok", body
            sub = body["subsystems"]["mcp:everything"]
            assert sub["state"] == "running" and sub["last_error"] is None
            assert sub["detail"]["agents"] == 0
            assert (await client.get("/api/bots/data")).json()["agents"] == []
            endpoint = (await client.get("/api/bots/status")).json()["endpoints"][0]
            assert endpoint["connected"] and endpoint["agents"] == 0
