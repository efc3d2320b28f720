"""The cluster's Prometheus series, registered on the process's own registry
(``Metrics.registry``; names in docs/cluster.md)."""

from __future__ import annotations

from typing import Literal

from prometheus_client import Counter, Gauge, Histogram

from visionflow.metrics import Metrics

# Encoding a tick's frame: ~0.1 ms for a small graph to ~10 ms for 100k nodes.
_ENCODE_BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)


class ClusterMetrics:
    """The series of one side: a relay does not expose the publisher's (they stayed at 0 there)
    nor the service the relay's; each known label value exists at 0 from the start, so that
    ``rate()`` and ``increase()`` see the first drop or gap."""

    def __init__(self, metrics: Metrics, role: Literal["service", "relay"]) -> None:
        shared = metrics.registry
        # the other side's series are made but not registered: the code stays one
        r = shared if role == "service" else None
        relay = shared if role == "relay" else None
        self.connected = Gauge(
            "visionflow_cluster_connected", "1 while connected to the NATS broker", registry=shared
        )
        self.frames_published = Counter(
            "visionflow_cluster_frames_published",
            "Frames published to NATS, by kind",
            ["kind"],
            registry=r,
        )
        self.bytes_published = Counter(
            "visionflow_cluster_bytes_published", "Frame bytes published to NATS", registry=r
        )
        self.frames_dropped = Counter(
            "visionflow_cluster_frames_dropped",
            "Ticks not published (broker away, publish failed, frame over max_payload)",
            ["reason"],
            registry=r,
        )
        self.control_dropped = Counter(
            "visionflow_cluster_control_dropped",
            "Control messages not published (broker away or cluster.max_pending full)",
            registry=r,
        )
        self.encode_seconds = Histogram(
            "visionflow_cluster_encode_seconds",
            "Publisher time per tick: choosing and encoding the frame",
            registry=r,
            buckets=_ENCODE_BUCKETS,
        )
        self.frames_received = Counter(
            "visionflow_cluster_frames_received",
            "Frames a relay read from NATS, by outcome (keyframe, delta, gap, stale, bad, late)",
            ["outcome"],
            registry=relay,
        )
        self.requests = Counter(
            "visionflow_cluster_requests",
            "Drag and API requests between relays and the simulation, by kind and result",
            ["rpc", "result"],
            registry=shared,
        )
        for kind in ("keyframe", "delta"):
            self.frames_published.labels(kind=kind)
        for reason in ("broker_away", "broker", "too_large"):
            self.frames_dropped.labels(reason=reason)
        for outcome in ("keyframe", "delta", "gap", "stale", "bad", "late"):
            self.frames_received.labels(outcome=outcome)
        for rpc in ("pins", "api"):
            self.requests.labels(rpc=rpc, result="ok" if rpc == "pins" else "200")
            if role == "relay":
                for failed in ("timeout", "unavailable"):
                    self.requests.labels(rpc=rpc, result=failed)
