"""Soak: the simulator killed and restarted 20 times under a running service.

One :class:`Simulator` keeps its swarm while its listener is started and cancelled on the same
loopback port, as a claude-flow bridge restarting in front of one server state would. The
service must stay up (health ``degraded`` with 200 while the server is down, never ``failing``,
``/readyz`` 200 throughout), reconnect every time, show the same agents under the same node ids,
and give back every task, socket and file descriptor when it stops.
"""

from __future__ import annotations

import asyncio
import gc
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from support.servicekit import eventually, running
from support.simkit import free_port, listening

from visionflow.mcp.endpoint import EndpointWatcher
from visionflow.mcpsim.server import Simulator

pytestmark = pytest.mark.anyio

RESTARTS = 20
#: Descriptors that may legitimately appear once per process (lazy caches), not per restart.
FD_TOLERANCE = 2


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def live_tasks(backend: str) -> Counter[str]:
    """Names of the tasks alive in this event loop (the test's own included).

    anyio names a task after its function (``visionflow.mcp.client.McpClient._read_loop``);
    tasks other libraries start without a name are ``Task-N`` on asyncio.
    """
    if backend == "asyncio":
        return Counter(t.get_name() for t in asyncio.all_tasks())
    import trio

    def walk(task: trio.lowlevel.Task) -> list[str]:
        names = [task.name]
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                names.extend(walk(child))
        return names

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return Counter(walk(root))


def mcp_tasks(names: Counter[str]) -> list[str]:
    return sorted(n for n in names.elements() if "visionflow.mcp." in n and "endpoint" not in n)


def config(tmp_path: Path, port: int, **mcp: Any) -> dict[str, Any]:
    return {
        "state": {"dir": str(tmp_path / "state"), "save_interval": 0.5},
        "mcp": {
            "backoff_initial": 0.05,
            "backoff_max": 0.2,
            "connect_timeout": 1.0,
            "call_timeout": 2.0,
            "breaker_threshold": 1000,
            **mcp,
            "endpoints": [{"name": "sim", "port": port, "poll_interval": 0.1}],
        },
    }


def seeded_simulator() -> Simulator:
    sim = Simulator(flavor="v2", tick_interval=0, autopilot=False)
    for kind in ("coordinator", "coder", "tester"):
        sim.model.spawn(kind, f"{kind}-soak")
    return sim


async def bots(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await client.get("/api/bots/data")
    assert r.status_code == 200, r.text
    return list(r.json()["agents"])


async def node_ids(client: httpx.AsyncClient, *, live: bool) -> dict[str, int] | None:
    """agent id -> flagged node id, once every listed agent has the wanted ``live``."""
    agents = await bots(client)
    if not agents or any(a["live"] is not live for a in agents):
        return None
    return {a["agent_id"]: a["id"] for a in agents}


class HealthWatch:
    """Polls /api/health and /readyz for the whole run; remembers anything not allowed."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.samples = 0
        self.bad: list[str] = []
        self.statuses: set[str] = set()

    async def run(self) -> None:
        while True:
            health = await self.client.get("/api/health")
            ready = await self.client.get("/readyz")
            self.samples += 1
            status = health.json()["status"]
            self.statuses.add(status)
            if health.status_code != 200 or status == "failing":
                self.bad.append(f"/api/health {health.status_code}: {health.text}")
            if ready.status_code != 200:
                self.bad.append(f"/readyz {ready.status_code}: {ready.text}")
            await anyio.sleep(0.05)


async def wait_down(watcher: EndpointWatcher, client: httpx.AsyncClient) -> None:
    await eventually(lambda: watcher.client is None, timeout=5)
    health = await client.get("/api/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "degraded"
    assert body["subsystems"]["mcp:sim"]["state"] == "backoff"
    assert (await client.get("/readyz")).status_code == 200


@dataclass
class Soak:
    """What the soak saw; holds no reference to the service, so it can all be collected."""

    fds: list[int] = field(default_factory=list)  # open descriptors while down, per restart
    tasks: list[int] = field(default_factory=list)  # live tasks while down, per restart
    last_tasks: Counter[str] = field(default_factory=Counter)
    health_samples: int = 0
    health_bad: list[str] = field(default_factory=list)
    health_statuses: set[str] = field(default_factory=set)


async def soak(tmp_path: Path, backend: str) -> Soak:
    seen = Soak()
    sim = seeded_simulator()
    port = free_port()
    async with (
        running(config(tmp_path, port)) as (svc, client),
        anyio.create_task_group() as tg,
    ):
        watcher = svc.ctx.watchers["sim"]
        monitor = HealthWatch(client)
        tg.start_soon(monitor.run)
        # Nothing listens yet: backoff, degraded, no crash.
        await eventually(lambda: watcher.status.last_error is not None, timeout=5)
        await wait_down(watcher, client)
        first: dict[str, int] | None = None
        for restart in range(RESTARTS):
            async with listening(sim, port):
                ids = await eventually(lambda: node_ids(client, live=True), timeout=5)
                if first is None:
                    first = ids
                    assert len(first) == 3
                    assert all(i & 0x80000000 for i in first.values())  # the agent flag
                assert ids == first, f"restart {restart}: node ids changed"
                assert watcher.status.connected
                health = (await client.get("/api/health")).json()
                assert health["status"] == "ok"
                assert health["subsystems"]["mcp:sim"]["detail"]["agents"] == 3
            await wait_down(watcher, client)
            # A dead server's agents stay, marked not live (in a worker thread, just after
            # health says so), under the same ids.
            assert await eventually(lambda: node_ids(client, live=False), timeout=5) == first
            # No session, reader or server-handler task outlives its connection.
            seen.last_tasks = live_tasks(backend)
            assert mcp_tasks(seen.last_tasks) == [], f"restart {restart}"
            seen.fds.append(open_fds())
            seen.tasks.append(sum(seen.last_tasks.values()))
        assert watcher.status.connects == RESTARTS
        assert sim.connections >= RESTARTS
        tg.cancel_scope.cancel()
    seen.health_samples = monitor.samples
    seen.health_bad = monitor.bad
    seen.health_statuses = monitor.statuses
    return seen


async def test_twenty_simulator_restarts_reconnect_without_leaks(
    tmp_path: Path, anyio_backend: str
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        # Recorded rather than raised: a ResourceWarning fires inside __del__, where raising
        # only prints "Exception ignored"; recording lets the assertion below name it.
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
        fds_before = open_fds()
        tasks_before = live_tasks(anyio_backend)
        with anyio.fail_after(60):
            seen = await soak(tmp_path, anyio_backend)
        assert seen.health_samples > RESTARTS
        assert seen.health_bad == []
        assert "degraded" in seen.health_statuses <= {"ok", "degraded"}
        # A leak per restart would add ten here. The slack is for what comes and goes on its
        # own: a second keep-alive HTTP connection (two tasks, one socket), the hub's frame
        # tasks once its numba warm-up ends.
        half = RESTARTS // 2
        assert seen.fds[-1] - seen.fds[half] <= 2, seen.fds
        assert seen.tasks[-1] - seen.tasks[half] <= 2, (seen.tasks, seen.last_tasks)
        # The service is gone and nothing refers to it: collect, then count.
        gc.collect()
        assert open_fds() - fds_before <= FD_TOLERANCE, (fds_before, open_fds())
        assert live_tasks(anyio_backend) == tasks_before
    leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaked == []


async def test_breaker_opens_in_a_long_outage_and_closes_on_return(
    tmp_path: Path, anyio_backend: str
) -> None:
    sim = seeded_simulator()
    port = free_port()
    raw = config(tmp_path, port, breaker_threshold=3, breaker_cooldown=0.5)
    with anyio.fail_after(30):
        async with running(raw) as (svc, client):
            watcher = svc.ctx.watchers["sim"]

            async def breaker() -> str:
                r = await client.get("/api/bots/status")
                return str(r.json()["endpoints"][0]["breaker"])

            async with listening(sim, port):
                first = await eventually(lambda: node_ids(client, live=True), timeout=5)
                assert await breaker() == "closed"
            # A long outage: consecutive failures open the breaker.
            await eventually(lambda: watcher.breaker.failures >= 3, timeout=5)
            await eventually(lambda: _is(breaker(), "open"), timeout=5)
            health = await client.get("/api/health")
            assert health.status_code == 200
            body = health.json()
            assert body["status"] == "degraded"
            assert body["subsystems"]["mcp:sim"]["detail"]["breaker"] in {"open", "half_open"}
            assert (await client.get("/readyz")).status_code == 200
            # While open, attempts are refused without touching the network: the probe that
            # follows each cool-down fails and opens it again, so it stays open or half-open.
            failures = watcher.breaker.failures
            await anyio.sleep(0.3)
            assert watcher.breaker.failures <= failures + 1
            async with listening(sim, port):
                # The next probe after the cool-down gets through and closes the breaker.
                again = await eventually(lambda: node_ids(client, live=True), timeout=5)
                assert again == first
                assert await breaker() == "closed"
                assert watcher.breaker.failures == 0
                assert (await client.get("/api/health")).json()["status"] == "ok"


async def _is(value: Any, wanted: str) -> bool:
    return bool(await value == wanted)
