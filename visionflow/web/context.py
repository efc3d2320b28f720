"""What request handlers may reach: live settings, health, metrics and the subsystems.

Fully built before anything runs (the service makes the engine, the hub and the graph-change
handler first), so nothing in it is optional. Changes to the graph go through ``changes``
(:class:`~visionflow.changes.GraphChanges`), never straight to the store and the hub.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from visionflow.changes import GraphChanges
from visionflow.graph.agents import AgentGraph
from visionflow.graph.store import GraphStore
from visionflow.live_settings import LiveSettings
from visionflow.mcp.endpoint import EndpointWatcher
from visionflow.metrics import Metrics
from visionflow.physics.engine import PhysicsEngine
from visionflow.supervisor import HealthRegistry
from visionflow.web.singleflight import OneAtATime, SingleFlight


@dataclass
class Foundations:
    """What every part reads: live settings, health and metrics (the hub's ``HubContext``)."""

    live: LiveSettings
    registry: HealthRegistry
    metrics: Metrics


@dataclass
class ServiceContext(Foundations):
    store: GraphStore
    agents: AgentGraph
    engine: PhysicsEngine
    changes: GraphChanges
    watchers: dict[str, EndpointWatcher] = field(default_factory=dict)
    exports: SingleFlight = field(default_factory=SingleFlight)  # GET /api/graph/export
    imports: OneAtATime = field(default_factory=OneAtATime)  # POST /api/graph/import


def foundations_of(conn: HTTPConnection) -> Foundations:
    """What every app has, the service's and a relay's (``visionflow relay``) alike."""
    ctx = conn.app.state.ctx
    assert isinstance(ctx, Foundations)
    return ctx


def context_of(conn: HTTPConnection) -> ServiceContext:
    ctx = conn.app.state.ctx
    assert isinstance(ctx, ServiceContext)
    return ctx
