"""The physics child inside the whole service: hostile parameters and a failing kernel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from support.servicekit import eventually, running
from websockets.sync.client import connect

from visionflow.physics import engine as engine_module
from visionflow.protocol.frames import Frame, FrameKind, decode_frame

real_stepper = engine_module.make_stepper

pytestmark = pytest.mark.anyio

EXTREME = {
    "spring_k": 10.0,
    "rest_length": 0.1,
    "repel_k": 10000.0,
    "center_gravity_k": 10.0,
    "damping": 1.0,
    "dt": 1.0,
    "max_velocity": 1000.0,
    "max_force": 100000.0,
    "enable_bounds": False,
    "softening": 1e-9,
    "warmup_iterations": 0,
}


def stacked_doc(n: int) -> dict[str, Any]:
    """A clique of nodes, many of them seeded on top of each other by identical neighbours."""
    nodes = [{"id": f"n{i}"} for i in range(n)]
    edges = [{"source": f"n{i}", "target": f"n{j}"} for i in range(n) for j in range(i + 1, n)]
    return {"nodes": nodes, "edges": edges}


async def test_extreme_parameters_never_poison_a_snapshot(tmp_path: Path) -> None:
    async with running({"state": {"dir": str(tmp_path)}}) as (svc, client):
        r = await client.patch(
            "/api/settings", json={"physics": {"knowledge": EXTREME, "rate_hz": 240}}
        )
        assert r.status_code == 200, r.text
        assert (await client.post("/api/graph/import", json=stacked_doc(40))).status_code == 200
        engine = svc.engine
        start = engine.tick
        seen = 0
        while seen < 60:
            snap = await engine.wait_snapshot(start + seen)
            assert (
                np.isfinite(snap.nodes.positions).all() and np.isfinite(snap.nodes.velocities).all()
            )
            seen = snap.sequence - start
        health = (await client.get("/api/health")).json()
        assert health["status"] == "ok"
        assert health["subsystems"]["physics"]["state"] == "running"
        metrics = (await client.get("/metrics")).text
        assert "visionflow_physics_nonfinite_resets_total" in metrics


class FailOnce:
    """A stepper whose third step raises, like a kernel hitting a bug."""

    calls = 0

    def __init__(self, inner: engine_module.Stepper) -> None:
        self.inner = inner

    def step(self, *args: Any) -> Any:
        FailOnce.calls += 1
        if FailOnce.calls == 3:
            raise RuntimeError("kernel exploded")
        return self.inner.step(*args)


async def test_a_failing_kernel_restarts_the_physics_child_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = engine_module.make_stepper
    FailOnce.calls = 0
    monkeypatch.setattr(engine_module, "make_stepper", lambda backend: FailOnce(real(backend)))
    raw = {
        "state": {"dir": str(tmp_path)},
        "supervisor": {"backoff_initial": 0.05, "backoff_max": 0.1, "backoff_jitter": 0.0},
    }
    async with running(raw) as (svc, client):
        assert (await client.post("/api/graph/import", json=stacked_doc(10))).status_code == 200

        async def restarted() -> dict[str, Any] | None:
            body = (await client.get("/api/health")).json()
            physics = body["subsystems"]["physics"]
            ok = physics["restarts"] == 1 and physics["state"] == "running"
            return body if ok else None

        body = await eventually(restarted, timeout=20)
        assert body["subsystems"]["physics"]["last_error"] == "kernel exploded"
        assert body["subsystems"]["http"]["restarts"] == 0
        tick = svc.engine.tick
        await eventually(lambda: svc.engine.tick > tick + 5)  # stepping again
        assert (await client.get("/readyz")).status_code == 200
        metrics = (await client.get("/metrics")).text
        assert 'visionflow_subsystem_restarts_total{subsystem="physics"} 1.0' in metrics


class AlwaysFails:
    def __init__(self, inner: engine_module.Stepper) -> None:
        self.inner = inner

    def step(self, *args: Any) -> Any:
        raise RuntimeError("kernel exploded")


async def test_physics_failed_viewers_get_the_last_positions_and_health_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: a viewer got connection_established and then nothing, and /readyz said ready.
    monkeypatch.setattr(engine_module, "make_stepper", lambda backend: AlwaysFails(real_stepper))
    raw = {
        "state": {"dir": str(tmp_path)},
        "supervisor": {"backoff_initial": 0.05, "backoff_max": 0.1, "backoff_jitter": 0.0},
    }
    async with running(raw) as (svc, client):
        doc = stacked_doc(10)
        headers = {"content-type": "application/json"}
        assert (
            await client.post("/api/graph/import", json=doc, headers=headers)
        ).status_code == 200

        async def failed() -> bool:
            body = (await client.get("/api/health")).json()
            return bool(body["subsystems"]["physics"]["state"] == "failed")

        await eventually(failed, timeout=30)
        health = await client.get("/api/health")
        assert health.status_code == 200 and health.json()["status"] == "degraded"
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["reasons"] == ["physics is failed: kernel exploded"]
        url = str(svc.http.url).replace("http://", "ws://") + "/wss"

        def first_frame() -> Frame:
            with connect(url, open_timeout=5, max_size=None) as ws:
                assert json.loads(ws.recv(5))["type"] == "connection_established"
                while True:
                    message = ws.recv(5)  # TimeoutError: no frame
                    if isinstance(message, bytes):
                        return decode_frame(message)

        frame = await anyio.to_thread.run_sync(first_frame)
        assert frame.kind is FrameKind.KEYFRAME and len(frame.ids) == 10
        assert np.isfinite(frame.positions).all()
