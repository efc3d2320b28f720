"""``/openapi.json``: the HTTP API described from the routes themselves.

Paths and methods come from the mounted routes, summaries from each handler's docstring, and
request bodies from the msgspec Structs the handlers validate with, so the document cannot drift
from what the code accepts. A route declares its body and statuses itself (:class:`ApiRoute`):
each app's document comes from its own routes only.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from visionflow import __version__
from visionflow.web.security import is_mutating

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "path": {"type": ["string", "null"]},
            },
            "required": ["code", "message", "path"],
        }
    },
    "required": ["error"],
}


class ApiRoute(Route):
    """A route with its OpenAPI metadata, for every method it has: ``body`` (a msgspec Struct
    type or a JSON schema: the ``application/json`` body), ``bodies`` (a schema per media type
    besides, or instead of ``body``'s for ``application/json``, a Struct type still listed in
    the components), query ``parameters`` (OpenAPI parameter objects) and the statuses it
    documents besides 200."""

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        methods: list[str],
        body: type[Any] | dict[str, Any] | None = None,
        bodies: Mapping[str, dict[str, Any]] | None = None,
        parameters: Sequence[dict[str, Any]] = (),
        statuses: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(path, endpoint, methods=methods)
        self.body = body
        self.bodies = dict(bodies or {})
        self.parameters = list(parameters)
        self.statuses = dict(statuses or {})


def schema_ref(struct: type[Any]) -> dict[str, Any]:
    """A reference to a Struct's schema among the components (a ``body`` of some route)."""
    return {"$ref": f"#/components/schemas/{struct.__name__}"}


#: What every route may answer before its handler runs (RequestGuard, visionflow/web/security.py).
GUARD_STATUSES: dict[str, str] = {"403": "Host not in server.allowed_hosts (`host_not_allowed`)"}
#: ... and what every mutating route may answer besides.
MUTATING_GUARD_STATUSES: dict[str, str] = {
    "403": "Host not in server.allowed_hosts (`host_not_allowed`), or an Origin that is neither "
    "this server nor in server.allowed_origins (`origin_not_allowed`)",
    "415": "the body is not Content-Type: application/json (`unsupported_media_type`)",
    "429": "over server.rate_limit mutating requests a second from this client address "
    "(`rate_limited`, with Retry-After)",
}

DESCRIPTION = (
    "Every request needs a Host in server.allowed_hosts (403 otherwise). Mutating requests "
    "(any method but GET, HEAD, OPTIONS and TRACE) also need an Origin that is absent, this "
    "server's own or in server.allowed_origins (403), a Content-Type of application/json (415; "
    "the graph import also takes the types its request body lists) "
    "and, when server.token is set, 'Authorization: Bearer <token>' (401). Errors are "
    '{"error": {"code", "message", "path"}}; for these refusals path names the header.'
)


_PATH_PARAM = re.compile(r"{(\w+)(?::(\w+))?}")


def document(routes: list[BaseRoute]) -> dict[str, Any]:
    structs = [r.body for r in routes if isinstance(r, ApiRoute) and isinstance(r.body, type)]
    _, components = msgspec.json.schema_components(
        structs, ref_template="#/components/schemas/{name}"
    )
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if isinstance(route, WebSocketRoute):
            paths.setdefault(route.path, {})["get"] = {
                "summary": "WebSocket upgrade: binary position frames and JSON control messages "
                "(see docs/protocol.md)",
                "description": "A refused upgrade is accepted and closed at once with a code and "
                "reason: 1008 for a Host not in server.allowed_hosts or an Origin that is neither "
                "this server nor in server.allowed_origins (no Origin is fine), 4401 for a "
                "missing or wrong token, 4400 for a bad parameter, 1013 when full.",
                "responses": {"101": {"description": "switching protocols"}},
            }
            continue
        if not isinstance(route, Route) or route.path == "/openapi.json":
            continue
        if getattr(route, "undocumented", False):
            continue
        doc = inspect.getdoc(route.endpoint) or ""
        body = route.body if isinstance(route, ApiRoute) else None
        bodies = route.bodies if isinstance(route, ApiRoute) else {}
        parameters = route.parameters if isinstance(route, ApiRoute) else []
        statuses = route.statuses if isinstance(route, ApiRoute) else {}
        for method in sorted((route.methods or set()) - {"HEAD"}):
            op: dict[str, Any] = {
                "summary": doc.splitlines()[0] if doc else route.path,
                "responses": {"200": {"description": "OK"}},
            }
            if len(doc.splitlines()) > 1:
                op["description"] = doc
            guarded = MUTATING_GUARD_STATUSES if is_mutating(method) else GUARD_STATUSES
            for status, text in {**guarded, **statuses}.items():
                op["responses"][status] = {
                    "description": text,
                    "content": {"application/json": {"schema": ERROR_SCHEMA}},
                }
            in_path = [
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer"} if convertor == "int" else {"type": "string"},
                }
                for name, convertor in _PATH_PARAM.findall(route.path)
            ]
            if parameters or in_path:
                op["parameters"] = [*in_path, *parameters]
            content: dict[str, Any] = {}
            if body is not None:
                schema = schema_ref(body) if isinstance(body, type) else body
                content["application/json"] = {"schema": schema}
            content.update({media: {"schema": schema} for media, schema in bodies.items()})
            if content:
                op["requestBody"] = {"required": True, "content": content}
            # OpenAPI names a path parameter {id}; Starlette's {id:int} also says its type
            paths.setdefault(_PATH_PARAM.sub(r"{\1}", route.path), {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "VisionFlow", "version": __version__, "description": DESCRIPTION},
        "paths": paths,
        "components": {"schemas": components},
    }


async def openapi(request: Request) -> Response:
    """The OpenAPI 3.1 description of this service's HTTP API."""
    return Response(
        msgspec.json.encode(document(request.app.routes)), media_type="application/json"
    )


def routes() -> list[BaseRoute]:
    return [Route("/openapi.json", openapi, methods=["GET"])]
