"""``GET /api/settings`` (effective settings) and ``PATCH /api/settings`` (runtime changes)."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from visionflow.errors import ConfigError
from visionflow.web import openapi
from visionflow.web.auth import presented_token, token_ok
from visionflow.web.context import ServiceContext, context_of
from visionflow.web.errors import error_response


def require_token(ctx: ServiceContext, request: Request) -> Response | None:
    """None when the request may mutate state; else the 401 response to send."""
    if token_ok(ctx.live.current.server.token, presented_token(request.headers)):
        return None
    return error_response(
        401,
        "unauthorized",
        "this route needs 'Authorization: Bearer <token>'",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def read_json_body(request: Request, limit: int) -> object | Response:
    """The parsed JSON body, or the error response (413 too large, 400 not JSON)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return error_response(413, "too_large", f"request body over {limit} bytes")
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            return error_response(413, "too_large", f"request body over {limit} bytes")
    try:
        body: object = msgspec.json.decode(bytes(chunks))
    except msgspec.DecodeError as exc:
        return error_response(400, "bad_json", f"body is not valid JSON: {exc}")
    return body


async def get_settings(request: Request) -> Response:
    """Effective settings, the runtime overrides and which keys may change at runtime."""
    return JSONResponse(context_of(request).live.as_json())


async def patch_settings(request: Request) -> Response:
    """Change runtime settings (validated whole, saved under state.dir, applied at once)."""
    ctx = context_of(request)
    refused = require_token(ctx, request)
    if refused is not None:
        return refused
    body = await read_json_body(request, ctx.live.current.server.max_request_bytes)
    if isinstance(body, Response):
        return body
    try:
        await ctx.live.patch(body)
    except ConfigError as exc:
        issues = [{"path": i.path, "rule": i.rule} for i in exc.issues]
        return error_response(
            400, "invalid_settings", exc.render(), exc.issues[0].path, issues=issues
        )
    return JSONResponse(ctx.live.as_json())


def routes() -> list[BaseRoute]:
    openapi.BODIES[("/api/settings", "PATCH")] = {
        "type": "object",
        "description": "a partial settings document; only runtime keys may change",
    }
    openapi.BODIES[("/api/settings", "POST")] = openapi.BODIES[("/api/settings", "PATCH")]
    for method in ("PATCH", "POST"):
        openapi.STATUSES[("/api/settings", method)] = {
            "400": "invalid settings (every issue listed, nothing applied)",
            "401": "token required",
            "413": "body too large",
        }
    return [
        Route("/api/settings", get_settings, methods=["GET"]),
        Route("/api/settings", patch_settings, methods=["PATCH", "POST"]),
    ]
