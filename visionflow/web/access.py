"""Every HTTP request counted, timed and (with ``log.access_log``) logged, by route template.

The ``route`` label is the template of the route that answered (``/api/notes/{id:int}``),
never the raw path, so a client cannot grow the label set; a path no route matches is
``(unmatched)``. WebSocket upgrades are not HTTP requests here: a connection lasts minutes, so
its "latency" would drown the histogram. They are counted apart
(``visionflow_websocket_upgrades_total``); the viewer's own lines and metrics (``ws``) say the
rest.

This middleware sits outside every other one, so what they answer (a refused Host, a rate
limit, the 503 of a request the shutdown cut off) is counted too. An exception that leaves the
app is answered 500 by Starlette's outermost handler: it is counted as 500. A request that
ended with no answer at all (cancelled, or the client gone before the first byte) is counted
and logged as 499, nginx's "client closed request".
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Final

from loguru import logger
from starlette.routing import BaseRoute, Match, Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from visionflow.logs import ACCESS_KEY
from visionflow.metrics import UNMATCHED_ROUTE, Metrics
from visionflow.web.context import Foundations

log = logger.bind(subsystem="http")

#: The status a request that ended without an answer is counted and logged with.
NO_ANSWER: Final = 499
#: Longest path written to the log (the rest is cut, with "...").
MAX_LOGGED_PATH: Final = 512


def route_template(route: BaseRoute) -> str | None:
    """The label a route's requests are counted under: its path template."""
    if isinstance(route, Mount):
        return f"{route.path}/{{path}}"
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else None


def init_series(metrics: Metrics, routes: Iterable[BaseRoute]) -> None:
    """Create every route's series at 0 (Route: each of its methods; Mount: GET and HEAD)."""
    for route in routes:
        template = route_template(route)
        if template is None:
            continue
        if isinstance(route, WebSocketRoute):
            metrics.init_routes(template, (), websocket=True)
        elif isinstance(route, Route):
            metrics.init_routes(template, sorted(route.methods or {"GET"}), websocket=False)
        else:
            metrics.init_routes(template, ("GET", "HEAD"), websocket=False)


def matched_route(scope: Scope) -> str:
    """The route template that took (or would take) this request, else ``(unmatched)``.

    Starlette's router leaves the route it chose in ``scope["route"]``; a request answered
    before the router (a refused Host, a rate limit, a WebSocket not yet routed) is matched
    here against the app's routes: a full match first, else one that only lacks the method.
    """
    chosen = scope.get("route")
    if isinstance(chosen, BaseRoute):
        template = route_template(chosen)
        if template is not None:
            return template
    routes = getattr(getattr(scope.get("app"), "router", None), "routes", ())
    partial: str | None = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route_template(route) or UNMATCHED_ROUTE
        if match is Match.PARTIAL and partial is None:
            partial = route_template(route)
    return partial or UNMATCHED_ROUTE


def logged_path(scope: Scope) -> str:
    """The path as the client sent it (percent-encoded, so no control characters reach a
    log line), without the query string (``?token=`` must not be logged)."""
    raw = scope.get("raw_path")
    path = raw.decode("ascii", "backslashreplace") if isinstance(raw, bytes) else scope["path"]
    if len(path) > MAX_LOGGED_PATH:
        path = path[:MAX_LOGGED_PATH] + "..."
    return str(path)


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


class AccessMetrics:
    """ASGI middleware: see the module docstring."""

    def __init__(self, app: ASGIApp, ctx: Foundations) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            self.ctx.metrics.ws_upgrades.labels(route=matched_route(scope)).inc()
        if kind != "http":
            await self.app(scope, receive, send)
            return
        status: int | None = None

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        metrics = self.ctx.metrics
        started = time.perf_counter()
        metrics.http_in_flight.inc()
        try:
            await self.app(scope, receive, timed_send)
        except BaseException as exc:
            if status is None:
                # Starlette's ServerErrorMiddleware, outside this one, answers a fault with 500
                cancelled = not isinstance(exc, Exception)
                status = NO_ANSWER if cancelled else 500
            raise
        finally:
            metrics.http_in_flight.dec()
            self._record(scope, status if status is not None else NO_ANSWER, started)

    def _record(self, scope: Scope, status: int, started: float) -> None:
        seconds = time.perf_counter() - started
        route = matched_route(scope)
        method: str = scope["method"]
        self.ctx.metrics.observe_request(route, method, status, seconds)
        if not self.ctx.live.current.log.access_log:
            return
        fields: dict[str, Any] = {
            "method": method,
            "path": logged_path(scope),
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000.0, 3),
            "client": _client(scope),
        }
        log.bind(**{ACCESS_KEY: fields}).info(
            "{} {} {} {:.1f} ms (client {})",
            method,
            fields["path"],
            status,
            fields["duration_ms"],
            fields["client"] or "unknown",
        )
