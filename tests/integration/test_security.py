"""A web page the user visits cannot drive the service (docs/security.md), over real hypercorn.

The attacks of issue 9: a cross-site ``fetch`` with ``Content-Type: text/plain`` (a CORS "simple"
request, sent without asking the server first) to ``/api/bots/task``, ``/api/settings`` or
``/api/graph/import``; and DNS rebinding, where the page's own name points at 127.0.0.1 and the
browser sends that name as ``Host``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from support.servicekit import JSON, eventually, running

from visionflow.mcpsim.server import Simulator

pytestmark = pytest.mark.anyio

EVIL = "http://evil.example"
TEXT = {"Content-Type": "text/plain;charset=UTF-8"}  # what fetch() sends a string body with
FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # curl --data-binary, HTML forms


def own_origin(client: httpx.AsyncClient) -> str:
    return str(client.base_url).rstrip("/")


def foreign_host(client: httpx.AsyncClient) -> dict[str, str]:
    return {"Host": f"evil.example:{client.base_url.port}"}


def assert_refused(r: httpx.Response, status: int, code: str, path: str) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert (error["code"], error["path"]) == (code, path)
    assert error["message"]


@asynccontextmanager
async def simulator() -> AsyncIterator[tuple[Simulator, int]]:
    """A claude-flow simulator whose task list the test can read."""
    sim = Simulator(flavor="v2", tick_interval=0, autopilot=False)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(partial(listener.serve, sim.handle, task_group=tg))
        yield sim, int(listener.extra(anyio.abc.SocketAttribute.local_port))
        tg.cancel_scope.cancel()


def config(tmp_path: Path, **server: Any) -> dict[str, Any]:
    return {"state": {"dir": str(tmp_path)}, "server": server}


async def test_a_foreign_host_is_refused_on_every_route(tmp_path: Path) -> None:
    async with running(config(tmp_path)) as (svc, client):
        evil = foreign_host(client)
        for path in ("/healthz", "/api/health", "/api/settings", "/api/graph/data", "/metrics"):
            assert_refused(await client.get(path, headers=evil), 403, "host_not_allowed", "Host")
        r = await client.patch("/api/settings", json={"log": {"level": "DEBUG"}}, headers=evil)
        assert_refused(r, 403, "host_not_allowed", "Host")
        assert svc.ctx.live.current.log.level == "INFO"
        # The loopback names, with this port or none.
        port = client.base_url.port
        for host in (f"localhost:{port}", f"[::1]:{port}", "127.0.0.1", "LOCALHOST"):
            assert (await client.get("/healthz", headers={"Host": host})).status_code == 200, host


async def test_allowed_hosts_star_admits_any_host(tmp_path: Path) -> None:
    async with running(config(tmp_path, allowed_hosts=["*"])) as (_, client):
        assert (await client.get("/api/health", headers=foreign_host(client))).status_code == 200


async def test_a_listed_host_is_admitted(tmp_path: Path) -> None:
    async with running(config(tmp_path, allowed_hosts=["viz.lan"])) as (_, client):
        port = client.base_url.port
        assert (
            await client.get("/healthz", headers={"Host": f"viz.lan:{port}"})
        ).status_code == 200
        r = await client.get("/healthz", headers={"Host": f"localhost:{port}"})
        assert_refused(r, 403, "host_not_allowed", "Host")  # the list replaces the loopback names


async def test_a_cross_site_page_cannot_submit_a_task(tmp_path: Path) -> None:
    async with simulator() as (sim, port):
        raw = {**config(tmp_path), "mcp": {"endpoints": [{"name": "sim", "port": port}]}}
        async with running(raw) as (svc, client):
            await eventually(lambda: svc.ctx.watchers["sim"].status.connected)
            body = b'{"task": "exfiltrate", "priority": "high"}'
            # The request of the issue: 200 and a task submitted before the fix.
            r = await client.post("/api/bots/task", content=body, headers={**TEXT, "Origin": EVIL})
            assert_refused(r, 403, "origin_not_allowed", "Origin")
            r = await client.post("/api/bots/task", content=body, headers={**JSON, "Origin": EVIL})
            assert_refused(r, 403, "origin_not_allowed", "Origin")
            r = await client.post("/api/bots/task", content=body, headers=TEXT)
            assert_refused(r, 415, "unsupported_media_type", "Content-Type")
            assert sim.model.tasks == {}
            # The service's own page, and a script (no Origin), may.
            headers = {**JSON, "Origin": own_origin(client)}
            r = await client.post("/api/bots/task", content=body, headers=headers)
            assert r.status_code == 200, r.text
            r = await client.post("/api/bots/task", json={"task": "write docs"})
            assert r.status_code == 200, r.text
            assert sorted(t.description for t in sim.model.tasks.values()) == [
                "exfiltrate",
                "write docs",
            ]


async def test_a_cross_site_page_cannot_change_settings(tmp_path: Path) -> None:
    async with running(config(tmp_path)) as (svc, client):
        body = b'{"log": {"level": "TRACE"}}'
        for method in ("PATCH", "POST"):
            for headers in ({**TEXT, "Origin": EVIL}, {**JSON, "Origin": EVIL}, {"Origin": "null"}):
                r = await client.request(method, "/api/settings", content=body, headers=headers)
                assert_refused(r, 403, "origin_not_allowed", "Origin")
            r = await client.request(method, "/api/settings", content=body, headers=TEXT)
            assert_refused(r, 415, "unsupported_media_type", "Content-Type")
        assert svc.ctx.live.current.log.level == "INFO"
        assert (await client.get("/api/settings")).json()["settings"]["log"]["level"] == "INFO"
        r = await client.patch(
            "/api/settings",
            json={"log": {"level": "DEBUG"}},
            headers={"Origin": own_origin(client)},
        )
        assert r.status_code == 200, r.text
        assert svc.ctx.live.current.log.level == "DEBUG"


async def test_a_cross_site_page_cannot_import_a_graph(tmp_path: Path) -> None:
    doc = b'{"nodes": [{"id": "a"}, {"id": "b"}], "edges": [{"source": "a", "target": "b"}]}'
    async with running(config(tmp_path)) as (svc, client):
        url = "/api/graph/import?mode=replace"
        r = await client.post(url, content=doc, headers={**TEXT, "Origin": EVIL})
        assert_refused(r, 403, "origin_not_allowed", "Origin")
        r = await client.post(url, content=doc, headers=FORM)  # curl --data-binary's default
        assert_refused(r, 415, "unsupported_media_type", "Content-Type")
        r = await client.post(url, content=doc)  # no Content-Type at all
        assert_refused(r, 415, "unsupported_media_type", "Content-Type")
        assert len(svc.ctx.store) == 0
        r = await client.post(url, content=doc, headers=JSON)
        assert r.status_code == 200, r.text
        assert len(svc.ctx.store) == 2


async def test_a_configured_origin_is_allowed(tmp_path: Path) -> None:
    viewer = "https://viewer.example:8443"
    async with running(config(tmp_path, allowed_origins=[viewer])) as (svc, client):
        r = await client.patch(
            "/api/settings", json={"log": {"level": "WARNING"}}, headers={"Origin": viewer}
        )
        assert r.status_code == 200, r.text
        assert svc.ctx.live.current.log.level == "WARNING"
        r = await client.patch(
            "/api/settings", json={"log": {"level": "DEBUG"}}, headers={"Origin": EVIL}
        )
        assert_refused(r, 403, "origin_not_allowed", "Origin")
        assert svc.ctx.live.current.log.level == "WARNING"


async def test_reads_need_no_origin_check(tmp_path: Path) -> None:
    # A cross-site page cannot read the answer anyway (no CORS headers): GETs stay open to links.
    async with running(config(tmp_path)) as (_, client):
        r = await client.get("/api/health", headers={"Origin": EVIL})
        assert r.status_code == 200
        assert "access-control-allow-origin" not in r.headers


async def test_the_token_still_applies_to_allowed_origins(tmp_path: Path) -> None:
    async with running(config(tmp_path, token="k")) as (_, client):
        headers = {"Origin": own_origin(client)}
        r = await client.patch("/api/settings", json={"log": {"level": "DEBUG"}}, headers=headers)
        assert r.status_code == 401
        headers["Authorization"] = "Bearer k"
        r = await client.patch("/api/settings", json={"log": {"level": "DEBUG"}}, headers=headers)
        assert r.status_code == 200, r.text


async def test_openapi_lists_the_refusals(tmp_path: Path) -> None:
    async with running(config(tmp_path)) as (_, client):
        spec = (await client.get("/openapi.json")).json()
        assert "allowed_hosts" in spec["info"]["description"]
        for path, method in [
            ("/api/bots/task", "post"),
            ("/api/settings", "patch"),
            ("/api/graph/import", "post"),
        ]:
            responses = spec["paths"][path][method]["responses"]
            # 408: each reads its body through guards.read_body (it was answered, not listed)
            assert {"401", "403", "408", "415"} <= responses.keys(), (path, responses.keys())
            assert "body_too_slow" in responses["408"]["description"]
        reads = spec["paths"]["/api/health"]["get"]["responses"]
        assert "403" in reads and "415" not in reads and "408" not in reads
        assert "1008" in spec["paths"]["/wss"]["get"]["description"]
