"""The simulator's swarm and dialects, without sockets: what claude-flow would answer."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from visionflow.mcp.claudeflow import (
    ToolCatalog,
    ToolError,
    is_no_swarm,
    parse_agent_list,
    parse_spawn,
    parse_swarm_status,
    unwrap_tool_result,
)
from visionflow.mcp.framing import RawMessage
from visionflow.mcpsim.dialect import SimDialect
from visionflow.mcpsim.model import MAX_AGENTS, MAX_OPEN_TASKS, Flavor, SwarmModel


def fake_clock() -> Any:
    now = [1_700_000_000_000]

    def clock() -> int:
        now[0] += 7
        return now[0]

    return clock


def dialect(flavor: Flavor, seed: int = 3) -> SimDialect:
    return SimDialect(SwarmModel(flavor, seed=seed, clock_ms=fake_clock()))


def request(method: str, params: Any = None, rid: int = 1) -> RawMessage:
    return RawMessage(jsonrpc="2.0", id=rid, method=method, params=params)


def call(d: SimDialect, tool: str, args: dict[str, Any] | None = None) -> Any:
    (reply,) = d.handle(request("tools/call", {"name": tool, "arguments": args or {}}))
    return reply


def test_seeded_swarm_is_deterministic() -> None:
    def run(seed: int) -> list[tuple[str, str, str, int]]:
        model = SwarmModel("v3", seed=seed, clock_ms=fake_clock())
        for _ in range(40):
            model.tick()
        return [(a.id, a.type, a.status, a.task_count) for a in model.agents.values()]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_living_swarm_changes() -> None:
    model = SwarmModel("v3", seed=1, clock_ms=fake_clock())
    statuses: set[str] = set()
    for _ in range(60):
        model.tick()
        statuses |= {a.status for a in model.agents.values()}
    assert model.swarm is not None
    assert {"idle", "busy"} <= statuses
    assert any(t.status == "completed" for t in model.tasks.values())
    assert sum(a.task_count for a in model.agents.values()) > 0


def test_without_autopilot_only_given_work_moves() -> None:
    model = SwarmModel("v2", seed=1, clock_ms=fake_clock())
    model.tick(autopilot=False)
    assert model.swarm is None and not model.agents
    agent = model.spawn("coder")
    task = model.add_task("t")
    model.tick(autopilot=False)
    assert task.status == "in_progress" and agent.status == "busy"
    for _ in range(50):
        model.tick(autopilot=False)
    assert task.status == "completed" and agent.task_count == 1


def test_initialize_and_v2_greeting() -> None:
    d = dialect("v2")
    (hello,) = d.greeting()
    assert hello["method"] == "server.initialized" and "id" not in hello
    (reply,) = d.handle(request("initialize", {"protocolVersion": "1999-01-01"}))
    assert reply["result"]["protocolVersion"] == "2024-11-05"
    assert dialect("v3").greeting() == []


def test_notifications_v2_answers_idless_error_v3_silent() -> None:
    note = RawMessage(jsonrpc="2.0", method="notifications/initialized")
    (err,) = dialect("v2").handle(note)
    assert "id" not in err and err["error"]["code"] == -32601
    assert dialect("v3").handle(note) == []


@pytest.mark.parametrize("flavor", ["v2", "v3"])
def test_unknown_method_is_32601(flavor: Flavor) -> None:
    (reply,) = dialect(flavor).handle(request("resources/list", rid=9))
    assert reply["id"] == 9 and reply["error"]["code"] == -32601


def test_ping_only_in_v3() -> None:
    assert dialect("v3").handle(request("ping"))[0]["result"] == {}
    assert dialect("v2").handle(request("ping"))[0]["error"]["code"] == -32601


def test_unknown_tool_v2_stub_v3_error() -> None:
    stub = unwrap_tool_result("nope", call(dialect("v2"), "nope")["result"])
    assert stub.stub and stub.data["message"] == "Tool nope executed successfully"
    err = call(dialect("v3"), "nope")["error"]
    assert err == {"code": -32601, "message": "Tool not found: nope"}


def test_text_is_pretty_printed() -> None:
    text = call(dialect("v2"), "agent_list")["result"]["content"][0]["text"]
    assert text.startswith("{\n  ")
    assert msgspec.json.decode(text)["count"] == 3


def test_v2_placeholders_then_real_agents() -> None:
    d = dialect("v2")
    out = unwrap_tool_result("agent_list", call(d, "agent_list", {"swarmId": "wanted"})["result"])
    assert out.data["swarmId"] == "wanted"
    assert [a["id"] for a in out.data["agents"]] == ["agent-1", "agent-2", "agent-3"]
    assert parse_agent_list(out) == []  # all placeholders
    swarm = unwrap_tool_result(
        "swarm_init", call(d, "swarm_init", {"topology": "star", "maxAgents": 4})["result"]
    )
    assert swarm.data["swarmId"].startswith("swarm_")
    spawned = parse_spawn(
        unwrap_tool_result(
            "agent_spawn", call(d, "agent_spawn", {"type": "coordinator", "name": "boss"})["result"]
        )
    )
    assert spawned.type == "task-orchestrator" and spawned.agent_id.startswith("agent_")
    agents = parse_agent_list(unwrap_tool_result("agent_list", call(d, "agent_list")["result"]))
    assert [(a.id, a.name, a.kind) for a in agents] == [(spawned.agent_id, "boss", "coordinator")]
    assert agents[0].metadata == {"taskCount": 0, "currentTask": None}


def test_v2_swarm_status_no_swarm_then_status() -> None:
    d = dialect("v2")
    with pytest.raises(ToolError) as info:
        unwrap_tool_result("swarm_status", call(d, "swarm_status")["result"])
    assert is_no_swarm(info.value)
    call(d, "swarm_init", {"topology": "ring"})
    call(d, "task_orchestrate", {"task": "write docs"})
    status = parse_swarm_status(
        unwrap_tool_result("swarm_status", call(d, "swarm_status")["result"])
    )
    assert status is not None and status.task_count == 1 and status.pending_tasks == 1


def test_v3_shapes() -> None:
    d = dialect("v3")
    assert (
        parse_swarm_status(unwrap_tool_result("swarm_status", call(d, "swarm_status")["result"]))
        is None
    )
    spawned = parse_spawn(
        unwrap_tool_result("agent_spawn", call(d, "agent_spawn", {"agentType": "tester"})["result"])
    )
    (agent,) = parse_agent_list(unwrap_tool_result("agent_list", call(d, "agent_list")["result"]))
    assert agent.id == spawned.agent_id and agent.type == "tester" and agent.health == 1.0
    assert agent.name is None and agent.domain == "code"
    task = unwrap_tool_result(
        "task_create", call(d, "task_create", {"type": "bugfix", "description": "fix"})["result"]
    )
    assert task.data["status"] == "pending" and task.data["taskId"]
    term = unwrap_tool_result(
        "agent_terminate", call(d, "agent_terminate", {"agentId": agent.id})["result"]
    )
    assert term.data["status"] == "terminated"
    assert parse_agent_list(unwrap_tool_result("agent_list", call(d, "agent_list")["result"])) == []
    kept = unwrap_tool_result(
        "agent_list", call(d, "agent_list", {"includeTerminated": True})["result"]
    )
    assert [a.status for a in parse_agent_list(kept)] == ["terminated"]
    with pytest.raises(ToolError, match="Agent not found"):
        unwrap_tool_result(
            "agent_terminate", call(d, "agent_terminate", {"agentId": "ghost"})["result"]
        )


def test_bad_arguments_v2_success_false_v3_is_error() -> None:
    with pytest.raises(ToolError, match="type is required"):
        unwrap_tool_result("agent_spawn", call(dialect("v2"), "agent_spawn", {})["result"])
    result = call(dialect("v3"), "agent_spawn", {"type": "coder"})["result"]
    assert result["isError"] is True
    with pytest.raises(ToolError, match="agentType is required"):
        unwrap_tool_result("agent_spawn", result)
    with pytest.raises(ToolError, match="topology"):
        unwrap_tool_result(
            "swarm_init", call(dialect("v3"), "swarm_init", {"topology": "blob"})["result"]
        )


@pytest.mark.parametrize("flavor", ["v2", "v3"])
def test_catalog_from_sim_builds_working_calls(flavor: Flavor) -> None:
    d = dialect(flavor)
    (listing,) = d.handle(request("tools/list"))
    cat = ToolCatalog.from_tools_list(listing["result"])
    assert cat.dialect == flavor
    for tc in (
        cat.swarm_init("mesh", max_agents=6),
        cat.agent_spawn("coder", name="x"),
        cat.task("do it"),
    ):
        unwrap_tool_result(tc.name, call(d, tc.name, tc.arguments)["result"])
    agents = parse_agent_list(
        unwrap_tool_result(
            "agent_list", call(d, "agent_list", cat.agent_list().arguments)["result"]
        )
    )
    assert len(agents) == 1


def test_replies_to_client_replies_are_ignored() -> None:
    assert dialect("v2").handle(RawMessage(jsonrpc="2.0", id=1, result={})) == []


@pytest.mark.parametrize("flavor", ["v2", "v3"])
def test_tool_calls_cannot_grow_the_simulator_without_bound(flavor: Flavor) -> None:
    d = dialect(flavor)
    for _ in range(MAX_AGENTS):
        d.model.spawn("coder")
    reply = call(d, "agent_spawn", {"type" if flavor == "v2" else "agentType": "coder"})
    text = reply["result"]["content"][0]["text"]
    assert f"at most {MAX_AGENTS} agents" in text
    assert len(d.model.agents) == MAX_AGENTS
    for i in range(MAX_OPEN_TASKS):
        d.model.add_task(f"t{i}")
    with pytest.raises(ValueError, match="open tasks"):
        d.model.add_task("one more")
