"""claude-flow compatibility (docs/architecture.md section 10): pure functions, no I/O.

Everything a claude-flow 2.x or 3.x server says passes through here on its way to the graph:
tool results are unwrapped, agents normalised into one :class:`Agent` shape, placeholders
dropped, renamed types mapped back for colour. A malformed payload raises
:class:`RemoteProtocolError` saying what was wrong and where, never ``KeyError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from visionflow import jsonsafe
from visionflow.errors import RemoteProtocolError, RpcRemoteError

__all__ = [
    "AGENT_COLOURS",
    "METHOD_NOT_FOUND",
    "PLACEHOLDER_AGENT_IDS",
    "PLACEHOLDER_AGENT_NAMES",
    "RENAMED_TYPES",
    "TOOL_ERROR_CODE",
    "Agent",
    "Dialect",
    "MissingToolError",
    "SpawnedAgent",
    "SwarmStatus",
    "ToolCall",
    "ToolCatalog",
    "ToolError",
    "ToolOutput",
    "ToolSpec",
    "agent_colour",
    "canonical_type",
    "is_no_swarm",
    "is_placeholder",
    "parse_agent",
    "parse_agent_list",
    "parse_spawn",
    "parse_swarm_id",
    "parse_swarm_status",
    "unwrap_tool_result",
]

Dialect = Literal["v2", "v3"]

METHOD_NOT_FOUND = -32601
#: Code given to :class:`ToolError`: a tool-level failure carried inside a successful reply.
#: Chosen in the JSON-RPC "server error" range so it cannot collide with a standard code.
TOOL_ERROR_CODE = -32000


class ToolError(RpcRemoteError):
    """The tool ran and reported failure (``isError`` or ``{"success": false}``): not retried."""

    def __init__(self, tool: str, message: str, data: object = None) -> None:
        self.tool = tool
        super().__init__(TOOL_ERROR_CODE, f"{tool}: {message}", data)
        self.detail = message


class MissingToolError(RpcRemoteError):
    """The server's catalog has no such tool; what a 3.x server would answer, said up front."""

    def __init__(self, tool: str) -> None:
        self.tool = tool
        super().__init__(METHOD_NOT_FOUND, f"Tool not found: {tool}")


# -- colours and types (docs/architecture.md section 10) ----------------------------------------

AGENT_COLOURS: Mapping[str, str] = {
    "coordinator": "#00FFFF",
    "coder": "#00FF00",
    "architect": "#FFA500",
    "analyst": "#9370DB",
    "tester": "#FF6347",
    "researcher": "#FFD700",
    "reviewer": "#4169E1",
    "optimizer": "#7FFFD4",
    "documenter": "#FF69B4",
    "other": "#95A5A6",
}

#: claude-flow 2.x renames some types on spawn; mapped back so colours stay stable.
RENAMED_TYPES: Mapping[str, str] = {
    "task-orchestrator": "coordinator",
    "code-analyzer": "analyst",
    "perf-analyzer": "optimizer",
    "api-docs": "documenter",
    "system-architect": "architect",
}


def canonical_type(agent_type: str | None) -> str:
    """The colour-table type for a reported type; unknown or missing -> ``"other"``."""
    if not agent_type:
        return "other"
    key = agent_type.strip().lower()
    key = RENAMED_TYPES.get(key, key)
    return key if key in AGENT_COLOURS else "other"


def agent_colour(agent_type: str | None) -> str:
    return AGENT_COLOURS[canonical_type(agent_type)]


# -- tool results ---------------------------------------------------------------------------------

# 2.7.47's stub also echoes the call's arguments as ``args`` (seen on the real server).
_STUB_KEYS = frozenset({"success", "tool", "message", "args", "timestamp"})


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """The JSON document a tool returned in ``content[0].text``.

    ``stub`` marks 2.x's generic "Tool x executed successfully" answer: success with no data.
    """

    tool: str
    data: dict[str, Any]
    stub: bool = False


def _preview(text: str) -> str:
    return text if len(text) <= 120 else text[:117] + "..."


def unwrap_tool_result(tool: str, result: Any) -> ToolOutput:
    """Unwrap a ``tools/call`` result.

    Raises :class:`ToolError` for ``isError: true`` or ``{"success": false, "error": ...}``,
    :class:`RemoteProtocolError` when the result does not have the MCP shape.
    """
    if not isinstance(result, dict):
        raise RemoteProtocolError(f"{tool}: result is {type(result).__name__}, expected an object")
    content = result.get("content")
    if not isinstance(content, list) or not content:
        raise RemoteProtocolError(f"{tool}: result.content is missing or empty")
    first = content[0]
    text = first.get("text") if isinstance(first, dict) else None
    if not isinstance(text, str):
        raise RemoteProtocolError(f"{tool}: result.content[0].text is missing or not a string")
    is_error = result.get("isError") is True
    try:
        data = jsonsafe.decode(text)
    except msgspec.DecodeError as exc:
        if is_error:
            raise ToolError(tool, text) from None
        raise RemoteProtocolError(
            f"{tool}: result.content[0].text is not JSON: {_preview(text)!r}"
        ) from exc
    if is_error:
        message = data.get("error") if isinstance(data, dict) else None
        raise ToolError(tool, message if isinstance(message, str) else text, data)
    if not isinstance(data, dict):
        raise RemoteProtocolError(
            f"{tool}: result.content[0].text holds a JSON {type(data).__name__}, expected an object"
        )
    if data.get("success") is False:
        error = data.get("error")
        raise ToolError(tool, error if isinstance(error, str) else "failed (no reason given)", data)
    stub = (
        data.keys() <= _STUB_KEYS
        and "message" in data
        and isinstance(data.get("message"), str)
        and "executed successfully" in data["message"]
    )
    return ToolOutput(tool, data, stub)


def _require(output: ToolOutput, *fields: str) -> None:
    if output.stub:
        raise RemoteProtocolError(
            f"{output.tool}: server answered with a generic success stub, no data"
        )
    missing = [f for f in fields if f not in output.data]
    if missing:
        raise RemoteProtocolError(f"{output.tool}: payload lacks {', '.join(missing)}")


# -- agents ---------------------------------------------------------------------------------------


class Agent(msgspec.Struct, frozen=True, kw_only=True):
    """One agent as the server reported it; what it did not report stays ``None``/empty."""

    id: str
    type: str | None = None  # as reported (2.x may say "task-orchestrator")
    name: str | None = None
    status: str | None = None
    health: float | None = None
    task_count: int | None = None
    capabilities: tuple[str, ...] | None = None  # None: not reported (not "none")
    swarm_id: str | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    created_at: str | float | None = None
    last_active: str | float | None = None
    domain: str | None = None
    dialect: Dialect = "v2"

    @property
    def kind(self) -> str:
        """Colour-table type (renames mapped back, unknown -> "other")."""
        return canonical_type(self.type)

    @property
    def colour(self) -> str:
        return AGENT_COLOURS[self.kind]


class _AgentV2(msgspec.Struct, rename="camel"):
    id: str
    type: str | None = None
    name: str | None = None
    status: str | None = None
    capabilities: list[str] | None = None
    swarm_id: str | None = None
    metadata: str | dict[str, Any] | None = None
    created_at: str | float | None = None
    last_active: str | float | None = None


class _AgentV3(msgspec.Struct, rename="camel"):
    agent_id: str
    agent_type: str | None = None
    status: str | None = None
    health: float | None = None
    task_count: int | None = None
    created_at: str | float | None = None
    domain: str | None = None
    # Not in 3.x today; read if a later build adds them rather than dropping them.
    name: str | None = None
    capabilities: list[str] | None = None
    swarm_id: str | None = None


def _where(path: str, exc: msgspec.ValidationError) -> str:
    return str(exc).replace("`$", f"`{path}")


def parse_agent(raw: Any, *, path: str = "agent") -> Agent:
    """Normalise one 2.x (``id``) or 3.x (``agentId``) agent object."""
    if not isinstance(raw, dict):
        raise RemoteProtocolError(f"{path}: expected an object, got {type(raw).__name__}")
    try:
        if "agentId" in raw:
            v3 = msgspec.convert(raw, _AgentV3)
            return Agent(
                id=v3.agent_id,
                type=v3.agent_type,
                name=v3.name,
                status=v3.status,
                health=v3.health,
                task_count=v3.task_count,
                capabilities=_tuple_or_none(v3.capabilities),
                swarm_id=v3.swarm_id,
                created_at=v3.created_at,
                domain=v3.domain,
                dialect="v3",
            )
        if "id" in raw:
            v2 = msgspec.convert(raw, _AgentV2)
            return Agent(
                id=v2.id,
                type=v2.type,
                name=v2.name,
                status=v2.status,
                capabilities=_tuple_or_none(v2.capabilities),
                swarm_id=v2.swarm_id,
                metadata=_metadata(v2.metadata, path),
                created_at=v2.created_at,
                last_active=v2.last_active,
                dialect="v2",
            )
    except msgspec.ValidationError as exc:
        raise RemoteProtocolError(f"{path}: {_where(path, exc)}") from exc
    raise RemoteProtocolError(f"{path}: has neither id (2.x) nor agentId (3.x)")


def _tuple_or_none(items: list[str] | None) -> tuple[str, ...] | None:
    return None if items is None else tuple(items)


def _metadata(raw: str | dict[str, Any] | None, path: str) -> dict[str, Any]:
    # 2.x stores metadata as a JSON *string* inside the JSON document.
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        value = jsonsafe.decode(raw)
    except msgspec.DecodeError as exc:
        raise RemoteProtocolError(f"{path}.metadata: not a JSON document: {raw[:80]!r}") from exc
    if not isinstance(value, dict):
        raise RemoteProtocolError(f"{path}.metadata: JSON {type(value).__name__}, expected object")
    return value


PLACEHOLDER_AGENT_IDS = frozenset({"agent-1", "agent-2", "agent-3"})
PLACEHOLDER_AGENT_NAMES = frozenset({"coordinator-1", "researcher-1", "coder-1"})


def is_placeholder(agent: Agent) -> bool:
    """2.x's built-in fake agents, returned while no agent was spawned in the process."""
    return (
        agent.dialect == "v2"
        and agent.id in PLACEHOLDER_AGENT_IDS
        and (agent.swarm_id == "mock-swarm" or agent.name in PLACEHOLDER_AGENT_NAMES)
    )


def parse_agent_list(output: ToolOutput, *, keep_placeholders: bool = False) -> list[Agent]:
    """Agents of an ``agent_list`` payload (2.x or 3.x), placeholders dropped."""
    _require(output, "agents")
    raw = output.data["agents"]
    if not isinstance(raw, list):
        raise RemoteProtocolError(f"{output.tool}: agents is {type(raw).__name__}, expected list")
    agents = [parse_agent(a, path=f"agents[{i}]") for i, a in enumerate(raw)]
    if keep_placeholders:
        return agents
    return [a for a in agents if not is_placeholder(a)]


@dataclass(frozen=True, slots=True)
class SpawnedAgent:
    agent_id: str
    type: str | None
    name: str | None
    status: str | None


def _opt_str(output: ToolOutput, key: str) -> str | None:
    value = output.data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise RemoteProtocolError(f"{output.tool}: {key} is {type(value).__name__}, expected string")


def parse_spawn(output: ToolOutput) -> SpawnedAgent:
    """``agent_spawn`` payload: 2.x ``{agentId, type, name, status}``, 3.x adds ``agentType``."""
    _require(output, "agentId")
    agent_id = _opt_str(output, "agentId")
    if not agent_id:
        raise RemoteProtocolError(f"{output.tool}: agentId is empty")
    return SpawnedAgent(
        agent_id=agent_id,
        type=_opt_str(output, "type") or _opt_str(output, "agentType"),
        name=_opt_str(output, "name"),
        status=_opt_str(output, "status"),
    )


def parse_swarm_id(output: ToolOutput) -> str:
    """``swarm_init`` payload: both dialects carry ``swarmId``."""
    _require(output, "swarmId")
    swarm_id = _opt_str(output, "swarmId")
    if not swarm_id:
        raise RemoteProtocolError(f"{output.tool}: swarmId is empty")
    return swarm_id


class SwarmStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What ``swarm_status`` reported; fields the dialect lacks stay ``None``."""

    swarm_id: str | None = None
    status: str | None = None
    topology: str | None = None
    max_agents: int | None = None
    agent_count: int | None = None
    active_agents: int | None = None
    task_count: int | None = None
    pending_tasks: int | None = None
    completed_tasks: int | None = None


class _SwarmStatusWire(msgspec.Struct, rename="camel"):
    swarm_id: str | None = None
    status: str | None = None
    topology: str | None = None
    max_agents: int | None = None
    agent_count: int | None = None
    active_agents: int | None = None
    task_count: int | None = None
    pending_tasks: int | None = None
    completed_tasks: int | None = None


def is_no_swarm(error: ToolError) -> bool:
    """2.x says "no swarm" as a failure: ``{"success": false, "error": "No active swarm..."}``."""
    return "no active swarm" in error.detail.lower()


def parse_swarm_status(output: ToolOutput) -> SwarmStatus | None:
    """``swarm_status`` payload, or ``None`` when the server has no swarm (3.x ``no_swarm``).

    2.x's "No active swarm found" arrives as a :class:`ToolError` from
    :func:`unwrap_tool_result`; callers test it with :func:`is_no_swarm`.
    """
    _require(output)
    if output.data.get("status") == "no_swarm":
        return None
    try:
        wire = msgspec.convert(output.data, _SwarmStatusWire)
    except msgspec.ValidationError as exc:
        raise RemoteProtocolError(f"{output.tool}: {_where('payload', exc)}") from exc
    return SwarmStatus(**{f: getattr(wire, f) for f in wire.__struct_fields__})


# -- tool catalog ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    params: frozenset[str] = frozenset()
    required: frozenset[str] = frozenset()
    description: str = ""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A ready ``tools/call``: pass ``name`` and ``arguments`` to the client."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


def _str_set(value: Any) -> frozenset[str]:
    if isinstance(value, dict):
        return frozenset(k for k in value if isinstance(k, str))
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


class ToolCatalog:
    """The tools a server offers and the argument names each takes.

    Builders pick argument names from the server's own ``inputSchema`` (so 2.x gets ``type``,
    3.x ``agentType``) and drop optional arguments the tool does not declare. A tool with no
    declared properties gets the dialect's known names.
    """

    def __init__(self, tools: Iterable[ToolSpec]) -> None:
        self._tools = {t.name: t for t in tools}

    @classmethod
    def from_tools_list(cls, result: Any) -> ToolCatalog:
        """Build from a ``tools/list`` result ``{"tools": [{name, inputSchema, ...}, ...]}``."""
        if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
            raise RemoteProtocolError("tools/list: result.tools is missing or not a list")
        specs = []
        for i, tool in enumerate(result["tools"]):
            name = tool.get("name") if isinstance(tool, dict) else None
            if not isinstance(name, str) or not name:
                raise RemoteProtocolError(f"tools/list: tools[{i}].name is missing")
            schema = tool.get("inputSchema")
            schema = schema if isinstance(schema, dict) else {}
            description = tool.get("description")
            specs.append(
                ToolSpec(
                    name=name,
                    params=_str_set(schema.get("properties")),
                    required=_str_set(schema.get("required")),
                    description=description if isinstance(description, str) else "",
                )
            )
        return cls(specs)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._tools)

    def spec(self, name: str) -> ToolSpec:
        try:
            return self._tools[name]
        except KeyError:
            raise MissingToolError(name) from None

    def params(self, name: str) -> frozenset[str]:
        return self.spec(name).params

    @property
    def dialect(self) -> Dialect:
        """Best guess: 2.x has ``task_orchestrate``; 3.x has ``task_create`` and
        ``agentType``."""
        if "task_orchestrate" in self._tools:
            return "v2"
        if "task_create" in self._tools or "agentType" in self._params_of("agent_spawn"):
            return "v3"
        return "v2"

    def _params_of(self, name: str) -> frozenset[str]:
        spec = self._tools.get(name)
        return spec.params if spec else frozenset()

    def _build(self, tool: str, values: dict[str, Any], v2_names: Iterable[str]) -> ToolCall:
        spec = self.spec(tool)
        known = spec.params or frozenset(v2_names)
        return ToolCall(tool, {k: v for k, v in values.items() if v is not None and k in known})

    def _pick(self, tool: str, *candidates: str) -> str:
        """The first candidate argument name the tool declares (else the dialect's own)."""
        params = self._params_of(tool)
        for name in candidates:
            if name in params:
                return name
        return candidates[0] if self.dialect == "v2" else candidates[-1]

    def swarm_init(
        self, topology: str, *, max_agents: int | None = None, strategy: str | None = None
    ) -> ToolCall:
        values = {"topology": topology, "maxAgents": max_agents, "strategy": strategy}
        return self._build("swarm_init", values, values)

    def agent_spawn(
        self,
        agent_type: str,
        *,
        name: str | None = None,
        capabilities: list[str] | None = None,
        swarm_id: str | None = None,
    ) -> ToolCall:
        type_key = self._pick("agent_spawn", "type", "agentType")
        values = {
            type_key: agent_type,
            "name": name,
            "capabilities": capabilities,
            "swarmId": swarm_id,
        }
        return self._build("agent_spawn", values, values)

    def agent_list(
        self, *, swarm_id: str | None = None, include_terminated: bool | None = None
    ) -> ToolCall:
        values = {"swarmId": swarm_id, "includeTerminated": include_terminated}
        return self._build("agent_list", values, ("swarmId",))

    def swarm_status(self, *, swarm_id: str | None = None) -> ToolCall:
        return self._build("swarm_status", {"swarmId": swarm_id}, ("swarmId",))

    def agent_terminate(self, agent_id: str, *, force: bool | None = None) -> ToolCall:
        values = {"agentId": agent_id, "force": force}
        return self._build("agent_terminate", values, values)

    def task(
        self,
        description: str,
        *,
        task_type: str = "feature",
        priority: str | None = None,
        strategy: str | None = None,
        swarm_id: str | None = None,
    ) -> ToolCall:
        """A task: 2.x ``task_orchestrate {task}``; 3.x ``task_create {type, description}``."""
        if "task_orchestrate" in self._tools:
            values: dict[str, Any] = {
                "task": description,
                "priority": priority,
                "strategy": strategy,
                "swarmId": swarm_id,
            }
            return self._build("task_orchestrate", values, values)
        if "task_create" in self._tools:
            values = {
                "type": task_type,
                "description": description,
                "priority": priority,
                "swarmId": swarm_id,
            }
            return self._build("task_create", values, ("type", "description", "priority"))
        raise MissingToolError("task_orchestrate")
