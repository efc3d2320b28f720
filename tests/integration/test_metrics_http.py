"""HTTP requests counted and timed per route template (never per raw path), WebSocket upgrades
counted apart, and the process, GC and platform collectors and the build info served."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from starlette.routing import Route, WebSocketRoute
from support.servicekit import running
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from visionflow import __version__


def samples(text: str) -> Iterator[Sample]:
    for family in text_string_to_metric_families(text):
        yield from family.samples


def value(text: str, name: str, **labels: str) -> float:
    found = [s.value for s in samples(text) if s.name == name and s.labels == labels]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0]


def requests(text: str, route: str, method: str, status: str) -> float:
    labels = {"route": route, "method": method, "status": status}
    return value(text, "visionflow_http_requests_total", **labels)


@pytest.mark.anyio
async def test_every_route_has_its_series_at_zero_before_any_request(anyio_backend: str) -> None:
    async with running({}) as (svc, client):
        text = (await client.get("/metrics")).text
        routes = svc.http._app.routes  # type: ignore[attr-defined]
    for route in routes:
        if isinstance(route, WebSocketRoute):
            assert value(text, "visionflow_websocket_upgrades_total", route=route.path) == 0
        elif isinstance(route, Route):
            for method in route.methods or ():
                for status in ("2xx", "4xx", "5xx"):
                    assert requests(text, route.path, method, status) == 0, (route.path, method)
            count = "visionflow_http_request_duration_seconds_count"
            assert value(text, count, route=route.path) == 0
    # the route the scrape itself is answered on: counted once it ended, in flight meanwhile
    assert requests(text, "/metrics", "GET", "2xx") == 0
    assert value(text, "visionflow_http_requests_in_flight") == 1
    assert requests(text, "/api/graph/import", "POST", "5xx") == 0
    assert requests(text, "(unmatched)", "GET", "4xx") == 0


@pytest.mark.anyio
async def test_requests_are_counted_by_route_template_not_by_path(anyio_backend: str) -> None:
    async with running({}) as (_, client):
        for note in range(3):
            assert (await client.get(f"/api/notes/{note}")).status_code == 404
        for i in range(40):
            assert (await client.get(f"/scan/{i}/x?q={i}")).status_code == 404
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.head("/healthz")).status_code == 200
        assert (await client.delete("/healthz")).status_code == 405
        assert (await client.request("PURGE", "/healthz")).status_code == 405
        # refused before any route ran (a Host not allowed): still counted under its route
        foreign = await client.get("/api/graph/data", headers={"Host": "evil.example"})
        assert 400 <= foreign.status_code < 500
        text = (await client.get("/metrics")).text
    assert requests(text, "/api/notes/{id:int}", "GET", "4xx") == 3
    assert requests(text, "(unmatched)", "GET", "4xx") == 40
    assert requests(text, "/healthz", "GET", "2xx") == 1
    assert requests(text, "/healthz", "HEAD", "2xx") == 1
    assert requests(text, "/healthz", "DELETE", "4xx") == 1
    assert requests(text, "/healthz", "OTHER", "4xx") == 1
    assert requests(text, "/api/graph/data", "GET", "4xx") == 1
    count = "visionflow_http_request_duration_seconds_count"
    assert value(text, count, route="/api/notes/{id:int}") == 3
    assert value(text, count, route="(unmatched)") == 40
    total = value(text, "visionflow_http_request_duration_seconds_sum", route="(unmatched)")
    assert 0 < total < 40 * 5.0
    # the label set stays bounded: no raw path, no query string
    routes = {s.labels["route"] for s in samples(text) if "route" in s.labels}
    assert not any("/scan/" in r or "q=" in r or r.startswith("/api/notes/0") for r in routes)
    assert value(text, "visionflow_http_requests_in_flight") == 1


@pytest.mark.anyio
async def test_websocket_upgrades_are_counted_apart_with_closes_and_refusals(
    anyio_backend: str,
) -> None:
    raw = {"websocket": {"idle_timeout": 0.3}}
    async with running(raw) as (svc, client):
        url = str(svc.http.url).replace("http://", "ws://") + "/wss"

        def viewer_goes_idle() -> int | None:
            with connect(url, open_timeout=5) as ws:
                assert json.loads(ws.recv(5))["type"] == "connection_established"
                try:
                    while True:
                        ws.recv(5)
                except ConnectionClosed as closed:
                    return closed.rcvd.code if closed.rcvd else None

        def viewer_refused() -> int | None:
            with connect(url + "?protocol=9", open_timeout=5) as ws:
                try:
                    ws.recv(5)
                except ConnectionClosed as closed:
                    return closed.rcvd.code if closed.rcvd else None
            return None

        assert await anyio.to_thread.run_sync(viewer_goes_idle) == 1000
        assert await anyio.to_thread.run_sync(viewer_refused) == 4400
        assert (await client.get("/wss")).status_code == 426  # plain GET: an HTTP request
        text = (await client.get("/metrics")).text
    assert value(text, "visionflow_websocket_upgrades_total", route="/wss") == 2
    assert requests(text, "/wss", "GET", "4xx") == 1  # only the plain GET
    assert value(text, "visionflow_viewers_closed_total", code="1000") == 1
    assert value(text, "visionflow_viewers_closed_total", code="1013") == 0
    assert value(text, "visionflow_viewers_refused_total", code="4400") == 1
    assert value(text, "visionflow_viewers_refused_total", code="1013") == 0


@pytest.mark.anyio
async def test_process_gc_platform_and_build_info(anyio_backend: str) -> None:
    async with running({}) as (_, client):
        text = (await client.get("/metrics")).text
    names = {s.name for s in samples(text)}
    assert {
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "python_gc_collections_total",
        "python_gc_objects_collected_total",
        "python_info",
    } <= names
    assert value(text, "process_resident_memory_bytes") > 10 * 1024 * 1024
    assert value(text, "process_open_fds") >= 3
    build = [s for s in samples(text) if s.name == "visionflow_build_info"]
    assert len(build) == 1 and build[0].value == 1
    assert build[0].labels["version"] == __version__
    assert build[0].labels["python"].count(".") == 2
    assert value(text, "visionflow_threads") >= 1
    generations = {s.labels["generation"] for s in samples(text) if s.name.startswith("python_gc")}
    assert generations == {"0", "1", "2"}


@pytest.mark.anyio
async def test_a_request_that_raises_is_counted_as_a_500(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running({}) as (svc, client):

        def broken() -> tuple[bool, list[str]]:
            raise RuntimeError("readiness broke")

        monkeypatch.setattr(svc.ctx.registry, "readiness", broken)
        assert (await client.get("/readyz")).status_code == 500  # Starlette's outermost handler
        monkeypatch.undo()
        text = (await client.get("/metrics")).text
    assert requests(text, "/readyz", "GET", "5xx") == 1
    assert value(text, "visionflow_http_requests_in_flight") == 1
