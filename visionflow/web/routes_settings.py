"""``GET /api/settings`` (effective settings) and ``PATCH /api/settings`` (runtime changes)."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from visionflow.errors import ConfigError
from visionflow.live_settings import RUNTIME_KEYS
from visionflow.settings import Settings
from visionflow.web.context import context_of
from visionflow.web.errors import error_response
from visionflow.web.guards import authorized, read_json_body, require_token
from visionflow.web.openapi import STRING, ApiRoute, obj


async def get_settings(request: Request) -> Response:
    """Effective settings, the runtime overrides and which keys may change at runtime.

    With a token set, a request without it sees ``***`` for secrets and for the command line and
    working directory of launched MCP servers (a command may carry keys)."""
    ctx = context_of(request)
    return JSONResponse(ctx.live.as_json(details=authorized(ctx, request)))


# A settings patch is a few keys; validating one runs on the event loop, so its size is bounded
# far below the import limit (a 1.8 MB patch of 100k unknown keys stalled the loop 10 s).
MAX_PATCH_BYTES = 64 * 1024


async def patch_settings(request: Request) -> Response:
    """Change runtime settings (validated whole, saved under state.dir, applied at once)."""
    ctx = context_of(request)
    refused = require_token(ctx, request)
    if refused is not None:
        return refused
    limit = min(ctx.live.current.server.max_request_bytes, MAX_PATCH_BYTES)
    body = await read_json_body(request, limit)
    if isinstance(body, Response):
        return body
    try:
        await ctx.live.patch(body)
    except ConfigError as exc:
        shown = exc.issues[: ConfigError.MAX_SHOWN]
        issues = [{"path": i.path, "rule": i.rule} for i in shown]
        return error_response(
            400,
            "invalid_settings",
            exc.render(),
            exc.issues[0].path,
            issues=issues,
            more=len(exc.issues) - len(shown),
        )
    except OSError as exc:  # nothing applied: the change could not be saved
        path = ctx.live.overrides_path
        return error_response(503, "not_saved", f"cannot save {path}: {exc.strerror}")
    return JSONResponse(ctx.live.as_json())


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """``schema`` with every ``$ref`` into ``defs`` replaced by what it names (no cycles)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return _inline(defs[ref.rsplit("/", 1)[1]], defs)
        return {k: _inline(v, defs) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema


def patch_schema() -> dict[str, Any]:
    """What PATCH takes, from the settings' own types: an object of the runtime keys only
    (RUNTIME_KEYS: a key, or a table ending in ``.``), each with its type and range."""
    _, defs = msgspec.json.schema_components([Settings], ref_template="#/$defs/{name}")
    patch: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
    for key in RUNTIME_KEYS:
        *tables, leaf = key.rstrip(".").split(".")
        at, source = patch, _inline(defs["Settings"], defs)
        for table in tables:
            source = source["properties"][table]
            at = at["properties"].setdefault(
                table, {"type": "object", "properties": {}, "additionalProperties": False}
            )
        at["properties"][leaf] = source["properties"][leaf]
    patch["description"] = "a partial settings document; only these runtime keys may change"
    return patch


SETTINGS = obj(
    ["settings", "overrides", "revision", "runtime_keys"],
    settings={"type": "object", "description": "every setting in effect"},
    overrides={"type": "object", "description": "what PATCH changed, kept under state.dir"},
    revision={"type": "integer"},
    runtime_keys={"type": "array", "items": STRING},
)


def routes() -> list[BaseRoute]:
    return [
        ApiRoute("/api/settings", get_settings, methods=["GET"], response=SETTINGS),
        ApiRoute(
            "/api/settings",
            patch_settings,
            methods=["PATCH", "POST"],
            response=SETTINGS,
            body=patch_schema(),
            statuses={
                "400": "invalid settings (every issue listed, nothing applied)",
                "401": "token required",
                "413": "body over 64 KiB (or server.max_request_bytes if lower)",
                "503": "the change could not be saved under state.dir (nothing applied)",
            },
        ),
    ]
