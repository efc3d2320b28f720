"""``/openapi.json``: the HTTP API described from the routes themselves.

Paths and methods come from the mounted routes, summaries from each handler's docstring, and
request bodies from the msgspec Structs the handlers validate with, so the document cannot drift
from what the code accepts. A route declares its body and statuses itself (:class:`ApiRoute`):
each app's document comes from its own routes only.

Every route is in it: an HTTP route with each method, its parameters and the body of each answer
(``response`` and ``statuses``), the WebSocket route with its query parameters, and a mount of
files as one ``GET {mount}/{path}``. An ``operationId`` (the handler's name), a tag (the path's
area) and the bearer ``securityScheme`` come from the route as well. ``tests/fuzz`` fuzzes every
operation the document lists and checks each answer against it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from visionflow import __version__
from visionflow.web import apidocs, uploads
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

#: A JSON schema, or a msgspec Struct type whose schema goes into the components.
Schema = type[Any] | dict[str, Any]


@dataclass(frozen=True, slots=True)
class Answer:
    """A status whose body is not the error shape (``/readyz``'s 503 says why, as its 200 does):
    its description and its schema per media type."""

    description: str
    content: Mapping[str, Schema]


class ApiRoute(Route):
    """A route with its OpenAPI metadata, for every method it has: ``body`` (a msgspec Struct
    type or a JSON schema: the ``application/json`` body), ``bodies`` (a schema per media type
    besides, or instead of ``body``'s for ``application/json``, a Struct type still listed in
    the components), query ``parameters`` (OpenAPI parameter objects), ``response`` (the 200
    answer's ``application/json`` body), ``media`` (a schema per media type of a 200 answer that
    is not JSON, or besides it), ``statuses`` (what it answers besides 200: a description, whose
    body is the error shape, or an :class:`Answer`), ``tag`` (by default the path's area) and
    ``needs_token`` (a read that needs server.token too, as a mutating route does)."""

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        methods: list[str],
        body: Schema | None = None,
        bodies: Mapping[str, dict[str, Any]] | None = None,
        parameters: Sequence[dict[str, Any]] = (),
        response: Schema | None = None,
        media: Mapping[str, Schema] | None = None,
        statuses: Mapping[str, str | Answer] | None = None,
        tag: str | None = None,
        needs_token: bool = False,
    ) -> None:
        super().__init__(path, endpoint, methods=methods)
        self.body = body
        self.bodies = dict(bodies or {})
        self.parameters = list(parameters)
        self.response = response
        self.media = dict(media or {})
        self.statuses = dict(statuses or {})
        self.tag = tag
        self.needs_token = needs_token


def schema_ref(struct: type[Any]) -> dict[str, Any]:
    """A reference to a Struct's schema among the components (a ``body`` of some route)."""
    return {"$ref": f"#/components/schemas/{struct.__name__}"}


def obj(required: Sequence[str] = (), **properties: dict[str, Any]) -> dict[str, Any]:
    """A JSON object schema: these properties (others may follow), the ``required`` ones always."""
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


STRING: dict[str, Any] = {"type": "string"}
TEXT: dict[str, Any] = {"type": "string", "description": "text, not JSON"}

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

#: What a route that reads a body may answer while it arrives (guards.read_body).
BODY_TOO_SLOW = (
    f"the body arrived too slowly: under {uploads.MIN_RATE // 1024} KiB/s on average after its "
    f"first {uploads.GRACE_S:g} s (`body_too_slow`, the connection closed)"
)

DESCRIPTION = (
    "Every request needs a Host in server.allowed_hosts (403 otherwise). Mutating requests "
    "(any method but GET, HEAD, OPTIONS and TRACE) also need an Origin that is absent, this "
    "server's own or in server.allowed_origins (403), a Content-Type of application/json (415; "
    "the graph import also takes the types its request body lists) "
    "and, when server.token is set, 'Authorization: Bearer <token>' (401). Errors are "
    '{"error": {"code", "message", "path"}}; for these refusals path names the header.'
)

#: ``components.securitySchemes``: the one scheme, ``server.token`` as a bearer token.
SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "server.token. Mutating routes need it when it is set; reads show "
        "secrets and launched command lines as *** without it; /wss also takes ?token=.",
    }
}
#: Needed (mutating routes while server.token is set) or optional (the rest).
_NEEDED: list[dict[str, list[str]]] = [{"bearer": []}]
_OPTIONAL: list[dict[str, list[str]]] = [{}, {"bearer": []}]

WEBSOCKET_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "protocol",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["2", "legacy"], "default": "2"},
        "description": "the binary frame format (docs/protocol.md)",
    },
    {
        "name": "graph",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["all", "knowledge", "agents"], "default": "all"},
        "description": "which nodes' positions are sent",
    },
    {
        "name": "subscribe",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no"]},
        "description": "false: control messages only until the viewer subscribes",
    },
    {
        "name": "token",
        "in": "query",
        "required": False,
        "schema": STRING,
        "description": "server.token, for a browser that cannot set a header",
    },
]

_PATH_PARAM = re.compile(r"{(\w+)(?::(\w+))?}")
# Paths outside /api/ and the area each belongs to.
_TAGS = {
    "healthz": "operations",
    "readyz": "operations",
    "metrics": "operations",
    "health": "operations",
    "openapi.json": "docs",
    "wss": "viewer",
    "static": "viewer",
    "": "viewer",
}


def tag_of(path: str) -> str:
    """The area of a path: ``/api/graph/data`` is graph; the probes are operations."""
    parts = path.strip("/").split("/")
    area = parts[1] if parts[0] == "api" and len(parts) > 1 else parts[0]
    return _TAGS.get(area, area)


def _operation_id(route: Route, method: str) -> str:
    name = getattr(route.endpoint, "__name__", None) or tag_of(route.path)
    return name if len(set(route.methods or ()) - {"HEAD"}) <= 1 else f"{name}_{method.lower()}"


def _content(content: Mapping[str, Schema]) -> dict[str, Any]:
    return {
        media: {"schema": schema_ref(schema) if isinstance(schema, type) else schema}
        for media, schema in content.items()
    }


def _structs(routes: list[BaseRoute]) -> list[type[Any]]:
    """Every Struct type a route names, for the components."""
    found: list[type[Any]] = []
    for route in routes:
        if not isinstance(route, ApiRoute):
            continue
        named: list[Any] = [route.body, route.response, *route.media.values()]
        for answer in route.statuses.values():
            if isinstance(answer, Answer):
                named.extend(answer.content.values())
        found.extend(s for s in named if isinstance(s, type) and s not in found)
    return found


def _websocket(route: WebSocketRoute) -> dict[str, Any]:
    return {
        "operationId": "websocket",
        "tags": [tag_of(route.path)],
        "summary": "WebSocket upgrade: binary position frames and JSON control messages "
        "(see docs/protocol.md)",
        "description": "A refused upgrade is accepted and closed at once with a code and "
        "reason: 1008 for a Host not in server.allowed_hosts or an Origin that is neither "
        "this server nor in server.allowed_origins (no Origin is fine), 4401 for a "
        "missing or wrong token, 4400 for a bad parameter, 1013 when full.",
        "parameters": WEBSOCKET_PARAMETERS,
        "security": _OPTIONAL,
        "responses": {
            "101": {"description": "switching protocols"},
            "403": _error(GUARD_STATUSES["403"]),
            "426": _error("a plain HTTP request: this path takes WebSocket upgrades only"),
        },
    }


def _files(mount: Mount) -> dict[str, Any]:
    doc = inspect.getdoc(type(mount.app)) or "Files"
    return {
        "operationId": f"files_{mount.path.strip('/').replace('/', '_')}",
        "tags": [tag_of(mount.path)],
        "summary": doc.splitlines()[0],
        "parameters": [
            {"name": "path", "in": "path", "required": True, "schema": STRING},
        ],
        "security": _OPTIONAL,
        "responses": {
            "200": {"description": "the file", "content": {"*/*": {}}},
            "403": _error(GUARD_STATUSES["403"]),
            "404": _error("no such file"),
            "405": _error("a method other than GET or HEAD"),
        },
    }


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_SCHEMA}}}


def _operation(route: Route, method: str, token_set: bool) -> dict[str, Any]:
    api = route if isinstance(route, ApiRoute) else None
    doc = inspect.getdoc(route.endpoint) or ""
    op: dict[str, Any] = {
        "operationId": _operation_id(route, method),
        "tags": [(api.tag if api is not None else None) or tag_of(route.path)],
        "summary": doc.splitlines()[0] if doc else route.path,
    }
    if len(doc.splitlines()) > 1:
        op["description"] = doc
    mutating = is_mutating(method)
    needs_token = mutating or (api is not None and api.needs_token)
    op["security"] = _NEEDED if needs_token and token_set else _OPTIONAL
    ok: dict[str, Any] = {"description": "OK"}
    if api is not None and (api.response is not None or api.media):
        content = {"application/json": api.response} if api.response is not None else {}
        ok["content"] = _content({**content, **api.media})
    op["responses"] = {"200": ok}
    guarded = MUTATING_GUARD_STATUSES if mutating else GUARD_STATUSES
    statuses: dict[str, str | Answer] = dict(guarded)
    if needs_token:
        statuses["401"] = "token required"
    if mutating and api is not None and (api.body is not None or api.bodies):
        statuses["408"] = BODY_TOO_SLOW  # every body is read through guards.read_body
    for status, answer in (api.statuses if api is not None else {}).items():
        before = statuses.get(status)
        if isinstance(answer, str) and isinstance(before, str) and answer != before:
            answer = f"{before}; or {answer}"  # the guard's refusal and the route's
        statuses[status] = answer
    for status, answer in statuses.items():
        if isinstance(answer, Answer):
            op["responses"][status] = {
                "description": answer.description,
                "content": _content(answer.content),
            }
        else:
            op["responses"][status] = _error(answer)
    parameters = api.parameters if api is not None else []
    declared = {p["name"] for p in parameters if p.get("in") == "path"}
    in_path = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "integer"} if convertor == "int" else STRING,
        }
        for name, convertor in _PATH_PARAM.findall(route.path)
        if name not in declared  # the route says more than its convertor (a range, say)
    ]
    if parameters or in_path:
        op["parameters"] = [*in_path, *parameters]
    if api is not None:
        body: dict[str, Schema] = {} if api.body is None else {"application/json": api.body}
        body.update(api.bodies)
        if body:
            op["requestBody"] = {"required": True, "content": _content(body)}
    return op


def document(routes: list[BaseRoute], *, token_set: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 document of these routes; ``token_set``: server.token is set, so the
    mutating operations need the bearer token."""
    _, components = msgspec.json.schema_components(
        _structs(routes), ref_template="#/components/schemas/{name}"
    )
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if isinstance(route, WebSocketRoute):
            paths.setdefault(route.path, {})["get"] = _websocket(route)
        elif isinstance(route, Mount) and not route.routes:  # files (StaticFiles), not a router
            paths.setdefault(f"{route.path}/{{path}}", {})["get"] = _files(route)
        elif isinstance(route, Route) and not getattr(route, "undocumented", False):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                # OpenAPI names a path parameter {id}; Starlette's {id:int} also says its type
                path = _PATH_PARAM.sub(r"{\1}", route.path)
                paths.setdefault(path, {})[method.lower()] = _operation(route, method, token_set)
    tags = sorted({op["tags"][0] for ops in paths.values() for op in ops.values()})
    return {
        "openapi": "3.1.0",
        "info": {"title": "VisionFlow", "version": __version__, "description": DESCRIPTION},
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
    }


async def openapi(request: Request) -> Response:
    """The OpenAPI 3.1 description of this service's HTTP API (what /api/docs shows)."""
    token_set = bool(request.app.state.ctx.live.current.server.token)
    return Response(
        msgspec.json.encode(document(request.app.routes, token_set=token_set)),
        media_type="application/json",
    )


#: What ``/openapi.json`` answers: the parts a reader of the document relies on.
DOCUMENT_SCHEMA = obj(
    ["openapi", "info", "paths", "components"],
    openapi=STRING,
    info=obj(["title", "version"], title=STRING, version=STRING),
    paths={"type": "object"},
    components={"type": "object"},
)


def routes() -> list[BaseRoute]:
    return [
        ApiRoute("/openapi.json", openapi, methods=["GET"], response=DOCUMENT_SCHEMA),
        ApiRoute("/api/docs", apidocs.api_docs, methods=["GET", "HEAD"], media={"text/html": TEXT}),
    ]
