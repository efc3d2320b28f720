"""The service in-process, with a real hypercorn on an ephemeral port, on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from visionflow import settings as s
from visionflow.service import Service


@pytest.fixture
async def service(anyio_backend: str, tmp_path: Path) -> AsyncIterator[Service]:
    settings = s.validate(
        {"server": {"port": 0, "shutdown_grace": 2.0}, "state": {"dir": str(tmp_path)}}
    )
    svc = Service(settings)
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(10):
            await tg.start(svc.run)
        yield svc
        svc.request_stop()
        with anyio.fail_after(5):
            while svc.ctx.registry.get("http").state != "stopped":  # type: ignore[union-attr]
                await anyio.sleep(0.01)


@pytest.fixture
async def client(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=str(service.http.url), timeout=5) as c:
        yield c


@pytest.mark.anyio
async def test_health_endpoints(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json() == {"ready": True, "reasons": []}
    r = await client.get("/api/health")
    body = r.json()
    assert r.status_code == 200
    assert body["status"] == "ok"
    assert body["version"]
    assert body["uptime_s"] >= 0
    assert body["subsystems"]["http"] == {
        "state": "running",
        "restarts": 0,
        "last_error": None,
        "detail": {},
    }


@pytest.mark.anyio
async def test_metrics_exposes_the_agreed_names(client: httpx.AsyncClient) -> None:
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    for name in [
        "visionflow_physics_step_seconds_bucket",
        "visionflow_physics_nodes",
        "visionflow_physics_edges",
        "visionflow_physics_nonfinite_resets_total",
        "visionflow_frames_sent_total",
        "visionflow_frames_dropped_total",
        "visionflow_bytes_sent_total",
        "visionflow_ws_connections",
    ]:
        assert name in r.text, name
    assert 'visionflow_subsystem_up{subsystem="http"} 1.0' in r.text


@pytest.mark.anyio
async def test_health_turns_503_when_failing(service: Service, client: httpx.AsyncClient) -> None:
    sub = service.ctx.registry.register("physics", critical=True)
    sub.state = "backoff"
    sub.last_error = "kernel exploded"
    r = await client.get("/api/health")
    assert r.status_code == 503
    assert r.json()["status"] == "failing"
    assert r.json()["subsystems"]["physics"]["last_error"] == "kernel exploded"
    r = await client.get("/readyz")
    assert r.status_code == 503
    assert "physics is backoff" in r.json()["reasons"]


@pytest.mark.anyio
async def test_degraded_is_still_200(service: Service, client: httpx.AsyncClient) -> None:
    sub = service.ctx.registry.register("mcp:local")
    sub.state = "backoff"
    sub.detail["breaker"] = "open"
    r = await client.get("/api/health")
    assert r.status_code == 200
    assert r.json()["status"] == "degraded"
    assert r.json()["subsystems"]["mcp:local"]["detail"] == {"breaker": "open"}


@pytest.mark.anyio
async def test_unknown_route_has_the_error_shape(client: httpx.AsyncClient) -> None:
    r = await client.get("/nope")
    assert r.status_code == 404
    assert r.json() == {"error": {"code": "not_found", "message": "Not Found", "path": None}}
