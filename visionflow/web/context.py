"""What request handlers may reach: live settings, health, metrics and the subsystems.

It is also where changes meet: an agent poll or an import updates the store, wakes the
physics engine and tells every viewer (``graph_changed``, ``agents``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from visionflow.graph.agents import AgentGraph
from visionflow.graph.store import GraphStore
from visionflow.live_settings import LiveSettings
from visionflow.mcp.claudeflow import Agent
from visionflow.mcp.endpoint import EndpointWatcher
from visionflow.metrics import Metrics
from visionflow.protocol.messages import Agents, GraphChanged
from visionflow.supervisor import HealthRegistry

if TYPE_CHECKING:
    from visionflow.physics.engine import PhysicsEngine
    from visionflow.web.hub import Hub


@dataclass
class ServiceContext:
    live: LiveSettings
    registry: HealthRegistry
    metrics: Metrics
    store: GraphStore
    agents: AgentGraph
    watchers: dict[str, EndpointWatcher] = field(default_factory=dict)
    engine: PhysicsEngine | None = None
    hub: Hub | None = None
    _announced_revision: int = -1

    def announce_graph_changed(self) -> None:
        """Tell viewers the topology changed (once per revision)."""
        revision = self.store.revision
        if revision == self._announced_revision:
            return
        self._announced_revision = revision
        if self.hub is not None:
            self.hub.publish(GraphChanged(revision=revision))

    def on_agents(self, endpoint: str, agents: list[Agent], live: bool) -> None:
        """An endpoint watcher's report: update the graph, wake physics, tell viewers."""
        if not self.agents.update(endpoint, agents, live):
            return
        if self.engine is not None:
            self.engine.wake()
        self.announce_graph_changed()
        if self.hub is not None:
            self.hub.publish(Agents(agents=self.agents.agents_json(endpoint)))


def context_of(conn: HTTPConnection) -> ServiceContext:
    ctx = conn.app.state.ctx
    assert isinstance(ctx, ServiceContext)
    return ctx
