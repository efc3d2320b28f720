"""Prometheus metrics (names are a stable interface: docs/operations.md section 6).

Each service instance owns its own CollectorRegistry so tests can run several side by side.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Step times span 0.1 ms (tiny graphs) to seconds (a huge graph on a busy CPU).
_STEP_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.033, 0.066, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.physics_step_seconds = Histogram(
            "visionflow_physics_step_seconds",
            "Wall time of one physics step",
            registry=r,
            buckets=_STEP_BUCKETS,
        )
        self.physics_nodes = Gauge(
            "visionflow_physics_nodes", "Nodes in the simulation", registry=r
        )
        self.physics_edges = Gauge(
            "visionflow_physics_edges", "Edges in the simulation", registry=r
        )
        self.physics_nonfinite_resets = Counter(
            "visionflow_physics_nonfinite_resets",
            "Nodes re-seeded after turning non-finite",
            registry=r,
        )
        self.frames_sent = Counter("visionflow_frames_sent", "Frames sent to viewers", registry=r)
        self.frames_dropped = Counter(
            "visionflow_frames_dropped",
            "Frames replaced by a newer one before being sent",
            registry=r,
        )
        self.bytes_sent = Counter("visionflow_bytes_sent", "Bytes sent to viewers", registry=r)
        self.ws_connections = Gauge(
            "visionflow_ws_connections", "Open viewer WebSockets", registry=r
        )
        self.mcp_connected = Gauge(
            "visionflow_mcp_connected",
            "1 when the MCP endpoint is connected",
            ["endpoint"],
            registry=r,
        )
        self.mcp_agents = Gauge(
            "visionflow_mcp_agents", "Agents reported by the MCP endpoint", ["endpoint"], registry=r
        )
        self.subsystem_restarts = Counter(
            "visionflow_subsystem_restarts",
            "Restarts of a supervised subsystem",
            ["subsystem"],
            registry=r,
        )
        self.subsystem_up = Gauge(
            "visionflow_subsystem_up", "1 when the subsystem is running", ["subsystem"], registry=r
        )

    def on_restart(self, name: str) -> None:
        self.subsystem_restarts.labels(subsystem=name).inc()

    def observe_subsystems(self, states: Mapping[str, str]) -> None:
        """Per registered subsystem (name -> state): up, and its restart count.

        Each restart counter exists at 0 before the first restart: ``rate()`` and alerts over a
        series that is missing until something goes wrong see nothing at the first one.
        """
        for name, state in states.items():
            self.subsystem_up.labels(subsystem=name).set(1 if state == "running" else 0)
            self.subsystem_restarts.labels(subsystem=name)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
