"""GET/PATCH /api/settings against a real hypercorn on an ephemeral port."""

from __future__ import annotations

import io
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from loguru import logger
from support.servicekit import JSON

from visionflow import logs
from visionflow import settings as s
from visionflow.live_settings import OVERRIDES_FILE
from visionflow.service import Service


async def _run(raw: dict[str, Any]) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    svc = Service(s.validate(raw))
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(10):
            await tg.start(svc.run)
        async with httpx.AsyncClient(base_url=str(svc.http.url), timeout=5) as client:
            yield svc, client
        svc.request_stop()


@pytest.fixture
async def api(
    anyio_backend: str, tmp_path: Path
) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    raw = {"server": {"port": 0, "max_request_bytes": 4096}, "state": {"dir": str(tmp_path)}}
    async for pair in _run(raw):
        yield pair


@pytest.mark.anyio
async def test_get_settings(api: tuple[Service, httpx.AsyncClient]) -> None:
    _, client = api
    r = await client.get("/api/settings")
    assert r.status_code == 200
    body = r.json()
    assert body["settings"]["physics"]["knowledge"]["damping"] == 0.8
    assert body["overrides"] == {}


@pytest.mark.anyio
async def test_patch_applies_persists_and_notifies(
    api: tuple[Service, httpx.AsyncClient], tmp_path: Path
) -> None:
    svc, client = api
    seen: list[float] = []
    svc.ctx.live.subscribe(lambda st: seen.append(st.physics.knowledge.damping))
    r = await client.patch("/api/settings", json={"physics": {"knowledge": {"damping": 0.5}}})
    assert r.status_code == 200, r.text
    assert r.json()["settings"]["physics"]["knowledge"]["damping"] == 0.5
    assert r.json()["settings"]["physics"]["agents"]["damping"] == 0.8
    assert svc.ctx.live.current.physics.knowledge.damping == 0.5
    assert seen == [0.5]
    saved = tomllib.loads((tmp_path / OVERRIDES_FILE).read_text())
    assert saved == {"physics": {"knowledge": {"damping": 0.5}}}


@pytest.mark.anyio
async def test_patch_reports_every_error_and_applies_nothing(
    api: tuple[Service, httpx.AsyncClient], tmp_path: Path
) -> None:
    svc, client = api
    r = await client.patch(
        "/api/settings",
        json={
            "physics": {"knowledge": {"damping": 1.7, "theta": 0.5, "dampng": 1}},
            "server": {"port": 1},
        },
    )
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "invalid_settings"
    paths = {i["path"] for i in err["issues"]}
    assert paths == {"physics.knowledge.damping", "physics.knowledge.dampng", "server.port"}
    assert "cannot change while running" in err["message"]
    assert svc.ctx.live.current.physics.knowledge.theta == 1.0  # the valid part was not applied
    assert not (tmp_path / OVERRIDES_FILE).exists()


@pytest.mark.anyio
async def test_patch_bad_bodies(api: tuple[Service, httpx.AsyncClient]) -> None:
    _, client = api
    r = await client.patch("/api/settings", content=b"{not json", headers=JSON)
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_json"
    r = await client.patch("/api/settings", content=b"[1, 2]", headers=JSON)
    assert r.status_code == 400 and "JSON object" in r.json()["error"]["message"]
    r = await client.patch("/api/settings", content=b"{" + b" " * 5000 + b"}", headers=JSON)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


@pytest.mark.anyio
async def test_patch_needs_token_when_set(anyio_backend: str, tmp_path: Path) -> None:
    raw = {"server": {"port": 0, "token": "s3cret"}, "state": {"dir": str(tmp_path)}}
    async for _, client in _run(raw):
        body = {"physics": {"agents": {"spring_k": 1.0}}}
        r = await client.patch("/api/settings", json=body)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthorized"
        r = await client.patch(
            "/api/settings", json=body, headers={"Authorization": "Bearer wrong"}
        )
        assert r.status_code == 401
        r = await client.patch(
            "/api/settings", json=body, headers={"Authorization": "Bearer s3cret"}
        )
        assert r.status_code == 200
        assert "s3cret" not in r.text
        r = await client.get("/api/settings")  # open to anyone: it must not hand out the token
        assert r.status_code == 200 and "s3cret" not in r.text
        assert r.json()["settings"]["server"]["token"] == "***"


@pytest.mark.anyio
async def test_overrides_survive_a_restart(anyio_backend: str, tmp_path: Path) -> None:
    raw = {"server": {"port": 0}, "state": {"dir": str(tmp_path)}}
    async for _, client in _run(raw):
        r = await client.patch("/api/settings", json={"physics": {"rate_hz": 30}})
        assert r.status_code == 200
    async for svc, _ in _run(raw):
        assert svc.ctx.live.current.physics.rate_hz == 30


@pytest.mark.anyio
async def test_corrupt_overrides_file_is_ignored(anyio_backend: str, tmp_path: Path) -> None:
    (tmp_path / OVERRIDES_FILE).write_text("[physics\nrate_hz = ")
    raw = {"server": {"port": 0}, "state": {"dir": str(tmp_path)}}
    async for svc, client in _run(raw):
        assert svc.ctx.live.current.physics.rate_hz == 60
        assert (await client.get("/api/health")).json()["status"] == "ok"


@pytest.mark.anyio
async def test_patch_saves_the_checked_values(
    api: tuple[Service, httpx.AsyncClient], tmp_path: Path
) -> None:
    svc, client = api
    r = await client.patch("/api/settings", json={"physics": {"rate_hz": "30"}})
    assert r.status_code == 400 and r.json()["error"]["path"] == "physics.rate_hz"  # a string
    r = await client.patch("/api/settings", json={"physics": {"rate_hz": 30}})
    assert r.status_code == 200, r.text
    saved = (tmp_path / OVERRIDES_FILE).read_text()
    assert tomllib.loads(saved) == {"physics": {"rate_hz": 30.0}}
    assert "rate_hz = 30.0" in saved  # the float it is, not the int that was sent
    assert svc.ctx.live.current.physics.rate_hz == 30.0


@pytest.mark.anyio
async def test_a_patch_that_cannot_be_saved_is_503_and_not_applied(
    api: tuple[Service, httpx.AsyncClient], tmp_path: Path
) -> None:
    svc, client = api
    (tmp_path / OVERRIDES_FILE).mkdir()  # the save's rename cannot replace a directory
    r = await client.patch("/api/settings", json={"physics": {"rate_hz": 30}})
    assert r.status_code == 503 and r.json()["error"]["code"] == "not_saved", r.text
    assert svc.ctx.live.current.physics.rate_hz == 60.0


@pytest.mark.anyio
async def test_log_level_changes_at_runtime(
    api: tuple[Service, httpx.AsyncClient],
) -> None:
    _, client = api
    # The service sink as logs.setup makes it, without removing the other sinks setup would.
    stream = io.StringIO()
    logs._sink = (logs._add_sink("INFO", "human", stream), "human", stream, "INFO")
    try:
        logger.bind(subsystem="test").debug("hidden")
        r = await client.patch("/api/settings", json={"log": {"level": "DEBUG"}})
        assert r.status_code == 200, r.text
        logger.bind(subsystem="test").debug("shown")
    finally:
        logger.remove(logs._sink[0])
        logs._sink = None
    assert "shown" in stream.getvalue() and "hidden" not in stream.getvalue()


@pytest.mark.anyio
async def test_a_huge_patch_is_refused_and_many_errors_are_counted_not_listed(
    anyio_backend: str, tmp_path: Path
) -> None:
    raw = {"server": {"port": 0}, "state": {"dir": str(tmp_path)}}  # the default 64 MiB limit
    async for _, client in _run(raw):
        # a settings patch is a few keys: 64 KiB is far above any real one, far below imports
        big = {"physics": {f"key{i}": i for i in range(8000)}}
        r = await client.patch("/api/settings", json=big)
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
        many = {"physics": {"knowledge": {f"unknown_{i}": 1 for i in range(300)}}}
        r = await client.patch("/api/settings", json=many)
        assert r.status_code == 400
        err = r.json()["error"]
        assert len(err["issues"]) == 50 and err["more"] == 250
        assert err["message"].count("\n  - ") == 50 and err["message"].endswith("(and 250 more)")
        assert len(r.content) < 64_000  # bounded whatever the number of issues
