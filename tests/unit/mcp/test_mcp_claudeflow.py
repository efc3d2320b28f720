"""claude-flow compatibility: tool results, agents, placeholders, colours, the tool catalog."""

from __future__ import annotations

import json
from typing import Any

import pytest

from visionflow.errors import RemoteProtocolError, RpcRemoteError
from visionflow.mcp.claudeflow import (
    AGENT_COLOURS,
    MissingToolError,
    ToolCatalog,
    ToolError,
    ToolOutput,
    agent_colour,
    canonical_type,
    is_no_swarm,
    is_placeholder,
    parse_agent,
    parse_agent_list,
    parse_spawn,
    parse_swarm_id,
    parse_swarm_status,
    unwrap_tool_result,
)


def text_result(payload: Any, *, is_error: bool = False, raw: str | None = None) -> dict[str, Any]:
    text = raw if raw is not None else json.dumps(payload, indent=2)
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}]}
    if is_error:
        result["isError"] = True
    return result


# -- unwrap ---------------------------------------------------------------------------------------


def test_unwrap_parses_pretty_printed_text() -> None:
    out = unwrap_tool_result("swarm_init", text_result({"success": True, "swarmId": "s1"}))
    assert out == ToolOutput("swarm_init", {"success": True, "swarmId": "s1"}, stub=False)


def test_success_stub_is_no_data() -> None:
    stub = {
        "success": True,
        "tool": "agent_list",
        "message": "Tool agent_list executed successfully",
    }
    out = unwrap_tool_result("agent_list", text_result(stub))
    assert out.stub
    with pytest.raises(RemoteProtocolError, match="stub"):
        parse_agent_list(out)


def test_success_with_data_is_not_stub() -> None:
    payload = {
        "success": True,
        "tool": "x",
        "message": "Tool x executed successfully",
        "agents": [],
    }
    assert not unwrap_tool_result("x", text_result(payload)).stub


def test_success_false_is_tool_error() -> None:
    with pytest.raises(ToolError) as info:
        unwrap_tool_result(
            "swarm_status", text_result({"success": False, "error": "No active swarm found"})
        )
    err = info.value
    assert isinstance(err, RpcRemoteError) and err.tool == "swarm_status"
    assert err.detail == "No active swarm found" and is_no_swarm(err)


def test_success_false_without_reason() -> None:
    with pytest.raises(ToolError, match="no reason"):
        unwrap_tool_result("t", text_result({"success": False}))


def test_is_error_plain_text() -> None:
    with pytest.raises(ToolError, match="Invalid input: agentType is required") as info:
        unwrap_tool_result(
            "agent_spawn",
            text_result(None, is_error=True, raw="Invalid input: agentType is required"),
        )
    assert not is_no_swarm(info.value)


def test_is_error_json_text() -> None:
    with pytest.raises(ToolError, match="bad thing"):
        unwrap_tool_result("t", text_result({"error": "bad thing"}, is_error=True))


@pytest.mark.parametrize(
    ("result", "match"),
    [
        ([], "expected an object"),
        ({}, "content is missing"),
        ({"content": []}, "content is missing"),
        ({"content": ["x"]}, r"content\[0\].text"),
        ({"content": [{"type": "text", "text": 5}]}, r"content\[0\].text"),
        ({"content": [{"type": "text", "text": "not json"}]}, "not JSON"),
        ({"content": [{"type": "text", "text": "[1,2]"}]}, "JSON list"),
    ],
)
def test_malformed_results(result: Any, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        unwrap_tool_result("t", result)


# -- agents ---------------------------------------------------------------------------------------

V2_AGENT = {
    "id": "agent_1735000000000_abc123",
    "swarmId": "swarm_1",
    "name": "coder-7",
    "type": "task-orchestrator",
    "status": "active",
    "capabilities": ["code", "review"],
    "metadata": '{"taskCount": 3, "tier": "a"}',
    "createdAt": "2025-08-01T10:00:00.000Z",
    "lastActive": "2025-08-01T10:05:00.000Z",
}

V3_AGENT = {
    "agentId": "agent-1735-xyz",
    "agentType": "coder",
    "status": "idle",
    "health": 0.97,
    "taskCount": 2,
    "createdAt": "2025-08-01T10:00:00.000Z",
}


def test_v2_agent_normalised() -> None:
    agent = parse_agent(V2_AGENT)
    assert agent.id == V2_AGENT["id"] and agent.name == "coder-7" and agent.swarm_id == "swarm_1"
    assert agent.type == "task-orchestrator" and agent.kind == "coordinator"
    assert agent.colour == "#00FFFF"
    assert agent.capabilities == ("code", "review")
    assert agent.metadata == {"taskCount": 3, "tier": "a"}
    assert agent.last_active == "2025-08-01T10:05:00.000Z"
    # Not reported by 2.x: not invented.
    assert agent.health is None and agent.task_count is None and agent.domain is None


def test_v3_agent_normalised() -> None:
    agent = parse_agent({**V3_AGENT, "domain": "code"})
    assert (agent.id, agent.type, agent.status, agent.health, agent.task_count) == (
        "agent-1735-xyz",
        "coder",
        "idle",
        0.97,
        2,
    )
    assert agent.domain == "code" and agent.dialect == "v3"
    # Not reported by 3.x: not invented.
    assert agent.name is None and agent.capabilities is None and agent.metadata == {}
    assert agent.last_active is None and agent.swarm_id is None


def test_minimal_agents_keep_none() -> None:
    assert parse_agent({"id": "a"}).type is None
    v3 = parse_agent({"agentId": "b"})
    assert v3.status is None and v3.kind == "other"


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("x", "expected an object"),
        ({"name": "no id"}, "neither id"),
        ({"id": 5}, r"agents\[4\]"),
        ({"agentId": "a", "health": "good"}, "health"),
        ({"id": "a", "metadata": "{broken"}, "metadata"),
        ({"id": "a", "metadata": "[1]"}, "metadata"),
        ({"id": "a", "capabilities": "code"}, "capabilities"),
    ],
)
def test_malformed_agents_name_the_problem(raw: Any, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        parse_agent(raw, path="agents[4]")


def test_metadata_dict_or_empty_accepted() -> None:
    assert parse_agent({"id": "a", "metadata": {"k": 1}}).metadata == {"k": 1}
    assert parse_agent({"id": "a", "metadata": ""}).metadata == {}


def placeholders(swarm: str = "mock-swarm") -> list[dict[str, Any]]:
    return [
        {"id": f"agent-{i}", "swarmId": swarm, "name": n, "type": t, "status": "active"}
        for i, (n, t) in enumerate(
            [
                ("coordinator-1", "coordinator"),
                ("researcher-1", "researcher"),
                ("coder-1", "coder"),
            ],
            start=1,
        )
    ]


@pytest.mark.parametrize("swarm", ["mock-swarm", "swarm_requested_42"])
def test_placeholders_filtered(swarm: str) -> None:
    payload = {
        "success": True,
        "swarmId": swarm,
        "agents": [*placeholders(swarm), V2_AGENT],
        "count": 4,
    }
    out = ToolOutput("agent_list", payload)
    agents = parse_agent_list(out)
    assert [a.id for a in agents] == [V2_AGENT["id"]]
    assert len(parse_agent_list(out, keep_placeholders=True)) == 4
    assert all(is_placeholder(parse_agent(p)) for p in placeholders(swarm))


def test_lookalikes_are_not_placeholders() -> None:
    assert not is_placeholder(parse_agent({"id": "agent-1", "swarmId": "real", "name": "mine"}))
    assert not is_placeholder(parse_agent({"agentId": "agent-1", "agentType": "coordinator"}))
    assert not is_placeholder(parse_agent({"id": "agent_1", "swarmId": "mock-swarm"}))


def test_v3_agent_list() -> None:
    out = ToolOutput("agent_list", {"agents": [V3_AGENT], "total": 1, "filters": {}})
    (agent,) = parse_agent_list(out)
    assert agent.id == "agent-1735-xyz"


def test_agent_list_malformed() -> None:
    with pytest.raises(RemoteProtocolError, match="lacks agents"):
        parse_agent_list(ToolOutput("agent_list", {"total": 0}))
    with pytest.raises(RemoteProtocolError, match="expected list"):
        parse_agent_list(ToolOutput("agent_list", {"agents": {}}))
    with pytest.raises(RemoteProtocolError, match=r"agents\[1\]"):
        parse_agent_list(ToolOutput("agent_list", {"agents": [V2_AGENT, {"id": None}]}))


# -- types and colours ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reported", "kind"),
    [
        ("task-orchestrator", "coordinator"),
        ("code-analyzer", "analyst"),
        ("perf-analyzer", "optimizer"),
        ("api-docs", "documenter"),
        ("system-architect", "architect"),
        ("Coder", "coder"),
        ("tester", "tester"),
        ("quantum-wizard", "other"),
        (None, "other"),
        ("", "other"),
    ],
)
def test_canonical_type(reported: str | None, kind: str) -> None:
    assert canonical_type(reported) == kind


def test_colour_table_matches_reference() -> None:
    assert AGENT_COLOURS == {
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
    assert agent_colour("perf-analyzer") == "#7FFFD4"
    assert agent_colour("unknown") == "#95A5A6"


# -- other payloads -------------------------------------------------------------------------------


def test_parse_spawn_both_dialects() -> None:
    v2 = parse_spawn(
        ToolOutput(
            "agent_spawn",
            {"success": True, "agentId": "a1", "type": "coder", "name": "c", "status": "active"},
        )
    )
    assert (v2.agent_id, v2.type, v2.name, v2.status) == ("a1", "coder", "c", "active")
    v3 = parse_spawn(ToolOutput("agent_spawn", {"agentId": "a2", "agentType": "tester"}))
    assert (v3.agent_id, v3.type, v3.name) == ("a2", "tester", None)
    with pytest.raises(RemoteProtocolError, match="agentId"):
        parse_spawn(ToolOutput("agent_spawn", {"success": True}))
    with pytest.raises(RemoteProtocolError, match="expected string"):
        parse_spawn(ToolOutput("agent_spawn", {"agentId": 7}))


def test_parse_swarm_id() -> None:
    assert parse_swarm_id(ToolOutput("swarm_init", {"swarmId": "s"})) == "s"
    with pytest.raises(RemoteProtocolError):
        parse_swarm_id(ToolOutput("swarm_init", {"swarmId": ""}))


def test_swarm_status_v2_v3_and_no_swarm() -> None:
    v2 = parse_swarm_status(
        ToolOutput(
            "swarm_status",
            {
                "success": True,
                "swarmId": "s",
                "topology": "mesh",
                "agentCount": 3,
                "activeAgents": 1,
                "taskCount": 4,
                "pendingTasks": 2,
                "completedTasks": 1,
            },
        )
    )
    assert v2 is not None and (v2.agent_count, v2.pending_tasks, v2.max_agents) == (3, 2, None)
    v3 = parse_swarm_status(
        ToolOutput(
            "swarm_status",
            {"swarmId": "s", "status": "running", "maxAgents": 8, "agentCount": 2, "taskCount": 0},
        )
    )
    assert v3 is not None and (v3.status, v3.max_agents, v3.active_agents) == ("running", 8, None)
    assert parse_swarm_status(ToolOutput("swarm_status", {"status": "no_swarm"})) is None
    with pytest.raises(RemoteProtocolError, match="agentCount"):
        parse_swarm_status(ToolOutput("swarm_status", {"agentCount": "three"}))


# -- catalog --------------------------------------------------------------------------------------


def tools_list(spec: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "tools": [
            {
                "name": n,
                "description": "d",
                "inputSchema": {
                    "type": "object",
                    "properties": {p: {} for p in params},
                    "required": params[:1],
                },
            }
            for n, params in spec.items()
        ]
    }


V2_TOOLS = tools_list(
    {
        "swarm_init": ["topology", "maxAgents", "strategy"],
        "agent_spawn": ["type", "name", "capabilities", "swarmId"],
        "agent_list": ["swarmId"],
        "swarm_status": ["swarmId"],
        "task_orchestrate": ["task", "strategy", "priority", "swarmId"],
    }
)
V3_TOOLS = tools_list(
    {
        "swarm_init": ["topology", "maxAgents", "strategy"],
        "agent_spawn": ["agentType", "config", "swarmId"],
        "agent_list": ["includeTerminated", "status"],
        "agent_terminate": ["agentId", "force"],
        "swarm_status": ["swarmId"],
        "task_create": ["type", "description", "priority", "assignTo"],
    }
)


def test_catalog_v2() -> None:
    cat = ToolCatalog.from_tools_list(V2_TOOLS)
    assert cat.dialect == "v2" and "agent_spawn" in cat and len(cat) == 5
    assert cat.params("agent_list") == {"swarmId"}
    assert cat.spec("swarm_init").required == {"topology"}
    spawn = cat.agent_spawn("coder", name="c1", capabilities=["x"], swarm_id="s")
    assert spawn.name == "agent_spawn"
    assert spawn.arguments == {"type": "coder", "name": "c1", "capabilities": ["x"], "swarmId": "s"}
    task = cat.task("build it", priority="high", swarm_id="s")
    assert task.name == "task_orchestrate" and task.arguments == {
        "task": "build it",
        "priority": "high",
        "swarmId": "s",
    }
    assert cat.agent_list(swarm_id="s", include_terminated=True).arguments == {"swarmId": "s"}
    assert cat.swarm_init("mesh", max_agents=5).arguments == {"topology": "mesh", "maxAgents": 5}
    with pytest.raises(MissingToolError) as info:
        cat.agent_terminate("a")
    assert info.value.code == -32601


def test_catalog_v3() -> None:
    cat = ToolCatalog.from_tools_list(V3_TOOLS)
    assert cat.dialect == "v3"
    spawn = cat.agent_spawn("coder", name="dropped", capabilities=["dropped"], swarm_id="s")
    assert spawn.arguments == {"agentType": "coder", "swarmId": "s"}
    task = cat.task("build it", priority="high", swarm_id="s")
    assert task.name == "task_create"
    assert task.arguments == {"type": "feature", "description": "build it", "priority": "high"}
    assert cat.agent_list(swarm_id="s", include_terminated=True).arguments == {
        "includeTerminated": True
    }
    assert cat.agent_terminate("a1").arguments == {"agentId": "a1"}
    assert cat.swarm_status().arguments == {}


def test_catalog_without_schemas_falls_back_to_dialect_names() -> None:
    cat = ToolCatalog.from_tools_list({"tools": [{"name": "agent_spawn"}, {"name": "task_create"}]})
    assert cat.dialect == "v3"
    assert cat.agent_spawn("coder").arguments == {"agentType": "coder"}


def test_catalog_no_task_tool() -> None:
    with pytest.raises(MissingToolError):
        ToolCatalog.from_tools_list({"tools": []}).task("x")


@pytest.mark.parametrize(
    ("result", "match"),
    [
        ({}, "result.tools"),
        ({"tools": {}}, "result.tools"),
        ({"tools": [{"description": "no name"}]}, r"tools\[0\].name"),
        ({"tools": ["x"]}, r"tools\[0\].name"),
    ],
)
def test_catalog_malformed(result: Any, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        ToolCatalog.from_tools_list(result)
