"""The endpoint watcher over Streamable HTTP, against the simulator's HTTP mode on a real
hypercorn (``visionflow mcp-sim --http``): agents, drops, session expiry, tools/list_changed on
the GET stream, protocol versions; and a whole service showing it, secrets masked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from support.servicekit import eventually, running
from support.simkit import free_port

from visionflow import settings as s
from visionflow.errors import RpcTransportError
from visionflow.mcp.claudeflow import Agent
from visionflow.mcp.endpoint import TOOLS_CHANGED, EndpointWatcher
from visionflow.mcp.framing import RawMessage
from visionflow.mcp.http import connect_http_mcp
from visionflow.mcpsim.http import HttpSimulator, serve_asgi
from visionflow.mcpsim.server import Simulator
from visionflow.metrics import Metrics
from visionflow.supervisor import HealthRegistry

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

TOKEN = "bearer-s3cret-value"


def watcher_for(
    url: str, **endpoint: Any
) -> tuple[EndpointWatcher, HealthRegistry, list[list[Agent]]]:
    settings = s.validate(
        {
            "mcp": {
                "backoff_initial": 0.05,
                "backoff_max": 0.2,
                "breaker_threshold": 50,
                "call_timeout": 5.0,
                "endpoints": [{"name": "sim", "url": url, "poll_interval": 0.1, **endpoint}],
            }
        }
    )
    registry = HealthRegistry("t")
    updates: list[list[Agent]] = []
    watcher = EndpointWatcher(
        settings.mcp.endpoints[0],
        settings.mcp,
        registry.register("mcp:sim"),
        Metrics(),
        lambda name, agents, live: updates.append(agents),
    )
    return watcher, registry, updates


async def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


@asynccontextmanager
async def http_sim(app: HttpSimulator, port: int) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        await tg.start(serve_asgi, app, "127.0.0.1", port)
        yield
        tg.cancel_scope.cancel()


def swarm(flavor: str = "v2") -> Simulator:
    sim = Simulator(flavor=flavor, tick_interval=0, autopilot=False)  # type: ignore[arg-type]
    sim.model.spawn("coder", "c1")
    sim.model.spawn("tester", "t1")
    return sim


@pytest.mark.parametrize("sse", [False, True])
async def test_agents_over_http_and_back_after_the_server_drops(sse: bool) -> None:
    sim = swarm("v3")
    app = HttpSimulator(sim, sse=sse)
    port = free_port()
    watcher, registry, _ = watcher_for(f"http://127.0.0.1:{port}/mcp")
    assert watcher.status.transport == "http"
    async with anyio.create_task_group() as tg:
        await tg.start(watcher.run)
        # nothing listens yet: backoff, degraded, no crash
        await wait_for(lambda: watcher.status.last_error is not None)
        assert "POST failed" in watcher.status.last_error
        assert watcher.status.state == "backoff"
        assert registry.status() == "degraded"
        for round_ in (1, 2):
            async with http_sim(app, port):
                await wait_for(lambda: watcher.client is not None and len(watcher.agents) == 2)
                assert watcher.status.state == "connected"
                assert watcher.status.protocol_version == "2024-11-05"  # what the sim speaks
                assert registry.status() == "ok"
                sim.model.spawn("reviewer", f"r{round_}")
                await wait_for(lambda: len(watcher.agents) == 3)
                sim.model.terminate(
                    next(a.id for a in sim.model.agents.values() if a.name == f"r{round_}")
                )
                await wait_for(lambda: len(watcher.agents) == 2)
            # the server is gone: degraded and retried, its agents not shown as live
            await wait_for(lambda: watcher.client is None)
            assert watcher.agents == []
            await wait_for(lambda: watcher.status.state == "backoff")
            assert registry.status() == "degraded"
        assert watcher.status.connects == 2
        tg.cancel_scope.cancel()


async def test_an_expired_session_is_replaced_at_once() -> None:
    app = HttpSimulator(swarm())
    port = free_port()
    watcher, _, _ = watcher_for(f"http://127.0.0.1:{port}/mcp")
    async with anyio.create_task_group() as tg, http_sim(app, port):
        await tg.start(watcher.run)
        await wait_for(lambda: watcher.status.connects == 1 and watcher.status.last_poll)
        (first,) = app.sessions
        app.sessions.clear()  # the server forgets it (a restart behind a balancer, say)
        await wait_for(lambda: watcher.status.connects == 2 and watcher.client is not None)
        assert list(app.sessions) != [first]
        tg.cancel_scope.cancel()
    assert app.deletes == 1  # the watcher's session was ended when it stopped


async def test_tools_list_changed_arrives_on_the_get_stream() -> None:
    sim = swarm()
    app = HttpSimulator(sim)
    lists = 0
    inner = sim.dialect.handle

    def counting(msg: RawMessage) -> list[dict[str, Any]]:
        nonlocal lists
        lists += msg.method == "tools/list"
        return inner(msg)

    sim.dialect.handle = counting  # type: ignore[method-assign]
    port = free_port()
    watcher, _, _ = watcher_for(f"http://127.0.0.1:{port}/mcp", poll_interval=60.0)
    async with anyio.create_task_group() as tg, http_sim(app, port):
        await tg.start(watcher.run)
        await wait_for(lambda: watcher.status.last_poll is not None and len(app.sessions) == 1)
        await anyio.sleep(0.3)  # the GET stream opens after the handshake
        before = lists
        (session,) = app.sessions.values()
        session.queue({"jsonrpc": "2.0", "method": TOOLS_CHANGED})
        # re-read long before the 60 s poll interval: it came on the GET stream
        await wait_for(lambda: lists > before, timeout=10)
        tg.cancel_scope.cancel()


async def test_a_server_speaking_an_unknown_version_is_shown_as_such(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = swarm()
    inner = sim.dialect.handle

    def future(msg: RawMessage) -> list[dict[str, Any]]:
        replies = inner(msg)
        if msg.method == "initialize":
            replies[0]["result"]["protocolVersion"] = "2099-01-01"
        return replies

    monkeypatch.setattr(sim.dialect, "handle", future)
    port = free_port()
    watcher, registry, _ = watcher_for(f"http://127.0.0.1:{port}/mcp")
    async with anyio.create_task_group() as tg, http_sim(HttpSimulator(sim), port):
        await tg.start(watcher.run)
        await wait_for(lambda: watcher.status.state == "unsupported_version")
        doc = watcher.status.as_json()
        assert doc["server"]["protocol_version"] == "2099-01-01"
        assert "2099-01-01" in doc["last_error"] and "2025-06-18" in doc["last_error"]
        assert not doc["connected"] and registry.status() == "degraded"
        tg.cancel_scope.cancel()


async def test_a_tcp_endpoint_pointed_at_an_http_server_says_so() -> None:
    port = free_port()
    settings = s.validate(
        {
            "mcp": {
                "backoff_initial": 0.05,
                "backoff_max": 0.2,
                "endpoints": [{"name": "x", "port": port}],
            }
        }
    )
    watcher = EndpointWatcher(
        settings.mcp.endpoints[0],
        settings.mcp,
        HealthRegistry("t").register("mcp:x"),
        Metrics(),
        lambda name, agents, live: None,
    )
    async with anyio.create_task_group() as tg, http_sim(HttpSimulator(swarm()), port):
        await tg.start(watcher.run)
        await wait_for(lambda: watcher.status.last_error is not None)
        assert 'HTTP server takes url = "http://host:port/mcp"' in watcher.status.last_error
        tg.cancel_scope.cancel()


async def test_a_service_shows_an_http_endpoint_with_its_secrets_masked(tmp_path: Path) -> None:
    app = HttpSimulator(swarm())
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp?api_key=k-{TOKEN}"
    raw = {
        "state": {"dir": str(tmp_path / "state")},
        "mcp": {
            "endpoints": [
                {
                    "name": "web",
                    "url": url,
                    "headers": {"Authorization": f"Bearer {TOKEN}"},
                    "poll_interval": 0.2,
                }
            ]
        },
    }
    async with http_sim(app, port), running(raw) as (_, client):
        await eventually(lambda: client.get("/api/bots/status"), timeout=1)  # served at all

        async def connected() -> dict[str, Any] | None:
            ep = (await client.get("/api/bots/status")).json()["endpoints"][0]
            return ep if ep["connected"] and ep["agents"] == 2 else None

        ep = await eventually(connected, timeout=30)
        assert ep["transport"] == "http" and ep["state"] == "connected"
        assert ep["server"]["protocol_version"] == "2024-11-05"
        assert ep["target"] == f"http://127.0.0.1:{port}/mcp?api_key=***"
        agents = (await client.get("/api/bots/data")).json()["agents"]
        assert len(agents) == 2
        for path in ("/api/bots/status", "/api/settings", "/api/health"):
            assert TOKEN not in (await client.get(path)).text, path
        shown = (await client.get("/api/settings")).json()["settings"]["mcp"]["endpoints"][0]
        assert shown["headers"] == {"Authorization": "***"}


async def test_a_post_answered_with_no_reply_fails_at_once_saying_so() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b"null"})

    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_asgi, app, "127.0.0.1", 0)
        started = anyio.current_time()
        with pytest.raises(RpcTransportError) as info:
            # it waited out the whole call_timeout, then said "initialize got no answer"
            async with connect_http_mcp(f"http://127.0.0.1:{port}/mcp", call_timeout=60):
                pass  # pragma: no cover
        assert "holding no reply to it" in str(info.value)
        assert anyio.current_time() - started < 30
        tg.cancel_scope.cancel()
