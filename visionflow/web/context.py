"""What request handlers may reach: live settings, health, metrics and the subsystems."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from visionflow.live_settings import LiveSettings
from visionflow.metrics import Metrics
from visionflow.supervisor import HealthRegistry


@dataclass
class ServiceContext:
    live: LiveSettings
    registry: HealthRegistry
    metrics: Metrics


def context_of(conn: HTTPConnection) -> ServiceContext:
    ctx = conn.app.state.ctx
    assert isinstance(ctx, ServiceContext)
    return ctx
