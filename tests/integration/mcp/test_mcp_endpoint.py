"""The endpoint watcher against the simulator over loopback TCP and over stdio."""

from __future__ import annotations

import os
import signal
import sys

import anyio
import anyio.abc
import pytest
from support.simkit import free_port, listening

from visionflow import settings as s
from visionflow.errors import GraphError
from visionflow.mcp.claudeflow import Agent
from visionflow.mcp.endpoint import EndpointWatcher
from visionflow.mcpsim.server import Simulator
from visionflow.metrics import Metrics
from visionflow.supervisor import HealthRegistry

pytestmark = pytest.mark.anyio


class Recorder:
    def __init__(self) -> None:
        self.updates: list[list[Agent]] = []
        self.changed = anyio.Event()

    def __call__(self, endpoint: str, agents: list[Agent], live: bool) -> None:
        self.updates.append(agents)
        self.changed.set()
        self.changed = anyio.Event()


def watcher_for(
    endpoint: dict[str, object], recorder: Recorder, **mcp: object
) -> tuple[EndpointWatcher, HealthRegistry, Metrics]:
    settings = s.validate(
        {
            "mcp": {
                "backoff_initial": 0.05,
                "backoff_max": 0.2,
                "breaker_threshold": 50,
                "call_timeout": 2.0,
                **mcp,
                "endpoints": [{"name": "sim", "poll_interval": 0.1, **endpoint}],
            }
        }
    )
    registry = HealthRegistry("t")
    metrics = Metrics()
    health = registry.register("mcp:sim")
    ep = settings.mcp.endpoints[0]
    return EndpointWatcher(ep, settings.mcp, health, metrics, recorder), registry, metrics


async def wait_for(predicate: object, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():  # type: ignore[operator]
            await anyio.sleep(0.01)


@pytest.mark.parametrize("flavor", ["v2", "v3"])
async def test_agents_appear_and_come_back_after_restarts(flavor: str) -> None:
    sim = Simulator(flavor=flavor, tick_interval=0, autopilot=False)  # type: ignore[arg-type]
    sim.model.spawn("coder", "c1")
    sim.model.spawn("tester", "t1")
    port = free_port()
    rec = Recorder()
    watcher, registry, metrics = watcher_for({"port": port}, rec)
    async with anyio.create_task_group() as tg:
        await tg.start(watcher.run)
        # nothing listens yet: backoff, degraded, no crash
        await wait_for(lambda: watcher.status.last_error is not None)
        assert registry.subsystems["mcp:sim"].state == "backoff"
        assert registry.status() == "degraded"
        ids: set[str] | None = None
        for _ in range(3):
            async with listening(sim, port):
                await wait_for(lambda: watcher.client is not None and len(watcher.agents) == 2)
                seen = {a.id for a in watcher.agents}
                assert ids is None or seen == ids
                ids = seen
                assert registry.subsystems["mcp:sim"].state == "running"
                assert registry.status() == "ok"
                assert watcher.status.connected
                assert watcher.status.server_name == "claude-flow"
                assert "agent_list" in watcher.status.tools
                sample = metrics.registry.get_sample_value
                assert sample("visionflow_mcp_agents", {"endpoint": "sim"}) == 2
                assert sample("visionflow_mcp_connected", {"endpoint": "sim"}) == 1
                # a new agent shows within a poll interval or two
                extra = sim.model.spawn("reviewer", "r1")
                await wait_for(lambda: len(watcher.agents) == 3)
                sim.model.terminate(extra.id)
                await wait_for(lambda: len(watcher.agents) == 2)
            await wait_for(lambda: watcher.client is None)
            assert watcher.agents == []  # a dead server's agents are not shown as live
            assert registry.status() == "degraded"
        assert watcher.status.connects == 3
        tg.cancel_scope.cancel()


async def test_generic_mcp_server_without_agent_tools_is_healthy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = Simulator(flavor="v3", tick_interval=0, autopilot=False)
    # A server that lists no orchestrator tools (like server-everything).
    monkeypatch.setattr(sim.dialect, "tools", {})
    port = free_port()
    rec = Recorder()
    watcher, registry, _ = watcher_for({"port": port}, rec)
    async with anyio.create_task_group() as tg, listening(sim, port):
        await tg.start(watcher.run)
        await wait_for(lambda: watcher.status.connected and watcher.status.last_poll is not None)
        await anyio.sleep(0.2)
        assert registry.status() == "ok"
        assert watcher.agents == []
        assert watcher.status.connects == 1
        tg.cancel_scope.cancel()


async def test_stdio_endpoint_launches_and_relaunches_the_server() -> None:
    rec = Recorder()
    command = [sys.executable, "-m", "visionflow", "mcp-sim", "--stdio", "--tick", "0.05"]
    watcher, registry, _ = watcher_for({"command": command}, rec)
    async with anyio.create_task_group() as tg:
        await tg.start(watcher.run)
        await wait_for(lambda: watcher.status.connected, timeout=20)
        assert registry.status() == "ok"
        assert watcher.status.target.endswith("--tick 0.05")
        client = watcher.client
        assert client is not None
        pid = int(client.endpoint.rsplit("pid ", 1)[1].rstrip(")"))
        # kill the server process: the watcher notices and launches a fresh one
        os.kill(pid, signal.SIGKILL)
        await wait_for(lambda: watcher.status.connects == 2, timeout=20)
        assert watcher.client is not None and f"pid {pid})" not in watcher.client.endpoint
        tg.cancel_scope.cancel()


async def test_a_launched_server_that_dies_is_reported_with_its_status_and_stderr() -> None:
    rec = Recorder()
    script = "echo starting >&2; echo 'boom: no such config' >&2; exit 3"
    watcher, _, _ = watcher_for({"command": ["sh", "-c", script]}, rec)
    async with anyio.create_task_group() as tg:
        await tg.start(watcher.run)
        await wait_for(lambda: watcher.status.last_error is not None, timeout=20)
        tg.cancel_scope.cancel()
    error = watcher.status.last_error
    assert error is not None
    # it said "server closed the connection before saying anything (an HTTP server takes
    # url = ...?)", and the server's own words were logged at DEBUG only
    assert "the server process exited with status 3" in error
    assert "stderr: starting | boom: no such config" in error
    assert "url" not in error


async def test_a_launched_server_killed_by_a_signal_says_so() -> None:
    rec = Recorder()
    watcher, _, _ = watcher_for({"command": ["sh", "-c", "kill -KILL $$"]}, rec)
    async with anyio.create_task_group() as tg:
        await tg.start(watcher.run)
        await wait_for(lambda: watcher.status.last_error is not None, timeout=20)
        tg.cancel_scope.cancel()
    assert "the server process was killed by SIGKILL (nothing on stderr)" in str(
        watcher.status.last_error
    )


def _running(marker: bytes) -> list[int]:
    """Pids of live processes whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
                with open(f"/proc/{entry}/stat", "rb") as f:
                    zombie = f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
            except OSError:
                continue
            if marker in cmdline and not zombie:
                found.append(int(entry))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_stopping_a_wrapped_stdio_server_leaves_nothing_behind() -> None:
    # Launchers such as npx or sh -c start the real server (and maybe more) below themselves;
    # stopping only the direct child used to leave those running with parent pid 1.
    marker = f"{os.getpid()}.5"  # sleep's argument, unique to this test run
    sim = f"{sys.executable} -m visionflow mcp-sim --stdio --tick 0"
    rec = Recorder()
    watcher, _, _ = watcher_for({"command": ["sh", "-c", f"sleep {marker} & exec {sim}"]}, rec)
    async with anyio.create_task_group() as tg:
        await tg.start(watcher.run)
        await wait_for(lambda: watcher.status.connected, timeout=20)
        assert _running(f"sleep\0{marker}".encode())
        tg.cancel_scope.cancel()
    await wait_for(lambda: not _running(f"sleep\0{marker}".encode()), timeout=5)


async def test_a_full_graph_keeps_the_link_and_retries_each_poll() -> None:
    sim = Simulator(flavor="v2", tick_interval=0, autopilot=False)
    sim.model.spawn("coder", "c1")
    port = free_port()
    refusals = 3

    class FullThenRoomy(Recorder):
        def __call__(self, endpoint: str, agents: list[Agent], live: bool) -> None:
            nonlocal refusals
            if live and refusals:
                refusals -= 1
                raise GraphError("graph_full", "1 agent node(s) do not fit", "")
            super().__call__(endpoint, agents, live)

    rec = FullThenRoomy()
    watcher, _, _ = watcher_for({"port": port}, rec)
    async with listening(sim, port), anyio.create_task_group() as tg:
        await tg.start(watcher.run)
        await wait_for(lambda: refusals == 0 and watcher.status.last_error is not None)
        assert "agents not shown" in (watcher.status.last_error or "")
        await wait_for(lambda: len(watcher.agents) == 1)  # shown once there is room
        assert watcher.status.connects == 1  # the link never dropped
        assert watcher.status.last_error is None
        tg.cancel_scope.cancel()
