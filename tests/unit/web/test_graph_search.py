"""Search and filters of ``/api/graph/data`` and ``/api/graph/neighbours/{id}``, without HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from visionflow.errors import GraphError
from visionflow.graph.agents import AgentGraph
from visionflow.graph.store import GraphStore, NodeKind
from visionflow.mcp.claudeflow import Agent
from visionflow.web import routes_graph
from visionflow.web.routes_graph import (
    NodeFilter,
    PositionIndex,
    _filtered_page,
    _neighbours,
    node_kind,
)

NOWHERE = PositionIndex(None)


def _store() -> GraphStore:
    """A small notes vault (pages, a placeholder), an imported node, and a swarm."""
    store = GraphStore()
    store.import_document(
        {
            "nodes": [
                {
                    "id": "note:physics",
                    "label": "Physics",
                    "group": "note",
                    "metadata": {"aliases": ["Naturlehre", "STRASSE"], "tags": []},
                },
                {"id": "note:swarm", "label": "Swarm", "group": "note", "metadata": {}},
                {"id": "note:missing", "label": "Missing", "group": "placeholder"},
                {
                    "id": "paper-7",
                    "label": "On Graphs",
                    "group": "papers",
                    "metadata": {"aliases": "not a list", "type": "coder"},
                },
                {"id": "odd", "label": "Odd", "metadata": {"aliases": [3, None, "Weird Alias"]}},
            ],
            "edges": [
                {"source": "note:physics", "target": "note:swarm"},
                {"source": "note:swarm", "target": "note:missing"},
                {"source": "note:missing", "target": "paper-7"},
                {"source": "paper-7", "target": "note:physics"},
            ],
        }
    )
    AgentGraph(store).update(
        "sim",
        [
            Agent(id="a1", type="task-orchestrator", name="Lead", status="active", swarm_id="s"),
            Agent(id="a2", type="coder", name="Physics Coder", status="idle", swarm_id="s"),
            Agent(id="a3", type="Coder", status="ACTIVE", swarm_id="s"),
        ],
        live=True,
    )
    return store


def _keys(store: GraphStore, flt: NodeFilter) -> list[str]:
    return [n.key.external_id for n in store.nodes() if flt.matches(n)]


def test_kinds() -> None:
    store = _store()
    kinds = {n.key.external_id: node_kind(n) for n in store.nodes()}
    assert kinds["note:missing"] == "placeholder"
    assert kinds["note:physics"] == kinds["paper-7"] == "knowledge"
    assert kinds["sim/agent/a1"] == kinds["sim/swarm/s"] == "agent"  # a hub node is an agent node
    assert _keys(store, NodeFilter.of({"kind": "placeholder"})) == ["note:missing"]
    knowledge = _keys(store, NodeFilter.of({"kind": "knowledge"}))
    assert knowledge == ["note:physics", "note:swarm", "paper-7", "odd"]
    assert len(_keys(store, NodeFilter.of({"kind": "agent"}))) == 4


@pytest.mark.parametrize(
    ("q", "keys"),
    [
        ("physics", ["note:physics", "sim/agent/a2"]),  # label, either kind
        ("PHYS", ["note:physics", "sim/agent/a2"]),  # case-insensitive
        ("naturlehre", ["note:physics"]),  # an alias
        ("straße", ["note:physics"]),  # casefolded: STRASSE
        ("paper-", ["paper-7"]),  # the key
        ("note:", ["note:physics", "note:swarm", "note:missing"]),
        ("not a list", []),  # aliases that are not a list are not searched
        ("weird", ["odd"]),  # strings among other values are
        ("sim/swarm", ["sim/swarm/s"]),
        ("nothing like it", []),
    ],
)
def test_q_searches_label_key_and_aliases(q: str, keys: list[str]) -> None:
    assert _keys(_store(), NodeFilter.of({"q": q})) == keys


@pytest.mark.parametrize(
    ("params", "keys"),
    [
        ({"type": "coder"}, ["sim/agent/a2", "sim/agent/a3"]),  # "Coder" too
        ({"type": "coordinator"}, ["sim/agent/a1"]),  # the colour-table type
        ({"type": "TASK-orchestrator"}, ["sim/agent/a1"]),  # or as reported
        ({"status": "active"}, ["sim/agent/a1", "sim/agent/a3"]),
        ({"status": "act"}, []),  # whole values
        ({"type": "coder", "status": "idle"}, ["sim/agent/a2"]),  # AND
        ({"type": "coder", "q": "physics"}, ["sim/agent/a2"]),
        ({"type": "coder", "kind": "knowledge"}, []),  # paper-7's metadata.type: agents only
        ({"kind": "knowledge", "q": "physics"}, ["note:physics"]),
        ({"kind": "agent", "q": "lead"}, ["sim/agent/a1"]),
    ],
)
def test_agent_type_and_status_combine(params: dict[str, str], keys: list[str]) -> None:
    assert _keys(_store(), NodeFilter.of(params)) == keys


def test_no_filter_is_inactive() -> None:
    assert not NodeFilter.of({}).active
    assert NodeFilter.of({"status": "x"}).active


def _edge_keys(store: GraphStore, page: Any) -> set[tuple[str, str]]:
    by_flagged = {n.flagged_id: n.key.external_id for n in store.nodes()}
    return {(by_flagged[e.source], by_flagged[e.target]) for e in page.edges}


def test_a_filtered_page_has_the_edges_among_the_matches() -> None:
    store = _store()
    page = _filtered_page(store, NOWHERE, NodeFilter.of({"q": "note:"}), 0, 100)
    assert [n.key for n in page.nodes] == ["note:physics", "note:swarm", "note:missing"]
    assert page.node_count == 3 and page.offset == 0 and page.limit == 100
    # paper-7 is not a match: its edges are not here
    assert _edge_keys(store, page) == {
        ("note:physics", "note:swarm"),
        ("note:swarm", "note:missing"),
    }
    assert page.edge_count == 2 and not page.truncated
    assert page.revision == store.revision


def test_pages_of_matches_hold_every_edge_among_them_once() -> None:
    store = GraphStore()
    n = 30
    store.import_document(
        {
            "nodes": [{"id": f"m{i}"} for i in range(n)] + [{"id": "other"}],
            "edges": [{"source": f"m{i}", "target": f"m{(i * 7 + 3) % n}"} for i in range(n)]
            + [{"source": f"m{i}", "target": "other"} for i in range(n)],
        }
    )
    pages = [
        _filtered_page(store, NOWHERE, NodeFilter.of({"q": "m"}), o, 7) for o in range(0, n, 7)
    ]
    assert [len(p.nodes) for p in pages] == [7, 7, 7, 7, 2]
    assert all(p.node_count == n for p in pages)
    edges = [e for p in pages for e in p.edges]
    assert len(edges) == len({(e.source, e.target) for e in edges}) == n  # each once, none to other
    flagged = [{node.flagged_id for node in p.nodes} for p in pages]
    assert all(e.source in ids for p, ids in zip(pages, flagged, strict=True) for e in p.edges)
    past = _filtered_page(store, NOWHERE, NodeFilter.of({"q": "m"}), n, 7)
    assert past.nodes == [] and past.edges == [] and past.node_count == n


def test_too_many_edges_are_truncated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routes_graph, "MAX_EDGES", 1)
    store = _store()
    page = _filtered_page(store, NOWHERE, NodeFilter.of({"q": "note:"}), 0, 100)
    assert page.truncated and len(page.edges) == page.edge_count == 1


def test_a_search_that_met_a_change_reads_again(monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store()
    real = store.edges_from
    calls = []

    def changing(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:  # an import lands while the first read is going on
            store.import_document({"nodes": [{"id": "note:new", "label": "New"}]})
        return real(*args)

    monkeypatch.setattr(store, "edges_from", changing)
    page = _filtered_page(store, NOWHERE, NodeFilter.of({"q": "note:"}), 0, 100)
    assert len(calls) == 2 and page.revision == store.revision
    assert "note:new" in [n.key for n in page.nodes] and page.node_count == 4


def _flagged(store: GraphStore, key: str, kind: NodeKind = NodeKind.KNOWLEDGE) -> int:
    node = store.node_by_key(kind, key)
    assert node is not None
    return node.flagged_id


def test_neighbours_by_raw_or_flagged_id() -> None:
    store = _store()
    physics = _flagged(store, "note:physics")
    for given in (physics, physics & 0x3FFF_FFFF):
        found = _neighbours(store, NOWHERE, given, 1, 100)
        keys = [n.key for n in found.nodes]
        assert keys[0] == "note:physics" and set(keys[1:]) == {"note:swarm", "paper-7"}
        assert _edge_keys(store, found) == {
            ("note:physics", "note:swarm"),
            ("paper-7", "note:physics"),
        }
        assert found.node_count == 3 and found.edge_count == 2 and not found.truncated
    two = _neighbours(store, NOWHERE, physics, 2, 100)
    assert {n.key for n in two.nodes} == {"note:physics", "note:swarm", "paper-7", "note:missing"}
    assert two.edge_count == 4 and two.depth == 2
    capped = _neighbours(store, NOWHERE, physics, 2, 2)
    assert capped.truncated and capped.node_count == 2 and capped.edge_count == 1


def test_neighbours_of_an_agent_and_of_no_node() -> None:
    store = _store()
    swarm = _flagged(store, "sim/swarm/s", NodeKind.AGENT)
    found = _neighbours(store, NOWHERE, swarm, 1, 100)
    assert found.nodes[0].key == "sim/swarm/s" and found.node_count == 4
    assert found.edge_count == 3  # each agent -> its swarm
    wrong_flag = (swarm & 0x3FFF_FFFF) | 0x4000_0000  # a knowledge-flagged id of an agent
    for missing in (wrong_flag, 0, 10**6, 0xFFFF_FFFF):
        with pytest.raises(GraphError) as info:
            _neighbours(store, NOWHERE, missing, 1, 100)
        assert info.value.code == "unknown_node" and info.value.path == "id"
