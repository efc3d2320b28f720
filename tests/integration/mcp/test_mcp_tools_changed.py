"""``notifications/tools/list_changed``: the endpoint watcher re-reads the tool catalog.

The simulator is made to announce a changed catalog in the middle of a session; the watcher
must call ``tools/list`` again before its next poll and show the new tools, and not re-read the
catalog when nothing was announced.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from support.simkit import free_port, listening

from visionflow import settings as s
from visionflow.mcp.endpoint import TOOLS_CHANGED, EndpointWatcher
from visionflow.mcp.framing import RawMessage
from visionflow.mcp.rpc import Notification
from visionflow.mcpsim.server import Simulator
from visionflow.metrics import Metrics
from visionflow.supervisor import HealthRegistry

pytestmark = pytest.mark.anyio


class Announcer:
    """Wraps the simulator's dialect: counts ``tools/list`` and can announce a change."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.inner = sim.dialect.handle
        self.tools_lists = 0
        self.tool_calls = 0
        self.pending = False

    def __call__(self, msg: RawMessage) -> list[dict[str, Any]]:
        replies = self.inner(msg)
        if msg.method == "tools/list":
            self.tools_lists += 1
        if msg.method == "tools/call":
            self.tool_calls += 1
            if self.pending:
                # As a real server does: the notification rides along with other traffic.
                self.pending = False
                replies = [*replies, {"jsonrpc": "2.0", "method": TOOLS_CHANGED}]
        return replies


def make_watcher(port: int) -> tuple[EndpointWatcher, HealthRegistry]:
    settings = s.validate(
        {
            "mcp": {
                "backoff_initial": 0.05,
                "backoff_max": 0.2,
                "call_timeout": 2.0,
                # Slow polls: a refresh that comes within a fraction of this was brought forward.
                "endpoints": [{"name": "sim", "port": port, "poll_interval": 60.0}],
            }
        }
    )
    registry = HealthRegistry("t")
    watcher = EndpointWatcher(
        settings.mcp.endpoints[0],
        settings.mcp,
        registry.register("mcp:sim"),
        Metrics(),
        lambda name, agents, live: None,
    )
    return watcher, registry


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


@pytest.mark.parametrize("flavor", ["v2", "v3"])
async def test_list_changed_refreshes_the_catalog_before_the_next_poll(
    flavor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = Simulator(flavor=flavor, tick_interval=0, autopilot=False)  # type: ignore[arg-type]
    sim.model.spawn("coder", "c1")
    announcer = Announcer(sim)
    monkeypatch.setattr(sim.dialect, "handle", announcer)
    port = free_port()
    watcher, registry = make_watcher(port)
    async with anyio.create_task_group() as tg, listening(sim, port):
        await tg.start(watcher.run)
        await wait_for(lambda: watcher.status.connected and len(watcher.agents) == 1)
        assert announcer.tools_lists == 1  # the handshake's
        assert "vf_test_tool" not in watcher.status.tools
        # Nothing announced: polls call tools, never tools/list.
        watcher.poll_soon()
        calls = announcer.tool_calls
        await wait_for(lambda: announcer.tool_calls > calls)
        assert announcer.tools_lists == 1

        # The server gains a tool and says so.
        new_tools = {**sim.dialect.tools, "vf_test_tool": {"type": "object", "properties": {}}}
        monkeypatch.setattr(sim.dialect, "tools", new_tools)
        announcer.pending = True
        with anyio.fail_after(20):  # well within poll_interval: the refresh was brought forward
            watcher.poll_soon()
            await wait_for(lambda: "vf_test_tool" in watcher.status.tools)
        assert announcer.tools_lists == 2
        assert watcher.client is not None
        assert "vf_test_tool" in watcher.client.catalog
        assert registry.status() == "ok"
        assert watcher.status.connects == 1  # refreshed in place, no reconnect
        assert len(watcher.agents) == 1
        tg.cancel_scope.cancel()


async def test_other_notifications_do_not_refresh() -> None:
    watcher, _ = make_watcher(free_port())
    watcher._on_notification(Notification("notifications/progress", {"progress": 1}))
    watcher._on_notification(Notification("notifications/message", {"data": "x"}))
    assert not watcher._tools_stale
    watcher._on_notification(Notification(TOOLS_CHANGED, None))
    assert watcher._tools_stale
