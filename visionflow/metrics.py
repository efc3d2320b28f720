"""Prometheus metrics (names are a stable interface: docs/operations.md, "Metrics").

Each service instance owns its own CollectorRegistry so tests can run several side by side.
Every labelled series exists (at 0) before its first event: an alert or a ``rate()`` over a
series that appears only when something goes wrong sees nothing at the first occurrence.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

import anyio
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from visionflow import __version__

CONTENT_TYPE = CONTENT_TYPE_LATEST

# No ``*_created`` series: Prometheus stores each as one more series per labelled counter and
# nothing here reads them; without them a scrape is a quarter shorter (process-wide setting).
disable_created_metrics()  # type: ignore[no-untyped-call]

# Step times span 0.1 ms (tiny graphs) to seconds (a huge graph on a busy CPU).
_STEP_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.033, 0.066, 0.1, 0.25, 0.5, 1.0, 2.5)
# A local service: most answers take a millisecond or two, a large import or export seconds.
HTTP_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# How late the loop runs a timer: under a millisecond when idle, 100 ms is a stall viewers see.
LOOP_LAG_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: How often the event loop's lag is sampled (seconds).
LOOP_LAG_INTERVAL_S: Final = 0.25

#: Subsystem states (supervisor.ChildState), one series each per subsystem.
SUBSYSTEM_STATES: Final = ("starting", "running", "backoff", "failed", "stopped")
#: Close codes the server ends a viewer's connection with (protocol/wire.py): idle, shutdown,
#: policy (message or drag rate), too big, internal error, try again (lagging, not reading, full).
VIEWER_CLOSE_CODES: Final = ("1000", "1001", "1008", "1009", "1011", "1013")
#: Close codes an upgrade is refused with: policy (Host/Origin), try again (full, or per
#: client), bad parameter, bad token; 1001 while shutting down.
VIEWER_REFUSE_CODES: Final = ("1001", "1008", "1013", "4400", "4401")
#: The route label of a request no route matched (404s, refusals of unknown paths).
UNMATCHED_ROUTE: Final = "(unmatched)"
#: Methods kept as they are in the ``method`` label; any other is ``OTHER`` (bounded labels).
HTTP_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Status classes every (route, method) series is created with.
STATUS_CLASSES: Final = ("2xx", "4xx", "5xx")


def status_class(status: int) -> str:
    """``404`` -> ``"4xx"``: the ``status`` label (bounded; the log has the exact status)."""
    return f"{status // 100}xx"


def method_label(method: str) -> str:
    return method if method in HTTP_METHODS else "OTHER"


class Metrics:
    def __init__(self, version: str = __version__) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        # process_* (CPU, memory, descriptors, start time), python_gc_*, python_info
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        PlatformCollector(registry=r)
        Info("visionflow_build", "Version of the running service", registry=r).info(
            {"version": version, "python": platform.python_version()}
        )
        Gauge("visionflow_threads", "Live Python threads", registry=r).set_function(
            threading.active_count
        )
        self.event_loop_lag = Histogram(
            "visionflow_event_loop_lag_seconds",
            f"How late a {LOOP_LAG_INTERVAL_S:g} s timer on the event loop fires",
            registry=r,
            buckets=LOOP_LAG_BUCKETS,
        )
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
        self.subsystem_state = Gauge(
            "visionflow_subsystem_state",
            "1 for the state the subsystem is in, 0 for the others",
            ["subsystem", "state"],
            registry=r,
        )
        self.subsystem_degraded = Gauge(
            "visionflow_subsystem_degraded",
            "1 when the subsystem flags itself degraded in its health detail",
            ["subsystem"],
            registry=r,
        )
        self.ready = Gauge("visionflow_ready", "1 when /readyz answers 200", registry=r)
        self.layout_save_failures = Gauge(
            "visionflow_layout_save_failures",
            "Consecutive failed layout saves (0 once a save works)",
            registry=r,
        )
        self.graph_save_failures = Counter(
            "visionflow_graph_save_failures",
            "Imports applied but not saved to state.dir",
            registry=r,
        )
        self.physics_step_budget = Gauge(
            "visionflow_physics_step_budget_seconds",
            "Time one physics step may take: 1 / physics.rate_hz",
            registry=r,
        )
        self.viewers_closed = Counter(
            "visionflow_viewers_closed",
            "Viewer connections the server closed, by close code",
            ["code"],
            registry=r,
        )
        self.viewers_refused = Counter(
            "visionflow_viewers_refused",
            "WebSocket upgrades refused, by close code",
            ["code"],
            registry=r,
        )
        for code in VIEWER_CLOSE_CODES:
            self.viewers_closed.labels(code=code)
        for code in VIEWER_REFUSE_CODES:
            self.viewers_refused.labels(code=code)
        self.http_requests = Counter(
            "visionflow_http_requests",
            "HTTP requests answered, by route template, method and status class",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "visionflow_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by route template",
            ["route"],
            registry=r,
            buckets=HTTP_BUCKETS,
        )
        self.http_in_flight = Gauge(
            "visionflow_http_requests_in_flight", "HTTP requests being answered", registry=r
        )
        self.ws_upgrades = Counter(
            "visionflow_websocket_upgrades",
            "WebSocket upgrade requests (not counted in visionflow_http_requests)",
            ["route"],
            registry=r,
        )
        # (route, method, status class) -> its counter and histogram: labels() is the costly part
        self._http_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.init_routes(UNMATCHED_ROUTE, ["GET"], websocket=False, classes=("4xx",))

    def on_restart(self, name: str) -> None:
        self.subsystem_restarts.labels(subsystem=name).inc()

    def observe_subsystems(
        self, states: Mapping[str, str], details: Mapping[str, Mapping[str, Any]] | None = None
    ) -> None:
        """Per registered subsystem (name -> state, and its health detail): up, state, degraded,
        and its restart count (at 0 before the first restart). The ``layout`` detail's
        ``failures`` is the layout saver's count of consecutive failed saves.
        """
        details = details or {}
        for name, state in states.items():
            self.subsystem_up.labels(subsystem=name).set(1 if state == "running" else 0)
            for each in SUBSYSTEM_STATES:
                self.subsystem_state.labels(subsystem=name, state=each).set(
                    1 if state == each else 0
                )
            detail = details.get(name, {})
            self.subsystem_degraded.labels(subsystem=name).set(1 if detail.get("degraded") else 0)
            self.subsystem_restarts.labels(subsystem=name)
        failures = details.get("layout", {}).get("failures", 0)
        self.layout_save_failures.set(failures if isinstance(failures, int) else 0)

    def init_routes(
        self,
        route: str,
        methods: Iterable[str],
        *,
        websocket: bool,
        classes: Iterable[str] = STATUS_CLASSES,
    ) -> None:
        """Create a route's series at 0: its upgrade counter, or its request counters (each
        method by each status class) and its latency histogram."""
        if websocket:
            self.ws_upgrades.labels(route=route)
            return
        classes = tuple(classes)
        for method in methods:
            for status in classes:
                self.http_requests.labels(route=route, method=method_label(method), status=status)
        self.http_duration.labels(route=route)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method_label(method)
        key = (route, method, status // 100)
        children = self._http_children.get(key)
        if children is None:  # bounded: routes x methods (OTHER for the rest) x classes
            counter = self.http_requests.labels(
                route=route, method=method, status=status_class(status)
            )
            children = self._http_children[key] = (counter, self.http_duration.labels(route=route))
        children[0].inc()
        children[1].observe(seconds)

    async def watch_event_loop(self, interval: float = LOOP_LAG_INTERVAL_S) -> None:
        """Sample how late the event loop wakes a timer, until cancelled (started by the
        service in its task group). Wall time, not the loop's clock: a stall is real time."""
        while True:
            started = time.perf_counter()
            await anyio.sleep(interval)
            self.event_loop_lag.observe(max(0.0, time.perf_counter() - started - interval))

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
