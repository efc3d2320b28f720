"""web/access.py's sans-IO parts: which route template a request is counted under, what path is
logged, and the series metrics.Metrics creates for routes and subsystems."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import anyio
import pytest
from loguru import logger
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from visionflow import __version__, logs
from visionflow import settings as s
from visionflow.live_settings import LiveSettings
from visionflow.metrics import Metrics, method_label, status_class
from visionflow.supervisor import HealthRegistry
from visionflow.web.access import (
    MAX_LOGGED_PATH,
    AccessMetrics,
    init_series,
    logged_path,
    matched_route,
    route_template,
)
from visionflow.web.context import Foundations


async def _ok(request: Any) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def _ws(websocket: Any) -> None:
    return None


def _app(tmp_path: Any) -> Starlette:
    return Starlette(
        routes=[
            Route("/items/{id:int}", _ok, methods=["GET"]),
            Route("/items", _ok, methods=["POST"]),
            WebSocketRoute("/wss", _ws),
            Mount("/static", StaticFiles(directory=str(tmp_path))),
        ]
    )


def _scope(app: Starlette, path: str, method: str = "GET", kind: str = "http") -> dict[str, Any]:
    return {
        "type": kind,
        "app": app,
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
    }


def _values(metrics: Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for f in text_string_to_metric_families(metrics.render().decode())
        for s in f.samples
        if s.name == name
    }


def test_status_class_and_method_label() -> None:
    assert [status_class(s) for s in (200, 204, 307, 404, 429, 500, 503)] == [
        "2xx",
        "2xx",
        "3xx",
        "4xx",
        "4xx",
        "5xx",
        "5xx",
    ]
    assert method_label("PATCH") == "PATCH"
    assert method_label("PURGE") == "OTHER"
    assert method_label("get") == "OTHER"  # methods are case-sensitive (RFC 9110)


def test_a_request_is_counted_under_its_route_template(tmp_path: Any) -> None:
    app = _app(tmp_path)
    assert matched_route(_scope(app, "/items/7")) == "/items/{id:int}"
    assert matched_route(_scope(app, "/items/seven")) == "(unmatched)"  # the int converter
    assert matched_route(_scope(app, "/items", "DELETE")) == "/items"  # 405: its route
    assert matched_route(_scope(app, "/static/css/a.css")) == "/static/{path}"
    assert matched_route(_scope(app, "/wss", kind="websocket")) == "/wss"
    assert matched_route(_scope(app, "/elsewhere")) == "(unmatched)"
    # the router's choice wins once it was made
    chosen = _scope(app, "/elsewhere")
    chosen["route"] = app.routes[1]
    assert matched_route(chosen) == "/items"
    # no Starlette app in the scope: nothing to match against
    assert matched_route({"type": "http", "path": "/items/7", "method": "GET"}) == "(unmatched)"


def test_route_templates(tmp_path: Any) -> None:
    app = _app(tmp_path)
    assert [route_template(r) for r in app.routes] == [
        "/items/{id:int}",
        "/items",
        "/wss",
        "/static/{path}",
    ]


def test_the_logged_path_is_the_raw_path_without_query_and_bounded() -> None:
    scope = {"path": "/a\nb", "raw_path": b"/a%0Ab"}
    assert logged_path(scope) == "/a%0Ab"
    assert logged_path({"path": "/plain"}) == "/plain"
    long = {"path": "/x", "raw_path": b"/" + b"y" * 5000}
    assert len(logged_path(long)) == MAX_LOGGED_PATH + 3
    assert logged_path(long).endswith("...")
    assert logged_path({"path": "/", "raw_path": b"/\xff"}) == "/\\xff"


def test_init_series_creates_every_route_method_and_status_at_zero(tmp_path: Any) -> None:
    metrics = Metrics()
    init_series(metrics, _app(tmp_path).routes)
    requests = _values(metrics, "visionflow_http_requests_total")
    routes = {dict(k)["route"] for k in requests}
    assert routes == {"/items/{id:int}", "/items", "/static/{path}", "(unmatched)"}
    for method in ("GET", "HEAD"):  # Starlette adds HEAD to a GET route
        for status in ("2xx", "4xx", "5xx"):
            key = (("method", method), ("route", "/items/{id:int}"), ("status", status))
            assert requests[key] == 0
    assert not any(dict(k)["route"] == "/items" and dict(k)["method"] == "GET" for k in requests)
    upgrades = _values(metrics, "visionflow_websocket_upgrades_total")
    assert upgrades == {(("route", "/wss"),): 0}
    counts = _values(metrics, "visionflow_http_request_duration_seconds_count")
    assert {dict(k)["route"] for k in counts} == routes


def test_observe_request_counts_and_times() -> None:
    metrics = Metrics()
    metrics.observe_request("/items", "POST", 201, 0.003)
    metrics.observe_request("/items", "POST", 503, 0.2)
    requests = _values(metrics, "visionflow_http_requests_total")
    assert requests[(("method", "POST"), ("route", "/items"), ("status", "2xx"))] == 1
    assert requests[(("method", "POST"), ("route", "/items"), ("status", "5xx"))] == 1
    buckets = _values(metrics, "visionflow_http_request_duration_seconds_bucket")
    assert buckets[(("le", "0.005"), ("route", "/items"))] == 1
    assert buckets[(("le", "0.25"), ("route", "/items"))] == 2


def test_subsystem_states_degraded_and_layout_failures() -> None:
    metrics = Metrics()
    metrics.observe_subsystems(
        {"physics": "failed", "layout": "running"},
        {"physics": {}, "layout": {"degraded": True, "failures": 3}},
    )
    states = _values(metrics, "visionflow_subsystem_state")
    assert states[(("state", "failed"), ("subsystem", "physics"))] == 1
    assert states[(("state", "running"), ("subsystem", "physics"))] == 0
    assert states[(("state", "running"), ("subsystem", "layout"))] == 1
    assert len(states) == 10
    degraded = _values(metrics, "visionflow_subsystem_degraded")
    assert degraded == {(("subsystem", "layout"),): 1, (("subsystem", "physics"),): 0}
    assert _values(metrics, "visionflow_layout_save_failures") == {(): 3}
    metrics.observe_subsystems({"layout": "running"}, {"layout": {"failures": 0}})
    assert _values(metrics, "visionflow_layout_save_failures") == {(): 0}


def test_a_json_access_line_has_its_fields_at_the_top_level() -> None:
    stream = io.StringIO()
    sink = logger.add(logs._json_sink(stream), level="INFO")
    try:
        fields = {"method": "GET", "path": "/x", "route": "/x", "status": 200}
        fields |= {"duration_ms": 1.25, "client": None, "other": "dropped"}
        logger.bind(subsystem="http", access=fields, request_id=7).info("GET /x 200")
    finally:
        logger.remove(sink)
    doc = json.loads(stream.getvalue())
    assert doc["method"] == "GET" and doc["status"] == 200 and doc["duration_ms"] == 1.25
    assert doc["client"] is None and "other" not in doc
    assert doc["extra"] == {"request_id": 7}  # other bound values stay under extra
    assert doc["subsystem"] == "http"


def _driven(inner: Any, access_log: bool = True) -> tuple[Metrics, Any]:
    """AccessMetrics around ``inner``, and the metrics it counts into."""
    live = LiveSettings.from_settings(s.validate({"log": {"access_log": access_log}}))
    ctx = Foundations(live, HealthRegistry(__version__), Metrics())
    return ctx.metrics, AccessMetrics(inner, ctx)


async def _call(app: Any, path: str = "/x") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode()}
    await app(scope, receive, send)
    return sent


def _logged(run: Any) -> list[dict[str, Any]]:
    fields: list[dict[str, Any]] = []
    sink = logger.add(lambda m: fields.append(m.record["extra"].get("access")), level="INFO")
    try:
        run()
    finally:
        logger.remove(sink)
    return [f for f in fields if f]


def test_a_request_cancelled_before_its_answer_is_counted_as_499() -> None:
    async def cancelled(scope: Any, receive: Any, send: Any) -> None:
        raise asyncio.CancelledError

    metrics, app = _driven(cancelled)

    def run() -> None:
        with pytest.raises(asyncio.CancelledError):
            anyio.run(_call, app, backend="asyncio")

    lines = _logged(run)
    assert [(f["route"], f["status"]) for f in lines] == [("(unmatched)", 499)]
    requests = _values(metrics, "visionflow_http_requests_total")
    assert requests[(("method", "GET"), ("route", "(unmatched)"), ("status", "4xx"))] == 1
    assert _values(metrics, "visionflow_http_requests_in_flight") == {(): 0}


def test_a_handler_that_raises_is_counted_as_500_and_the_error_goes_on() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    async def answered(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    metrics, app = _driven(broken)

    def run() -> None:
        with pytest.raises(RuntimeError, match="boom"):
            anyio.run(_call, app)

    assert [f["status"] for f in _logged(run)] == [500]
    metrics, app = _driven(answered, access_log=False)
    assert _logged(lambda: anyio.run(_call, app)) == []  # counted, not logged
    requests = _values(metrics, "visionflow_http_requests_total")
    assert requests[(("method", "GET"), ("route", "(unmatched)"), ("status", "2xx"))] == 1
