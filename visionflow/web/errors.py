"""One JSON shape for every HTTP error: ``{"error": {"code", "message", "path"}}``."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.staticfiles import StaticFiles

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    503: "unavailable",
}


def error_response(
    status: int,
    code: str,
    message: str,
    path: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "path": path, **extra}}
    return JSONResponse(body, status_code=status, headers=headers)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed(request))
    return error_response(
        exc.status_code,
        _CODES.get(exc.status_code, "error"),
        exc.detail or "request refused",
        headers=headers or None,
    )


def _allowed(request: Request) -> list[str]:
    """Every method some route takes at this path. Starlette's 405 names the methods of the
    first route on the path only, and a path can have several (``/api/settings``: GET in one
    route, PATCH and POST in another)."""
    methods: set[str] = set()
    # inside a Mount the scope's root_path is the mount's: match from the app's own root
    scope = {**request.scope, "root_path": request.scope.get("app_root_path", "")}
    for route in request.app.router.routes:
        if route.matches(scope)[0] is not Match.NONE:
            methods |= methods_of(route)
    return sorted(methods)


def methods_of(route: BaseRoute) -> set[str]:
    """The methods a route takes: a Route's own, GET and HEAD for a mount of files (StaticFiles
    refuses the rest), none for a WebSocket route."""
    if isinstance(route, Route):
        return set(route.methods or ())
    if isinstance(route, Mount) and isinstance(route.app, StaticFiles):
        return {"GET", "HEAD"}
    return set()
