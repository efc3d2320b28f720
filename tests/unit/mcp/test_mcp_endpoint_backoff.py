"""Reconnect backoff and circuit breaker timing of the endpoint watcher, under MockClock."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from support.clock import anyio_backend  # noqa: F401  (every test here runs on trio's MockClock)

from visionflow import settings as s
from visionflow.errors import GraphError, RpcRemoteError, RpcTransportError
from visionflow.mcp.claudeflow import Agent
from visionflow.mcp.endpoint import REFUSED_POLLS_DOWN, EndpointWatcher
from visionflow.metrics import Metrics
from visionflow.supervisor import HealthRegistry


def make_watcher(**mcp: Any) -> tuple[EndpointWatcher, HealthRegistry, list[float]]:
    settings = s.validate({"mcp": {**mcp, "endpoints": [{"name": "down", "port": 9500}]}})
    registry = HealthRegistry("t")
    watcher = EndpointWatcher(
        settings.mcp.endpoints[0],
        settings.mcp,
        registry.register("mcp:down"),
        Metrics(),
        lambda name, agents, live: None,
    )
    attempts: list[float] = []

    @asynccontextmanager
    async def refuse() -> AsyncIterator[Any]:
        attempts.append(anyio.current_time())
        raise RpcTransportError("127.0.0.1:9500: connect failed: connection refused")
        yield  # pragma: no cover

    watcher._open = refuse  # type: ignore[method-assign]
    return watcher, registry, attempts


def quiet_watcher(
    endpoint: dict[str, Any], metrics: Metrics | None = None
) -> tuple[EndpointWatcher, HealthRegistry]:
    """A watcher of ``endpoint`` (named "ep") whose agents go nowhere, and its registry."""
    settings = s.validate({"mcp": {"endpoints": [{"name": "ep", **endpoint}]}})
    registry = HealthRegistry("t")
    watcher = EndpointWatcher(
        settings.mcp.endpoints[0],
        settings.mcp,
        registry.register("mcp:ep"),
        metrics or Metrics(),
        lambda name, agents, live: None,
    )
    return watcher, registry


@pytest.mark.anyio
async def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    watcher, registry, attempts = make_watcher(
        backoff_initial=1.0, backoff_max=8.0, breaker_threshold=1000
    )
    async with anyio.create_task_group() as tg:
        await tg.start(watcher.run)
        await anyio.sleep(60)
        tg.cancel_scope.cancel()
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(gaps) >= 6
    for i, gap in enumerate(gaps[:6]):
        base = min(8.0, 2.0**i)
        assert base - 1e-6 <= gap <= min(8.0, base + 1.0) + 1e-6, (i, gap)
    assert all(gap <= 8.0 + 1e-6 for gap in gaps)
    sub = registry.subsystems["mcp:down"]
    assert sub.state == "backoff"
    assert sub.last_error is not None and "connection refused" in sub.last_error
    assert registry.status() == "degraded"


@pytest.mark.anyio
async def test_breaker_opens_after_threshold_and_probes_once_per_cooldown() -> None:
    watcher, registry, attempts = make_watcher(
        backoff_initial=1.0, backoff_max=2.0, breaker_threshold=3, breaker_cooldown=30.0
    )
    async with anyio.create_task_group() as tg:
        await tg.start(watcher.run)
        await anyio.sleep(5)
        assert len(attempts) == 3  # at 0, ~1-2, ~3-5: then the breaker opened
        assert registry.subsystems["mcp:down"].detail["breaker"] == "open"
        await anyio.sleep(100)
        tg.cancel_scope.cancel()
    # after opening: one probe every cooldown, each failing and re-opening the breaker
    probes = attempts[3:]
    assert len(probes) == 3
    assert probes[0] - attempts[2] == pytest.approx(30.0)
    assert probes[1] - probes[0] == pytest.approx(30.0)
    assert watcher.breaker.failures == len(attempts)


@pytest.mark.anyio
async def test_an_endpoint_shows_at_most_max_agents_per_endpoint() -> None:
    # A server listing 60k agents that change every poll once held the loop for seconds and
    # sent every viewer the whole list on each change: the cap bounds what one endpoint shows.
    settings = s.validate(
        {"mcp": {"max_agents_per_endpoint": 3, "endpoints": [{"name": "big", "port": 9500}]}}
    )
    registry = HealthRegistry("t")
    reported: list[list[str]] = []
    watcher = EndpointWatcher(
        settings.mcp.endpoints[0],
        settings.mcp,
        registry.register("mcp:big"),
        Metrics(),
        lambda name, agents, live: reported.append([a.id for a in agents]),
    )
    many = [Agent(id=f"a{i}") for i in range(5)]
    await watcher._set_agents(many)
    assert reported == [["a0", "a1", "a2"]]  # the first ones the server listed
    health = registry.get("mcp:big")
    assert health is not None and health.detail["agents_listed"] == 5
    assert health.detail["degraded"] is True  # not everything is on screen: said so
    await watcher._set_agents(many[:2])
    assert reported[-1] == ["a0", "a1"]
    assert "agents_listed" not in health.detail and "degraded" not in health.detail


@pytest.mark.anyio
async def test_a_busy_graph_defers_the_agents_to_the_next_poll_quietly() -> None:
    settings = s.validate({"mcp": {"endpoints": [{"name": "ep", "port": 9500}]}})
    registry = HealthRegistry("t")
    busy = [True]
    applied: list[list[str]] = []

    def on_agents(name: str, agents: list[Agent], live: bool) -> None:
        if busy[0]:
            raise GraphError("graph_busy", "the graph is being changed; applied at the next poll")
        applied.append([a.id for a in agents])

    watcher = EndpointWatcher(
        settings.mcp.endpoints[0], settings.mcp, registry.register("mcp:ep"), Metrics(), on_agents
    )
    agents = [Agent(id="a")]
    await watcher._set_agents(agents)
    assert applied == [] and watcher.agents == [] and watcher.status.last_error is None
    busy[0] = False
    await watcher._set_agents(agents)  # the next poll, same list: applied now
    assert applied == [["a"]] and watcher.agents == agents


@pytest.mark.anyio
async def test_agents_lost_with_the_link_are_reported_as_none_at_once() -> None:
    metrics = Metrics()
    watcher, registry = quiet_watcher({"port": 9500}, metrics)
    await watcher._set_agents([Agent(id="a"), Agent(id="b")])
    gauge = metrics.mcp_agents.labels(endpoint="ep")
    assert gauge._value.get() == 2
    await watcher._lost_agents()
    # it stayed 2 until the next connection attempt: at once for a refused one (0), but a hung
    # server's attempt takes call_timeout, so the two failures showed different counts
    assert gauge._value.get() == 0
    health = registry.get("mcp:ep")
    assert health is not None and health.detail["agents"] == 0


class Refusing:
    """A client whose server keeps answering agent_list with a JSON-RPC error."""

    def __init__(self) -> None:
        self.catalog = type("Catalog", (), {"names": frozenset({"agent_list"})})()
        self.refuse = True

    async def list_agents(self) -> list[Agent]:
        if self.refuse:
            raise RpcRemoteError(-32603, "database locked")
        return [Agent(id="a")]


@pytest.mark.anyio
async def test_polls_refused_again_and_again_count_as_the_link_down() -> None:
    watcher, _ = quiet_watcher({"port": 9500})
    client: Any = Refusing()
    for _ in range(REFUSED_POLLS_DOWN - 1):  # one refusal, or two, keep the link
        await watcher._poll(client)
        assert watcher.status.last_error == "remote error -32603: database locked"
    # the link stayed "connected", its agents live and health ok for as long as it refused
    with pytest.raises(RpcTransportError, match="3 polls in a row refused"):
        await watcher._poll(client)
    client.refuse = False
    await watcher._poll(client)  # a good poll starts the count again
    client.refuse = True
    await watcher._poll(client)
    assert watcher._refused == 1


@pytest.mark.anyio
async def test_a_launched_servers_error_is_masked_where_its_command_line_is() -> None:
    watcher, registry = quiet_watcher(
        {
            "command": "/opt/tools/run-with-key-sk-LEAK1",
            "args": ["--key", "sk-LEAK2"],
            "cwd": "/home/alice/clients/sk-LEAK3",
        }
    )
    watcher.status.last_error = (
        "ep: cannot start '/opt/tools/run-with-key-sk-LEAK1': [Errno 2] No such file or "
        "directory: '/home/alice/clients/sk-LEAK3'"
    )
    watcher._publish()
    health = registry.get("mcp:ep")
    assert health is not None and "LEAK" not in str(health.last_error)  # /api/health: public
    assert health.last_error == (
        "ep: cannot start '***': [Errno 2] No such file or directory: '***'"
    )
    watcher.status.last_error = (
        "ep (pid 7): the server process exited with status 3 (stderr: secret=hunter2 | bye)"
    )
    assert watcher.public_error() == (
        "ep (pid 7): the server process exited with status 3 (stderr: shown with the token)"
    )
    assert "hunter2" in str(watcher.status.last_error)  # kept whole for /api/bots/status
