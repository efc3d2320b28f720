"""The series the alerts read: each subsystem's state, readiness, the physics step budget, the
viewer close codes, and persistence failing (an unwritable state.dir)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.servicekit import JSON, eventually, running

from visionflow.metrics import SUBSYSTEM_STATES, VIEWER_CLOSE_CODES, VIEWER_REFUSE_CODES


def series(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def one(text: str, name: str, **labels: str) -> float:
    return series(text, name)[tuple(sorted(labels.items()))]


@pytest.mark.anyio
async def test_each_subsystem_is_in_exactly_one_state_and_the_service_is_ready(
    anyio_backend: str,
) -> None:
    async with running({}) as (svc, client):
        text = (await client.get("/metrics")).text
        names = set(svc.ctx.registry.subsystems)
        states = {n: s.state for n, s in svc.ctx.registry.subsystems.items()}
    assert {"physics", "http", "hub", "layout"} <= names
    for name in names:
        row = {
            st: one(text, "visionflow_subsystem_state", subsystem=name, state=st)
            for st in SUBSYSTEM_STATES
        }
        assert sorted(row.values()) == [0, 0, 0, 0, 1], (name, row)
        assert row[states[name]] == 1
        assert one(text, "visionflow_subsystem_degraded", subsystem=name) == 0
    assert one(text, "visionflow_subsystem_state", subsystem="http", state="running") == 1
    assert one(text, "visionflow_ready") == 1
    assert one(text, "visionflow_layout_save_failures") == 0
    assert one(text, "visionflow_graph_save_failures_total") == 0
    for code in VIEWER_CLOSE_CODES:
        assert one(text, "visionflow_viewers_closed_total", code=code) == 0
    for code in VIEWER_REFUSE_CODES:
        assert one(text, "visionflow_viewers_refused_total", code=code) == 0


@pytest.mark.anyio
async def test_the_step_budget_follows_the_rate_set_at_runtime(
    anyio_backend: str, tmp_path: Path
) -> None:
    raw = {"physics": {"rate_hz": 50}, "state": {"dir": str(tmp_path)}}  # overrides saved there
    async with running(raw) as (_, client):
        text = (await client.get("/metrics")).text
        assert one(text, "visionflow_physics_step_budget_seconds") == pytest.approx(0.02)
        r = await client.patch("/api/settings", json={"physics": {"rate_hz": 20}}, headers=JSON)
        assert r.status_code == 200, r.text
        text = (await client.get("/metrics")).text
        assert one(text, "visionflow_physics_step_budget_seconds") == pytest.approx(0.05)


@pytest.mark.anyio
async def test_an_unwritable_state_dir_shows_in_the_persistence_series(
    anyio_backend: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    raw: dict[str, Any] = {"state": {"dir": str(blocker / "state"), "save_interval": 0.2}}

    async def layout_failing(client: httpx.AsyncClient) -> str | None:
        text = (await client.get("/metrics")).text
        return text if one(text, "visionflow_layout_save_failures") >= 2 else None

    async with running(raw) as (_, client):
        r = await client.post("/api/graph/import", json={"nodes": [{"id": "a"}]})
        assert r.status_code == 200 and r.json()["saved"] is False
        text = await eventually(lambda: layout_failing(client), timeout=30)
    assert one(text, "visionflow_graph_save_failures_total") == 1
    assert one(text, "visionflow_subsystem_degraded", subsystem="layout") == 1
    assert one(text, "visionflow_subsystem_state", subsystem="layout", state="running") == 1


@pytest.mark.anyio
async def test_a_stalled_event_loop_shows_in_the_loop_lag(anyio_backend: str) -> None:
    async with running({}) as (_, client):
        await anyio.sleep(0.6)  # a couple of samples of an idle loop
        time.sleep(0.5)  # noqa: ASYNC251 — the stall being measured: the loop is blocked
        await anyio.sleep(0.6)
        text = (await client.get("/metrics")).text
    count = one(text, "visionflow_event_loop_lag_seconds_count")
    assert count >= 3
    # the timer due during the stall fired at least 0.25 s late; the others were not
    assert one(text, "visionflow_event_loop_lag_seconds_bucket", le="0.1") < count
    assert one(text, "visionflow_event_loop_lag_seconds_bucket", le="5.0") == count
    assert one(text, "visionflow_event_loop_lag_seconds_sum") >= 0.25
