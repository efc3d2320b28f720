from __future__ import annotations

import threading

import pytest
from support.locks import lock_held_elsewhere

from visionflow.errors import GraphError
from visionflow.graph.agents import AgentGraph
from visionflow.graph.store import GraphStore, NodeKind
from visionflow.mcp.claudeflow import Agent
from visionflow.protocol.wire import AGENT_FLAG


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


def test_an_update_that_does_not_fit_changes_nothing() -> None:
    # Before: nodes were upserted one by one until the store was full, leaving agent nodes
    # no one tracked (never removed), and the error crashed the endpoint's watcher.
    store = GraphStore(max_nodes=6)
    store.import_document({"nodes": [{"id": "n1"}, {"id": "n2"}, {"id": "n3"}]})
    graph = AgentGraph(store)
    before = (store.version, len(store))
    four = [agent(f"a{i}", swarm_id="s") for i in range(4)]  # 4 agents + a swarm hub
    with pytest.raises(GraphError) as info:
        graph.update("ep", four, live=True)
    assert info.value.code == "graph_full" and "max_nodes = 6" in info.value.message
    assert (store.version, len(store)) == before and graph.agents_json() == []
    assert graph.update("ep", four[:2], live=True)  # 2 agents + hub fit
    assert len(store) == 6 and store.edge_count == 2
    graph.update("ep", [], live=True)
    assert len(store) == 3 and store.edge_count == 0


def test_agent_edges_must_fit_too() -> None:
    store = GraphStore(max_edges=1)
    graph = AgentGraph(store)
    pair = [agent("a", swarm_id="s"), agent("b", swarm_id="s")]  # two edges to the hub
    with pytest.raises(GraphError, match="max_edges = 1"):
        graph.update("ep", pair, live=True)
    assert len(store) == 0
    assert graph.update("ep", pair[:1], live=True) and store.edge_count == 1
    assert not graph.update("ep", pair[:1], live=True)  # the same again fits, unchanged


def test_a_poll_while_the_graph_is_held_changes_nothing_and_the_next_one_applies() -> None:
    # An import or an export holds the store's lock for seconds; the poll runs on the event
    # loop, which must not wait for it: graph_busy, nothing applied, the next poll retries.
    store = GraphStore()
    graph = AgentGraph(store)
    graph.update("ep", [agent("a")], live=True)
    with lock_held_elsewhere(store), pytest.raises(GraphError) as err:
        graph.update("ep", [agent("a"), agent("b")], live=True)
    assert err.value.code == "graph_busy"
    assert set(ids_by_agent(graph)) == {"a"}  # nothing of the refused poll
    assert graph.update("ep", [agent("a"), agent("b")], live=True) is not None
    assert set(ids_by_agent(graph)) == {"a", "b"}


def test_a_report_gives_only_what_changed_with_one_revision_more_each_time() -> None:
    store = GraphStore()
    graph = AgentGraph(store)
    first = graph.update("ep", [agent("a"), agent("b"), agent("c")], live=True)
    assert first is not None
    assert (first.endpoint, first.revision, first.live, first.total) == ("ep", 1, True, 3)
    assert sorted(a["agent_id"] for a in first.changed) == ["a", "b", "c"] and not first.removed
    # one status changes and one agent leaves: two entries, not the whole list
    second = graph.update("ep", [agent("a", status="busy"), agent("b")], live=True)
    assert second is not None and second.revision == 2 and second.total == 2
    assert [(a["agent_id"], a["status"]) for a in second.changed] == [("a", "busy")]
    assert second.changed[0]["id"] == ids_by_agent(graph)["a"]  # the node's flagged id
    assert second.removed == ["c"]
    assert graph.update("ep", [agent("a", status="busy"), agent("b")], live=True) is None
    # unreachable: every agent is sent again, marked not live; back: all again, live
    down = graph.update("ep", [], live=False)
    assert down is not None and down.revision == 3 and not down.live
    assert sorted(a["agent_id"] for a in down.changed) == ["a", "b"]
    assert all(not a["live"] for a in down.changed)
    back = graph.update("ep", [agent("a", status="busy"), agent("b")], live=True)
    assert back is not None and back.revision == 4 and all(a["live"] for a in back.changed)
    assert graph.revisions() == {"ep": 4}
    assert graph.data_json()["revisions"] == {"ep": 4}


def test_a_poll_in_a_worker_thread_waits_for_the_lock_up_to_its_bound() -> None:
    store = GraphStore()
    graph = AgentGraph(store)
    with lock_held_elsewhere(store), pytest.raises(GraphError) as err:
        graph.update("ep", [agent("a")], live=True, wait=0.05)
    assert err.value.code == "graph_busy"
    assert graph.update("ep", [agent("a")], live=True, wait=5.0) is not None


def test_readers_see_whole_reports_while_updates_run_in_another_thread() -> None:
    # The service applies polls in worker threads while the event loop serves agents_json:
    # each read sees one report or the next, never a dict changing under it.
    store = GraphStore()
    graph = AgentGraph(store)
    done = threading.Event()
    errors: list[BaseException] = []

    def poll() -> None:
        try:
            for i in range(200):
                agents = [agent(f"a{j}", status=str(i)) for j in range(i % 7 + 1)]
                graph.update(f"ep{i % 3}", agents, live=True, wait=5.0)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=poll)
    thread.start()
    while not done.is_set():
        for listed in graph.agents_json():
            assert listed["live"] is True
    thread.join(30)
    assert not errors
    assert {a["endpoint"] for a in graph.agents_json()} == {"ep0", "ep1", "ep2"}
