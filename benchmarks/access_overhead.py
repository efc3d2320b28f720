"""What counting and timing every HTTP request costs (web/access.py), and what a scrape costs.

Drives a Starlette app in-process (no sockets: the middleware's own cost, not the network's)
with and without the AccessMetrics middleware, in alternating batches, and prints the median
per-request time of each and the ratio. Then renders /metrics for a registry with the
service's 21 routes initialised, and measures how late a 1 ms sleep on the event loop wakes
while renders run on the loop (the baseline) or in a worker thread (what /metrics does).

    .venv/bin/python benchmarks/access_overhead.py [--requests 20000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import anyio
import anyio.lowlevel
from loguru import logger
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from visionflow import __version__
from visionflow import settings as s
from visionflow.live_settings import LiveSettings
from visionflow.metrics import Metrics
from visionflow.supervisor import HealthRegistry
from visionflow.web.access import AccessMetrics, init_series
from visionflow.web.context import Foundations

#: The service's route templates (as of Dec 2026), each with GET and HEAD.
SERVICE_ROUTES = [
    "/healthz",
    "/readyz",
    "/api/health",
    "/metrics",
    "/api/settings",
    "/openapi.json",
    "/api/graph/data",
    "/api/graph/neighbours/{id}",
    "/api/graph/import",
    "/api/graph/export",
    "/api/bots/data",
    "/api/bots/status",
    "/api/bots/initialize-swarm",
    "/api/bots/spawn-agent",
    "/api/bots/task",
    "/api/notes/{id:int}",
    "/api/state/backup",
    "/wss",
    "/",
    "/docs",
    "/static/{path}",
]


async def _ok(request: Any) -> PlainTextResponse:
    return PlainTextResponse("ok")


def _app(ctx: Foundations | None) -> Starlette:
    routes = [Route(p, _ok, methods=["GET"]) for p in SERVICE_ROUTES if "{" not in p]
    routes.append(Route("/api/notes/{id:int}", _ok, methods=["GET"]))
    middleware = [Middleware(AccessMetrics, ctx=ctx)] if ctx is not None else []
    app = Starlette(routes=routes, middleware=middleware)
    if ctx is not None:
        init_series(ctx.metrics, app.routes)
    return app


def _foundations(access_log: bool) -> Foundations:
    settings = s.validate({"log": {"access_log": access_log}})
    return Foundations(LiveSettings.from_settings(settings), HealthRegistry(__version__), Metrics())


async def _batch(app: Starlette, n: int) -> float:
    """Seconds per request, over ``n`` GETs of /api/notes/7 (a route with a parameter)."""
    scope: dict[str, Any] = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/notes/7",
        "raw_path": b"/api/notes/7",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 4000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    started = time.perf_counter()
    for _ in range(n):
        await app(dict(scope), receive, send)
    return (time.perf_counter() - started) / n


async def main(requests: int) -> None:
    logger.remove()
    logger.add(lambda _: None, level="INFO")  # access lines formatted, then dropped
    apps = {
        "no middleware (baseline)": _app(None),
        "AccessMetrics, access_log off": _app(_foundations(False)),
        "AccessMetrics, access_log on": _app(_foundations(True)),
    }
    batch = max(200, requests // 20)
    times: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(requests // batch):
        for name, app in apps.items():  # alternating: the machine's noise hits all alike
            times[name].append(await _batch(app, batch))
    base = statistics.median(times["no middleware (baseline)"])
    print(f"{'app':34} {'median us/request':>18} {'vs baseline':>12} {'added us':>9}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:34} {med * 1e6:18.1f} {med / base:11.2f}x {(med - base) * 1e6:9.1f}")

    metrics = Metrics()
    for route in SERVICE_ROUTES:
        metrics.init_routes(route, ["GET", "HEAD"], websocket=route == "/wss")
    metrics.observe_subsystems({n: "running" for n in ("http", "hub", "physics", "layout")})
    renders = []
    for _ in range(50):
        started = time.perf_counter()
        body = metrics.render()
        renders.append(time.perf_counter() - started)
    lines = body.count(b"\n")
    print(f"\n/metrics render: {lines} lines, {len(body)} bytes, ", end="")
    print(f"median {statistics.median(renders) * 1e3:.2f} ms (50 renders)")

    print(f"\n{'render':22} {'loop lag median ms':>19} {'p99 ms':>8} {'max ms':>8}")
    for _ in range(2):
        for where in ("on the loop", "in a worker thread"):
            lags = await _lag_while_rendering(metrics, threaded=where != "on the loop")
            med, p99 = statistics.median(lags), lags[int(len(lags) * 0.99)]
            print(f"{where:22} {med * 1e3:19.2f} {p99 * 1e3:8.2f} {lags[-1] * 1e3:8.2f}")


async def _lag_while_rendering(metrics: Metrics, threaded: bool, renders: int = 40) -> list[float]:
    """How late each 1 ms sleep wakes while ``renders`` renders run one after another."""
    lags: list[float] = []
    done = anyio.Event()

    async def probe() -> None:
        while not done.is_set():
            started = time.perf_counter()
            await anyio.sleep(0.001)
            lags.append(time.perf_counter() - started - 0.001)

    async with anyio.create_task_group() as tg:
        tg.start_soon(probe)
        for _ in range(renders):
            if threaded:
                await anyio.to_thread.run_sync(metrics.render)
            else:
                metrics.render()
                await anyio.lowlevel.checkpoint()  # a request's other awaits
        done.set()
    return sorted(lags)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    anyio.run(main, parser.parse_args().requests)
