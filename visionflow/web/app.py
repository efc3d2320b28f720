"""The Starlette application: health, readiness and metrics routes (more mount here).

Routes read the shared service context; they never block the event loop.
"""

from __future__ import annotations

from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from visionflow.metrics import CONTENT_TYPE
from visionflow.web import openapi, routes_settings, routes_state
from visionflow.web.access import AccessMetrics, init_series
from visionflow.web.context import Foundations, ServiceContext
from visionflow.web.context import foundations_of as _ctx
from visionflow.web.endings import RequestEndings
from visionflow.web.errors import http_exception_handler
from visionflow.web.guards import RequestGuard
from visionflow.web.openapi import STRING, TEXT, Answer, ApiRoute, obj
from visionflow.web.ratelimit import RateLimit
from visionflow.web.uploads import UploadSlots


async def healthz(request: Request) -> Response:
    """Liveness: 200 while the process answers."""
    # Liveness: the event loop answers. Whether the parts work is /readyz and /api/health.
    return JSONResponse({"status": "alive"})


async def readyz(request: Request) -> Response:
    """Readiness: 200, or 503 with the reasons (also while shutting down)."""
    ready, reasons = _ctx(request).registry.readiness()
    body: dict[str, Any] = {"ready": ready, "reasons": reasons}
    return JSONResponse(body, status_code=200 if ready else 503)


async def api_health(request: Request) -> Response:
    """Overall status and every subsystem's state; 503 when failing."""
    body = _ctx(request).registry.as_json()
    return JSONResponse(body, status_code=503 if body["status"] == "failing" else 200)


async def metrics(request: Request) -> Response:
    """Prometheus metrics (text exposition format)."""
    ctx = _ctx(request)
    subsystems = ctx.registry.subsystems
    ctx.metrics.observe_subsystems(
        {n: sub.state for n, sub in subsystems.items()},
        {n: sub.detail for n, sub in subsystems.items()},
    )
    ctx.metrics.ready.set(1 if ctx.registry.readiness()[0] else 0)
    ctx.metrics.physics_step_budget.set(1.0 / ctx.live.current.physics.rate_hz)
    # ~10 ms of formatting: in a worker thread, so the loop runs between the GIL's slices
    body = await anyio.to_thread.run_sync(ctx.metrics.render)
    return Response(body, media_type=CONTENT_TYPE)


_READY = obj(["ready", "reasons"], ready={"type": "boolean"}, reasons={"type": "array"})
_HEALTH = obj(
    ["status", "uptime_s", "version", "subsystems"],
    status={"enum": ["ok", "degraded", "failing"]},
    uptime_s={"type": "number"},
    version=STRING,
    subsystems={
        "type": "object",
        "additionalProperties": obj(
            ["state", "restarts", "last_error", "detail"],
            state={"enum": ["starting", "running", "backoff", "failed", "stopped"]},
            restarts={"type": "integer"},
            last_error={"type": ["string", "null"]},
            detail={"type": "object"},
        ),
    },
)


def base_routes() -> list[BaseRoute]:
    return [
        ApiRoute(
            "/healthz",
            healthz,
            methods=["GET", "HEAD"],
            response=obj(["status"], status={"const": "alive"}),
        ),
        ApiRoute(
            "/readyz",
            readyz,
            methods=["GET", "HEAD"],
            response=_READY,
            statuses={"503": Answer("not ready: the reasons", {"application/json": _READY})},
        ),
        ApiRoute(
            "/api/health",
            api_health,
            methods=["GET", "HEAD"],
            response=_HEALTH,
            statuses={"503": Answer("failing", {"application/json": _HEALTH})},
        ),
        ApiRoute("/metrics", metrics, methods=["GET", "HEAD"], media={"text/plain": TEXT}),
    ]


def create_app(ctx: ServiceContext, extra_routes: list[BaseRoute] | None = None) -> Starlette:
    service_routes = [*routes_settings.routes(), *routes_state.routes(), *openapi.routes()]
    return build_app(ctx, [*service_routes, *(extra_routes or [])])


def build_app(ctx: Foundations, routes: list[BaseRoute]) -> Starlette:
    """The probes and ``routes`` behind the middleware: the service's app, and a relay's
    (``visionflow relay``, cluster/relay.py: no graph of its own, only ``Foundations``)."""
    server = ctx.live.current.server  # the [server] table cannot change while running
    app = Starlette(
        routes=[*base_routes(), *routes],
        exception_handlers={HTTPException: http_exception_handler},
        # Host, Origin and Content-Type rules before any route (docs/security.md); outside
        # them, a client gone mid-response or a request the shutdown cuts off (web/endings.py);
        # outermost, every request counted and timed by route (web/access.py).
        middleware=[
            Middleware(AccessMetrics, ctx=ctx),
            Middleware(RequestEndings),
            # per-client token bucket on mutating requests: 429 before any other work
            Middleware(RateLimit, rate=server.rate_limit, burst=server.rate_burst),
            Middleware(RequestGuard, live=ctx.live),
        ],
    )
    app.state.ctx = ctx
    init_series(ctx.metrics, app.routes)
    app.state.uploads = UploadSlots()  # request bodies being read (web/uploads.py)
    return app
