"""Swarm routes known to the original's scripts: ``/api/bots/*``.

Reads come from the agent graph and the endpoint watchers; writes go to the chosen endpoint's
live MCP session with the argument names that server's tool schemas use.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import anyio
import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from visionflow.errors import RemoteProtocolError, RpcError, RpcRemoteError
from visionflow.mcp.client import McpClient
from visionflow.mcp.endpoint import EndpointWatcher
from visionflow.web.context import ServiceContext, context_of
from visionflow.web.errors import error_response
from visionflow.web.guards import authorized, read_json_body, require_started, require_token
from visionflow.web.openapi import STRING, ApiRoute, obj

Name = Annotated[str, Meta(min_length=1, max_length=128)]


class InitializeSwarm(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    topology: Literal["hierarchical", "mesh", "ring", "star"]
    # claude-flow's swarm_init takes 1-100 (its tool schema): more was a 502 from the server
    max_agents: Annotated[int, Meta(ge=1, le=100)] = 8
    strategy: Name = "balanced"
    agent_types: Annotated[list[Name], Meta(max_length=100)] = []
    endpoint: Name | None = None


class SpawnAgent(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    type: Name
    name: Name | None = None
    swarm_id: Name | None = None
    capabilities: Annotated[list[Name], Meta(max_length=100)] = []
    endpoint: Name | None = None


class SubmitTask(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    task: Annotated[str, Meta(min_length=1, max_length=100_000)]
    priority: Literal["low", "medium", "high", "critical"] | None = None
    strategy: Name | None = None
    swarm_id: Name | None = None
    endpoint: Name | None = None


def _watcher(ctx: ServiceContext, name: str | None) -> EndpointWatcher | Response:
    starting = require_started(ctx)  # the watchers start after the restore
    if starting is not None:
        return starting
    if not ctx.watchers:
        return error_response(
            503, "no_endpoint", "no MCP endpoint is configured ([[mcp.endpoints]])"
        )
    if name is None:
        return next(iter(ctx.watchers.values()))
    watcher = ctx.watchers.get(name)
    if watcher is None:
        known = ", ".join(ctx.watchers)
        return error_response(
            400, "unknown_endpoint", f"no endpoint {name!r} (known: {known})", "endpoint"
        )
    return watcher


def _client(watcher: EndpointWatcher) -> McpClient | Response:
    client = watcher.client
    if client is None:
        reason = watcher.status.last_error or "not connected yet"
        return error_response(
            503, "endpoint_down", f"MCP endpoint {watcher.settings.name!r} is down: {reason}"
        )
    return client


def _rpc_failure(watcher: EndpointWatcher, exc: Exception) -> Response:
    name = watcher.settings.name
    if isinstance(exc, RpcRemoteError):
        return error_response(502, "refused_by_server", f"{name}: {exc.message}")
    return error_response(503, "endpoint_down", f"{name}: {exc}")


async def _body(request: Request, ctx: ServiceContext, kind: type[Any]) -> Any:
    """Token check, size limit, JSON and schema validation; a Response when refused."""
    refused = require_token(ctx, request)
    if refused is not None:
        return refused
    raw = await read_json_body(request, ctx.live.current.server.max_request_bytes)
    if isinstance(raw, Response):
        return raw
    try:
        return msgspec.convert(raw, kind, strict=True)
    except msgspec.ValidationError as exc:
        text = str(exc)
        return error_response(400, "invalid_body", text, _path_of(text))


# msgspec names a field it misses or does not know in the message, not in the " - at `$...`"
# location (which is the object's): "Object contains unknown field `bogus`"
_FIELD_NAMED = re.compile(r"Object (?:contains unknown|missing required) field `([^`]*)`")


def _path_of(message: str) -> str | None:
    """The body path msgspec's ``message`` blames ("priority", "tasks[0].name"), or None."""
    at = (
        message.rsplit(" - at `$", 1)[1].rstrip("`").removeprefix(".")
        if " - at `$" in message
        else ""
    )
    field = _FIELD_NAMED.match(message)
    if field is not None:
        return f"{at}.{field.group(1)}" if at else field.group(1)
    return at or None


async def bots_data(request: Request) -> Response:
    """Agent nodes, swarm hub nodes and the edges among them, with what each server reported."""
    ctx = context_of(request)
    refused = require_token(ctx, request)
    if refused is not None:
        return refused
    # in a worker thread: it reads under the graph's lock, which an import holds for seconds
    return JSONResponse(await anyio.to_thread.run_sync(ctx.agents.data_json))


async def bots_status(request: Request) -> Response:
    """Per MCP endpoint: connected, breaker, server name/version, tools, last poll.

    With a token set, a request without it sees ``***`` for a launched server's command line."""
    ctx = context_of(request)
    details = authorized(ctx, request)
    endpoints = []
    for w in ctx.watchers.values():
        doc = w.status.as_json()
        if not details and w.settings.command:
            doc["target"] = "***"
            doc["last_error"] = w.public_error()
        endpoints.append(doc)
    return JSONResponse({"endpoints": endpoints})


Action = Callable[[Any, McpClient], Awaitable[dict[str, Any]]]


async def _mutate(request: Request, kind: type[Any], action: Action) -> Response:
    """Validate the body, find the endpoint's live session, run ``action`` on it, poll soon."""
    ctx = context_of(request)
    body = await _body(request, ctx, kind)
    if isinstance(body, Response):
        return body
    watcher = _watcher(ctx, body.endpoint)
    if isinstance(watcher, Response):
        return watcher
    client = _client(watcher)
    if isinstance(client, Response):
        return client
    try:
        result = await action(body, client)
    except (RpcError, RemoteProtocolError) as exc:
        return _rpc_failure(watcher, exc)
    watcher.poll_soon()  # show the change within a round trip, not a poll interval
    return JSONResponse({"endpoint": watcher.settings.name, **result})


async def _initialize(body: InitializeSwarm, client: McpClient) -> dict[str, Any]:
    swarm_id = await client.init_swarm(
        body.topology, max_agents=body.max_agents, strategy=body.strategy
    )
    spawned = [
        await client.spawn_agent(agent_type, swarm_id=swarm_id) for agent_type in body.agent_types
    ]
    return {"swarmId": swarm_id, "agents": [msgspec.to_builtins(a) for a in spawned]}


async def _spawn(body: SpawnAgent, client: McpClient) -> dict[str, Any]:
    spawned = await client.spawn_agent(
        body.type, name=body.name, capabilities=body.capabilities or None, swarm_id=body.swarm_id
    )
    return {"agent": msgspec.to_builtins(spawned)}


async def _task(body: SubmitTask, client: McpClient) -> dict[str, Any]:
    output = await client.submit_task(
        body.task, priority=body.priority, strategy=body.strategy, swarm_id=body.swarm_id
    )
    return {"tool": output.tool, "result": output.data}


async def initialize_swarm(request: Request) -> Response:
    """Start a swarm (swarm_init) and spawn one agent per entry of agentTypes."""
    return await _mutate(request, InitializeSwarm, _initialize)


async def spawn_agent(request: Request) -> Response:
    """Spawn one agent with the argument names the server's schema uses."""
    return await _mutate(request, SpawnAgent, _spawn)


async def submit_task(request: Request) -> Response:
    """Hand a task to the swarm (task_orchestrate in 2.x, task_create in 3.x)."""
    return await _mutate(request, SubmitTask, _task)


#: What a mutating bots route may answer besides 200.
MUTATION_STATUSES = {
    "400": "invalid body (the message names the field)",
    "401": "token required",
    "413": "body too large",
    "502": "the MCP server refused the call",
    "503": "the MCP endpoint is down",
}


_INT_OR_NULL = {"type": ["integer", "null"]}
_TEXT_OR_NULL = {"type": ["string", "null"]}
AGENT = obj(
    ["id", "endpoint", "agent_id", "name", "type", "kind", "status", "live"],
    id=_INT_OR_NULL,
    endpoint=STRING,
    agent_id=STRING,
    name=_TEXT_OR_NULL,
    type=_TEXT_OR_NULL,
    kind=STRING,
    status=_TEXT_OR_NULL,
    metadata={"type": "object"},
    live={"type": "boolean"},
)
DATA = obj(
    ["agents", "hubs", "edges", "revisions"],
    agents={"type": "array", "items": AGENT},
    revisions={
        "type": "object",
        "additionalProperties": {"type": "integer", "minimum": 1},
        "description": "each endpoint's agents revision: the agents_changed messages after it "
        "apply to this list",
    },
    hubs={
        "type": "array",
        "items": obj(["id", "endpoint", "kind", "hub_id"], id={"type": "integer"}),
    },
    edges={
        "type": "array",
        "items": obj(["source", "target", "weight"], weight={"type": "number"}),
    },
)
STATUS = obj(
    ["endpoints"],
    endpoints={
        "type": "array",
        "items": obj(
            ["name", "target", "connected", "breaker", "server", "tools", "last_error"],
            name=STRING,
            target=STRING,
            connected={"type": "boolean"},
            breaker=STRING,
            server={"type": "object"},
            tools={"type": "array", "items": STRING},
            last_error=_TEXT_OR_NULL,
        ),
    },
)
#: What a mutation answers: the endpoint it went to and what the server said.
DONE = obj(["endpoint"], endpoint=STRING)


def routes() -> list[BaseRoute]:
    return [
        ApiRoute("/api/bots/data", bots_data, methods=["GET"], response=DATA, needs_token=True),
        ApiRoute("/api/bots/status", bots_status, methods=["GET"], response=STATUS),
        ApiRoute(
            "/api/bots/initialize-swarm",
            initialize_swarm,
            methods=["POST"],
            body=InitializeSwarm,
            response=DONE,
            statuses=MUTATION_STATUSES,
        ),
        ApiRoute(
            "/api/bots/spawn-agent",
            spawn_agent,
            methods=["POST"],
            body=SpawnAgent,
            response=DONE,
            statuses=MUTATION_STATUSES,
        ),
        ApiRoute(
            "/api/bots/task",
            submit_task,
            methods=["POST"],
            body=SubmitTask,
            response=DONE,
            statuses=MUTATION_STATUSES,
        ),
    ]
