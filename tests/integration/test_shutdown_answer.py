"""A request the shutdown cuts off gets 503 in the error shape, not an empty 500."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from support.servicekit import JSON, eventually

from visionflow import settings as s
from visionflow.graph.store import GraphStore
from visionflow.physics.engine import PhysicsEngine
from visionflow.service import Service
from visionflow.web import routes_graph

pytestmark = pytest.mark.anyio


async def _post_import(svc: Service, answers: list[httpx.Response]) -> None:
    """One small import; its answer, if one comes (the shutdown may close the connection)."""
    async with httpx.AsyncClient(base_url=str(svc.http.url), timeout=60) as client:
        doc = b'{"nodes": [{"id": "a"}, {"id": "b"}], "edges": []}'
        with contextlib.suppress(httpx.HTTPError):
            answers.append(await client.post("/api/graph/import", content=doc, headers=JSON))


async def test_an_import_cut_off_by_the_shutdown_gets_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    entered = threading.Event()
    release = threading.Event()
    real_import = routes_graph._import

    def slow_import(store: GraphStore, data: bytes, *rest: Any) -> Any:
        entered.set()
        release.wait(60)  # an import that outlasts the grace
        return real_import(store, data, *rest)

    monkeypatch.setattr(routes_graph, "_import", slow_import)
    settings = s.validate(
        {"server": {"port": 0, "shutdown_grace": 0.5}, "state": {"dir": str(tmp_path)}}
    )
    svc = Service(settings)
    answer: list[httpx.Response] = []
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            await tg.start(svc.run)

            tg.start_soon(_post_import, svc, answer)
            await eventually(entered.is_set)
            svc.request_stop()
            await anyio.sleep(1.0)  # past the grace: the request is cancelled
            release.set()
    assert len(answer) == 1
    r = answer[0]
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "shutting_down"
    assert not [rec for rec in caplog.records if rec.exc_info]


async def test_the_shutdown_does_not_wait_for_an_import_or_a_step_past_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 150k-node import and the step that places it take tens of seconds on a busy machine;
    the service stops within its grace all the same, leaving them to daemon threads (which the
    interpreter does not wait for at exit)."""
    release = threading.Event()
    blocked: dict[str, threading.Thread] = {}
    real_import = routes_graph._import
    real_step = PhysicsEngine.step_blocking

    def slow_import(store: GraphStore, data: bytes, *rest: Any) -> Any:
        blocked["import"] = threading.current_thread()
        release.wait(60)
        return real_import(store, data, *rest)

    def slow_step(engine: PhysicsEngine) -> Any:
        blocked["step"] = threading.current_thread()
        release.wait(60)
        return real_step(engine)

    monkeypatch.setattr(routes_graph, "_import", slow_import)
    monkeypatch.setattr(PhysicsEngine, "step_blocking", slow_step)
    settings = s.validate(
        {
            "server": {"port": 0, "shutdown_grace": 0.5},
            "state": {"dir": str(tmp_path)},
            "knowledge": {"path": "none"},
        }
    )
    svc = Service(settings)
    try:
        # Without abandoning them the task group waits the threads' 60 s, past this deadline.
        with anyio.fail_after(45):
            async with anyio.create_task_group() as tg:
                await tg.start(svc.run)

                tg.start_soon(_post_import, svc, [])
                await eventually(lambda: "import" in blocked and "step" in blocked, 30)
                svc.request_stop()
        assert not release.is_set()
        for name in ("import", "step"):
            assert blocked[name].daemon and blocked[name].is_alive(), name
    finally:
        release.set()
