from __future__ import annotations

from visionflow.graph.agents import AgentGraph
from visionflow.graph.store import AGENT_FLAG, GraphStore, NodeKind
from visionflow.mcp.claudeflow import Agent


def agent(agent_id: str, **kw: object) -> Agent:
    return Agent(id=agent_id, **kw)  # type: ignore[arg-type]


def ids_by_agent(graph: AgentGraph) -> dict[str, int]:
    return {a["agent_id"]: a["id"] for a in graph.agents_json()}


def test_stable_ids_across_reordering_and_reconnects() -> None:
    store = GraphStore()
    graph = AgentGraph(store)
    a, b, c = agent("a", type="coder"), agent("b", type="tester"), agent("c")
    assert graph.update("local", [a, b, c], live=True)
    first = ids_by_agent(graph)
    assert all(i & AGENT_FLAG for i in first.values())
    assert not graph.update("local", [a, b, c], live=True)  # nothing changed
    graph.update("local", [c, a, b], live=True)
    assert ids_by_agent(graph) == first
    assert graph.update("local", [], live=False)  # server died: kept, marked not live
    assert ids_by_agent(graph) == first
    assert all(not x["live"] for x in graph.agents_json())
    assert not graph.update("local", [], live=False)
    graph.update("local", [b, a, c], live=True)  # back: same ids, live again
    assert ids_by_agent(graph) == first
    assert all(x["live"] for x in graph.agents_json())


def test_vanished_agents_are_removed_and_fields_are_not_invented() -> None:
    store = GraphStore()
    graph = AgentGraph(store)
    graph.update("e", [agent("a", type="task-orchestrator"), agent("b")], live=True)
    rev = store.revision
    graph.update("e", [agent("a", type="task-orchestrator")], live=True)
    assert store.revision > rev
    assert list(ids_by_agent(graph)) == ["a"]
    only = graph.agents_json()[0]
    assert only["kind"] == "coordinator"  # renamed type mapped back for colour
    assert only["colour"] == "#00FFFF"
    assert only["health"] is None and only["task_count"] is None and only["name"] is None
    assert len(store) == 1


def test_edges_only_from_reported_relations() -> None:
    store = GraphStore()
    graph = AgentGraph(store)
    agents = [
        agent("lead", swarm_id="s1"),
        agent("w1", swarm_id="s1", metadata={"parentId": "lead"}),
        agent("loner"),
    ]
    graph.update("e", agents, live=True)
    data = graph.data_json()
    assert [(h["kind"], h["hub_id"]) for h in data["hubs"]] == [("swarm", "s1")]
    hub = data["hubs"][0]["id"]
    ids = ids_by_agent(graph)
    pairs = {(e["source"], e["target"]) for e in data["edges"]}
    assert pairs == {(ids["lead"], hub), (ids["w1"], hub), (ids["w1"], ids["lead"])}
    # the swarm ends: its hub node and edges go, agents stay
    graph.update("e", [agent("loner")], live=True)
    data = graph.data_json()
    assert data["hubs"] == [] and data["edges"] == []
    assert len(store) == 1
    assert store.node_by_key(NodeKind.AGENT, "e/swarm/s1") is None


def test_endpoints_are_independent() -> None:
    store = GraphStore()
    graph = AgentGraph(store)
    graph.update("one", [agent("x")], live=True)
    graph.update("two", [agent("x")], live=True)
    one, two = graph.agents_json("one")[0]["id"], graph.agents_json("two")[0]["id"]
    assert one != two
    graph.update("two", [], live=False)
    assert graph.agents_json("one")[0]["live"]


def test_task_assignment_edges_when_reported() -> None:
    store = GraphStore()
    graph = AgentGraph(store)
    graph.update(
        "e",
        [
            agent("a", metadata={"currentTask": "t1"}),
            agent("b", metadata={"currentTask": "t1"}),
            agent("c", metadata={"currentTask": None}),
        ],
        live=True,
    )
    data = graph.data_json()
    assert [(h["kind"], h["hub_id"]) for h in data["hubs"]] == [("task", "t1")]
    ids = ids_by_agent(graph)
    task = data["hubs"][0]["id"]
    assert {(e["source"], e["target"]) for e in data["edges"]} == {
        (ids["a"], task),
        (ids["b"], task),
    }
    graph.update(
        "e", [agent("a", metadata={"currentTask": None}), agent("b"), agent("c")], live=True
    )
    assert graph.data_json()["hubs"] == []
