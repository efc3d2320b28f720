"""claude-flow's dialects, spoken about a :class:`~visionflow.mcpsim.model.SwarmModel` (sans-IO).

:class:`SimDialect` answers JSON-RPC messages the way claude-flow 2.x or 3.x would
(docs/architecture.md section 10): tool names, argument names, result shapes, pretty-printed text
payloads, placeholder agents, success stubs and ``-32601`` replies.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from visionflow.mcp.framing import PROTOCOL_VERSION, RawMessage
from visionflow.mcpsim.model import TOPOLOGIES, BadArgsError, SimAgent, SwarmModel

__all__ = ["PROTOCOL_VERSION", "SimDialect"]


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


class ToolNotFoundError(Exception):
    """Internal signal, turned into -32601 right away."""


def _schema(properties: dict[str, str], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {k: {"type": t} for k, t in properties.items()},
        "required": list(required),
    }


_V2_TOOLS: dict[str, dict[str, Any]] = {
    "swarm_init": _schema(
        {"topology": "string", "maxAgents": "number", "strategy": "string"}, ("topology",)
    ),
    "agent_spawn": _schema(
        {"type": "string", "name": "string", "capabilities": "array", "swarmId": "string"},
        ("type",),
    ),
    "agent_list": _schema({"swarmId": "string"}),
    "swarm_status": _schema({"swarmId": "string"}),
    "task_orchestrate": _schema(
        {"task": "string", "strategy": "string", "priority": "string", "swarmId": "string"},
        ("task",),
    ),
    # Listed but answered with the generic stub, as 2.x does for many tools.
    "memory_usage": _schema({"action": "string", "key": "string", "value": "string"}),
    "neural_status": _schema({"modelId": "string"}),
}

_V3_TOOLS: dict[str, dict[str, Any]] = {
    "swarm_init": _schema(
        {"topology": "string", "maxAgents": "number", "strategy": "string"}, ("topology",)
    ),
    "agent_spawn": _schema(
        {"agentType": "string", "config": "object", "swarmId": "string"}, ("agentType",)
    ),
    "agent_list": _schema({"includeTerminated": "boolean", "status": "string"}),
    "agent_terminate": _schema({"agentId": "string", "force": "boolean"}, ("agentId",)),
    "swarm_status": _schema({"swarmId": "string"}),
    "task_create": _schema(
        {"type": "string", "description": "string", "priority": "string", "assignTo": "array"},
        ("type", "description"),
    ),
    "task_list": _schema({"status": "string", "limit": "number"}),
}

_PLACEHOLDERS = (
    ("agent-1", "coordinator", "coordinator-1"),
    ("agent-2", "researcher", "researcher-1"),
    ("agent-3", "coder", "coder-1"),
)


def _jsonable_text(payload: Any) -> str:
    # claude-flow sends JSON.stringify(payload, null, 2): a pretty-printed document in a string.
    return msgspec.json.format(msgspec.json.encode(payload), indent=2).decode()


class SimDialect:
    """Answers decoded JSON-RPC messages the way claude-flow ``flavor`` would.

    :meth:`handle` returns the messages to send back (dicts, one line each).
    """

    def __init__(self, model: SwarmModel) -> None:
        self.model = model
        self.flavor = model.flavor
        self.tools = _V2_TOOLS if self.flavor == "v2" else _V3_TOOLS

    # -- envelope ---------------------------------------------------------------------------

    def greeting(self) -> list[dict[str, Any]]:
        """What the server says before anyone asks: 2.x's non-standard notification."""
        if self.flavor == "v2":
            return [
                {
                    "jsonrpc": "2.0",
                    "method": "server.initialized",
                    "params": {"serverInfo": self.server_info()},
                }
            ]
        return []

    def server_info(self) -> dict[str, str]:
        version = "2.7.47" if self.flavor == "v2" else "3.0.0"
        return {"name": "claude-flow", "version": version}

    def handle(self, msg: RawMessage) -> list[dict[str, Any]]:
        if msg.method is msgspec.UNSET:
            return []  # a reply or junk from the client: a server ignores it
        method = msg.method
        if msg.id is msgspec.UNSET or msg.id is None:
            if self.flavor == "v2":
                # 2.x runs notifications through its request handler and answers with an
                # error whose id (undefined) JSON.stringify drops.
                return [
                    {
                        "jsonrpc": "2.0",
                        "error": {"code": -32601, "message": f"Method not found: {method}"},
                    }
                ]
            return []
        request_id = msg.id
        params = msg.params if isinstance(msg.params, dict) else {}
        if method == "initialize":
            return [
                self._result(
                    request_id,
                    {
                        "protocolVersion": PROTOCOL_VERSION,  # whatever the client asked
                        "capabilities": {"tools": {"listChanged": True}},
                        "serverInfo": self.server_info(),
                    },
                )
            ]
        if method == "tools/list":
            tools = [
                {"name": n, "description": f"{n} (simulated)", "inputSchema": s}
                for n, s in self.tools.items()
            ]
            return [self._result(request_id, {"tools": tools})]
        if method == "ping" and self.flavor == "v3":
            return [self._result(request_id, {})]
        if method == "tools/call":
            name = params.get("name")
            args = params.get("arguments")
            if not isinstance(name, str):
                return [self._error(request_id, -32602, "Invalid params: name is required")]
            try:
                content = self.call_tool(name, args if isinstance(args, dict) else {})
            except ToolNotFoundError:
                return [self._error(request_id, -32601, f"Tool not found: {name}")]
            return [self._result(request_id, content)]
        return [self._error(request_id, -32601, f"Method not found: {method}")]

    @staticmethod
    def _result(request_id: int | str, result: Any) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    @staticmethod
    def _error(request_id: int | str, code: int, message: str) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}

    # -- tools ------------------------------------------------------------------------------

    def call_tool(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """The ``tools/call`` result: ``{"content": [{"type": "text", "text": ...}]}``."""
        handler = getattr(self, f"_{self.flavor}_{name}", None)
        if handler is None:
            if self.flavor == "v3":
                raise ToolNotFoundError(name)
            payload: Any = {
                "success": True,
                "tool": name,
                "message": f"Tool {name} executed successfully",
                "args": args,  # as 2.7.47 echoes them
            }
            return {"content": [{"type": "text", "text": _jsonable_text(payload)}]}
        try:
            payload = handler(args)
        except BadArgsError as exc:
            if self.flavor == "v3":
                return {
                    "content": [{"type": "text", "text": f"Invalid input: {exc}"}],
                    "isError": True,
                }
            payload = {"success": False, "error": str(exc)}
        return {"content": [{"type": "text", "text": _jsonable_text(payload)}]}

    # 2.x ------------------------------------------------------------------------------------

    def _v2_swarm_init(self, args: dict[str, Any]) -> dict[str, Any]:
        topology, max_agents, strategy = _swarm_args(args)
        swarm = self.model.init_swarm(topology, max_agents, strategy)
        return {
            "success": True,
            "swarmId": swarm.id,
            "topology": swarm.topology,
            "maxAgents": swarm.max_agents,
            "strategy": swarm.strategy,
            "status": "initialized",
            "timestamp": _iso(self.model.now_ms()),
        }

    def _v2_agent_spawn(self, args: dict[str, Any]) -> dict[str, Any]:
        agent_type = _str_arg(args, "type")
        caps = args.get("capabilities")
        name = _opt_str_arg(args, "name")
        agent = self.model.spawn(
            agent_type,
            name,
            [c for c in caps if isinstance(c, str)] if isinstance(caps, list) else None,
        )
        return {
            "success": True,
            "agentId": agent.id,
            "type": agent.type,
            "name": agent.name,
            "status": "active",
            "capabilities": agent.capabilities,
            "timestamp": _iso(agent.created_ms),
        }

    def _v2_agent_list(self, args: dict[str, Any]) -> dict[str, Any]:
        requested = _opt_str_arg(args, "swarmId")
        if not self.model.agents:
            # 2.x with nothing spawned in the process answers with three built-in fakes.
            swarm_id = requested or "mock-swarm"
            now = _iso(self.model.now_ms())
            agents: list[dict[str, Any]] = [
                {
                    "id": i,
                    "swarmId": swarm_id,
                    "name": n,
                    "type": t,
                    "status": "active",
                    "capabilities": [],
                    "metadata": "{}",
                    "createdAt": now,
                    "lastActive": now,
                }
                for i, t, n in _PLACEHOLDERS
            ]
            return {"success": True, "swarmId": swarm_id, "agents": agents, "count": len(agents)}
        live = [a for a in self.model.live_agents() if requested in (None, a.swarm_id)]
        agents = [
            {
                "id": a.id,
                "swarmId": a.swarm_id,
                "name": a.name,
                "type": a.type,
                # Real 2.x always says "active"; the sim reports idle/busy so status
                # colouring can be exercised.
                "status": a.status,
                "capabilities": a.capabilities,
                "metadata": msgspec.json.encode(
                    {"taskCount": a.task_count, "currentTask": a.current_task}
                ).decode(),
                "createdAt": _iso(a.created_ms),
                "lastActive": _iso(a.last_active_ms),
            }
            for a in live
        ]
        swarm_id = requested or (self.model.swarm.id if self.model.swarm else "mock-swarm")
        return {"success": True, "swarmId": swarm_id, "agents": agents, "count": len(agents)}

    def _v2_swarm_status(self, args: dict[str, Any]) -> dict[str, Any]:
        swarm = self.model.swarm
        if swarm is None:
            return {"success": False, "error": "No active swarm found"}
        live = self.model.live_agents()
        tasks = list(self.model.tasks.values())
        return {
            "success": True,
            "swarmId": swarm.id,
            "topology": swarm.topology,
            "agentCount": len(live),
            "activeAgents": sum(a.status == "busy" for a in live),
            "taskCount": len(tasks),
            "pendingTasks": sum(t.status == "pending" for t in tasks),
            "completedTasks": sum(t.status == "completed" for t in tasks),
        }

    def _v2_task_orchestrate(self, args: dict[str, Any]) -> dict[str, Any]:
        description = _str_arg(args, "task")
        priority = _opt_str_arg(args, "priority") or "medium"
        task = self.model.add_task(description, priority)
        return {
            "success": True,
            "taskId": task.id,
            "task": task.description,
            "status": task.status,
            "priority": task.priority,
        }

    # 3.x ------------------------------------------------------------------------------------

    def _v3_swarm_init(self, args: dict[str, Any]) -> dict[str, Any]:
        topology, max_agents, strategy = _swarm_args(args)
        swarm = self.model.init_swarm(topology, max_agents, strategy)
        return {
            "success": True,
            "swarmId": swarm.id,
            "topology": swarm.topology,
            "maxAgents": swarm.max_agents,
            "strategy": swarm.strategy,
            "status": "initialized",
            "initializedAt": _iso(self.model.now_ms()),
        }

    def _v3_agent_spawn(self, args: dict[str, Any]) -> dict[str, Any]:
        agent = self.model.spawn(_str_arg(args, "agentType"))
        return {
            "success": True,
            "agentId": agent.id,
            "agentType": agent.type,
            "status": "registered",
            "createdAt": _iso(agent.created_ms),
        }

    def _v3_agent_entry(self, a: SimAgent) -> dict[str, Any]:
        status = {"busy": "active"}.get(a.status, a.status)
        entry: dict[str, Any] = {
            "agentId": a.id,
            "agentType": a.type,
            "status": status,
            "health": a.health,
            "taskCount": a.task_count,
            "createdAt": _iso(a.created_ms),
        }
        if a.type in ("coder", "tester", "reviewer"):
            entry["domain"] = "code"  # optional in 3.x: present for some agents only
        return entry

    def _v3_agent_list(self, args: dict[str, Any]) -> dict[str, Any]:
        include = args.get("includeTerminated") is True
        agents = [
            self._v3_agent_entry(a)
            for a in self.model.agents.values()
            if include or a.status != "terminated"
        ]
        return {"agents": agents, "total": len(agents), "filters": {"includeTerminated": include}}

    def _v3_agent_terminate(self, args: dict[str, Any]) -> dict[str, Any]:
        agent_id = _str_arg(args, "agentId")
        if self.model.terminate(agent_id) is None:
            return {"success": False, "agentId": agent_id, "error": "Agent not found"}
        return {
            "success": True,
            "agentId": agent_id,
            "status": "terminated",
            "terminatedAt": _iso(self.model.now_ms()),
        }

    def _v3_swarm_status(self, args: dict[str, Any]) -> dict[str, Any]:
        swarm = self.model.swarm
        if swarm is None:
            return {"status": "no_swarm"}
        tasks = list(self.model.tasks.values())
        return {
            "swarmId": swarm.id,
            "status": "running",
            "topology": swarm.topology,
            "maxAgents": swarm.max_agents,
            "agentCount": len(self.model.live_agents()),
            "taskCount": len(tasks),
            "completedTasks": sum(t.status == "completed" for t in tasks),
        }

    def _v3_task_create(self, args: dict[str, Any]) -> dict[str, Any]:
        _str_arg(args, "type")
        description = _str_arg(args, "description")
        priority = _opt_str_arg(args, "priority") or "normal"
        task = self.model.add_task(description, priority)
        return {
            "taskId": task.id,
            "type": args["type"],
            "description": description,
            "priority": priority,
            "status": task.status,
            "createdAt": _iso(task.created_ms),
            "assignedTo": [],
            "tags": [],
        }

    def _v3_task_list(self, args: dict[str, Any]) -> dict[str, Any]:
        tasks = [
            {
                "taskId": t.id,
                "description": t.description,
                "status": t.status,
                "priority": t.priority,
                "assignedTo": [t.assigned_to] if t.assigned_to else [],
            }
            for t in self.model.tasks.values()
        ]
        return {"tasks": tasks, "total": len(tasks), "filters": {}}


def _str_arg(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise BadArgsError(f"{key} is required and must be a non-empty string")
    return value


def _opt_str_arg(args: dict[str, Any], key: str) -> str | None:
    value = args.get(key)
    return value if isinstance(value, str) and value else None


def _swarm_args(args: dict[str, Any]) -> tuple[str, int, str]:
    topology = _str_arg(args, "topology")
    if topology not in TOPOLOGIES:
        raise BadArgsError(f"topology must be one of {', '.join(TOPOLOGIES)}")
    max_agents = args.get("maxAgents", 8)
    if (
        not isinstance(max_agents, int)
        or isinstance(max_agents, bool)
        or not 1 <= max_agents <= 100
    ):
        raise BadArgsError("maxAgents must be an integer from 1 to 100")
    strategy = args.get("strategy", "balanced")
    return topology, max_agents, strategy if isinstance(strategy, str) else "balanced"
