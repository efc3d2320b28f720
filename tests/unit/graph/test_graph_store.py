"""Graph store: ids and flags, validation, all-or-nothing import, dense arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
from support.locks import lock_held_elsewhere

from visionflow.errors import GraphError
from visionflow.graph.store import GraphStore, NodeKind
from visionflow.protocol.wire import AGENT_FLAG, ID_MASK, KNOWLEDGE_FLAG

DOC = {
    "nodes": [{"id": "a", "label": "A"}, {"id": "b"}, {"id": "c", "metadata": {"k": "v"}}],
    "edges": [{"source": "a", "target": "b", "weight": 2.0}, {"source": "b", "target": "c"}],
}


def test_ids_are_stable_flagged_and_never_reused() -> None:
    s = GraphStore()
    s.import_document(DOC)
    agent = s.upsert_node(NodeKind.AGENT, "agent_1", label="coder")
    a = s.node_by_key(NodeKind.KNOWLEDGE, "a")
    assert a is not None and a.flagged_id == a.id | KNOWLEDGE_FLAG
    node = s.node(agent)
    assert node is not None and node.flagged_id == agent | AGENT_FLAG
    assert node.flagged_id & ID_MASK == agent
    s.remove_node(agent)
    again = s.upsert_node(NodeKind.AGENT, "agent_1")
    assert again != agent  # never reused
    assert s.upsert_node(NodeKind.AGENT, "agent_1") == again  # upsert keeps the id
    s.import_document({"nodes": [{"id": "a", "label": "A2"}]}, mode="merge")
    a2 = s.node_by_key(NodeKind.KNOWLEDGE, "a")
    assert a2 is not None and a2.id == a.id and a2.label == "A2"


def test_revision_bumps_on_every_topology_change() -> None:
    s = GraphStore()
    r0 = s.revision
    x = s.add_node(NodeKind.KNOWLEDGE, "x")
    y = s.add_node(NodeKind.KNOWLEDGE, "y")
    s.set_edge(x, y)
    s.remove_edge(x, y)
    s.remove_node(y)
    assert s.revision == r0 + 5
    v = s.version
    s.pin(x, (1.0, 2.0, 3.0))
    assert s.version == v + 1 and s.revision == r0 + 5


@pytest.mark.parametrize(
    ("doc", "code", "path"),
    [
        ({"nodes": [{"id": "a"}, {"id": "a"}]}, "duplicate_id", "nodes[1].id"),
        (
            {"nodes": [{"id": "a"}], "edges": [{"source": "a", "target": "z"}]},
            "unknown_node",
            "edges[0].target",
        ),
        (
            {"nodes": [{"id": "a"}], "edges": [{"source": "a", "target": "a", "weight": -1}]},
            "invalid_weight",
            "edges[0].weight",
        ),
        (
            {"nodes": [{"id": "a"}], "edges": [{"source": "a", "target": "a", "weight": math.nan}]},
            "invalid_weight",
            "edges[0].weight",
        ),
        (
            {"nodes": [{"id": "a"}], "edges": [{"source": "a", "target": "a", "weight": math.inf}]},
            "invalid_weight",
            "edges[0].weight",
        ),
        (
            {"nodes": [{"id": "a"}], "edges": [{"source": "a", "target": "a", "weight": 2e6}]},
            "invalid_weight",
            "edges[0].weight",
        ),
        (
            {"nodes": [{"id": "a"}], "edges": [{"source": "a", "target": "a", "weight": 10**400}]},
            "invalid_weight",
            "edges[0].weight",
        ),
        (
            {"nodes": [{"id": "a"}], "edges": [{"source": "a", "target": "a", "weight": True}]},
            "invalid_weight",
            "edges[0].weight",
        ),
        (
            {"nodes": [{"id": "a", "position": [1e7, 0, 0]}]},
            "invalid_position",
            "nodes[0].position",
        ),
        (
            {"nodes": [{"id": "a", "position": [10**400, 0, 0]}]},
            "invalid_position",
            "nodes[0].position",
        ),
        ({"nodes": [{"id": "a", "position": [1, 2]}]}, "invalid_position", "nodes[0].position"),
        (
            {"nodes": [{"id": "a", "position": [True, 0, 0]}]},
            "invalid_position",
            "nodes[0].position",
        ),
        ({"nodes": [{"id": "a", "position": "1,2,3"}]}, "invalid_position", "nodes[0].position"),
        ({"nodes": [{"id": "a", "position": {"x": 1}}]}, "invalid_position", "nodes[0].position"),
        ({"nodes": [{"id": None}]}, "invalid_node", "nodes[0].id"),
        ({"nodes": [{"id": "a", "metadata": []}]}, "invalid_node", "nodes[0].metadata"),
        ({"nodes": {}}, "invalid_document", "nodes"),
        ([], "invalid_document", ""),
    ],
)
def test_invalid_documents_are_refused_whole(doc: object, code: str, path: str) -> None:
    s = GraphStore()
    s.import_document(DOC)
    before = (s.revision, s.version, s.export_document())
    with pytest.raises(GraphError) as info:
        s.import_document(doc, mode="replace")
    assert info.value.code == code and info.value.path == path
    assert (s.revision, s.version, s.export_document()) == before


def test_limits_are_refused_whole() -> None:
    s = GraphStore(max_nodes=3)
    s.import_document(DOC)
    with pytest.raises(GraphError) as info:
        s.import_document({"nodes": [{"id": "d"}]})
    assert info.value.code == "too_many_nodes" and len(s) == 3


def test_replace_keeps_agents_and_matching_ids() -> None:
    s = GraphStore()
    s.import_document(DOC)
    b = s.node_by_key(NodeKind.KNOWLEDGE, "b")
    assert b is not None
    agent = s.upsert_node(NodeKind.AGENT, "ag")
    s.set_edge(agent, b.id)
    r = s.import_document(
        {"nodes": [{"id": "b"}, {"id": "d"}], "edges": [{"source": "d", "target": "b"}]},
        mode="replace",
    )
    assert (r.added, r.updated, r.removed) == (1, 1, 2)
    assert {n.key.external_id for n in s.nodes()} == {"b", "d", "ag"}
    b2 = s.node_by_key(NodeKind.KNOWLEDGE, "b")
    assert b2 is not None and b2.id == b.id
    assert {(e.source, e.target) for e in s.edges()} == {
        (agent, b.id),
        (s.node_by_key(NodeKind.KNOWLEDGE, "d").id, b.id),  # type: ignore[union-attr]
    }


def test_edit_validation() -> None:
    s = GraphStore()
    x = s.add_node(NodeKind.KNOWLEDGE, "x")
    with pytest.raises(GraphError, match="already exists"):
        s.add_node(NodeKind.KNOWLEDGE, "x")
    with pytest.raises(GraphError) as info:
        s.set_edge(x, 999)
    assert info.value.code == "unknown_node" and info.value.path == "target"
    with pytest.raises(GraphError):
        s.set_edge(x, x, -1.0)
    with pytest.raises(GraphError):
        s.pin(x, (math.nan, 0.0, 0.0))
    with pytest.raises(GraphError) as info:
        s.pin(x, (0.0, -2e6, 0.0))  # finite but past MAX_COORD
    assert info.value.code == "invalid_position"
    with pytest.raises(GraphError):
        s.set_positions({x: (3e38, 0.0, 0.0)})
    with pytest.raises(GraphError):
        s.pin(12345)


def test_dense_arrays_grow_and_shrink_with_stable_ids() -> None:
    s = GraphStore()
    s.import_document(
        {
            "nodes": [{"id": str(i)} for i in range(100)],
            "edges": [{"source": str(i), "target": str(i + 1)} for i in range(99)],
        }
    )
    d = s.sync()
    assert d.n == 100 and d.indices.shape[0] == 198
    assert np.all(np.isfinite(d.pos)) and len({tuple(p) for p in d.pos.tolist()}) == 100
    d.pos[:] += 1000.0  # as if the engine had stepped
    keep_id = int(d.ids[50])
    keep_pos = d.pos[50].copy()
    s.import_document({"nodes": [{"id": str(i)} for i in range(40, 60)]}, mode="replace")
    d2 = s.sync()
    assert d2.n == 20
    i = int(d2.index_of([keep_id])[0])
    np.testing.assert_array_equal(d2.pos[i], keep_pos)  # survivors keep their positions
    assert d2.indices.shape[0] == 0
    s.import_document({"nodes": [{"id": "new"}], "edges": [{"source": "new", "target": "50"}]})
    d3 = s.sync()
    j = int(d3.index_of([s.node_by_key(NodeKind.KNOWLEDGE, "new").id])[0])  # type: ignore[union-attr]
    assert np.linalg.norm(d3.pos[j] - keep_pos) < 10.0  # seeded next to its neighbour
    assert np.all(np.diff(d3.ids.astype(np.int64)) > 0)


def test_seeding_is_deterministic() -> None:
    a, b = GraphStore(), GraphStore()
    for s in (a, b):
        s.import_document(DOC)
    np.testing.assert_array_equal(a.sync().pos, b.sync().pos)


def test_pins_and_positions_apply_on_sync() -> None:
    s = GraphStore()
    s.import_document(DOC)
    a = s.node_by_key(NodeKind.KNOWLEDGE, "a")
    assert a is not None
    s.pin(a.flagged_id, (1.0, 2.0, 3.0))
    d = s.sync()
    i = int(d.index_of([a.id])[0])
    assert d.pinned[i] == 1 and d.pos[i].tolist() == [1.0, 2.0, 3.0]
    s.unpin(a.id)
    assert s.sync().pinned[i] == 0


def test_export_round_trip() -> None:
    s = GraphStore()
    s.import_document(DOC)
    s.sync()
    doc = s.export_document()
    assert all(len(n["position"]) == 3 for n in doc["nodes"])
    t = GraphStore()
    t.import_document(doc)
    d = t.sync()  # positions come back with the graph
    keys = t.keys()
    got = {keys[int(r)].external_id: p.tolist() for r, p in zip(d.ids, d.pos, strict=True)}
    assert got == {n["id"]: n["position"] for n in doc["nodes"]}
    assert t.export_document()["edges"] == doc["edges"]
    assert [n["label"] for n in t.export_document()["nodes"]] == [n["label"] for n in doc["nodes"]]


def test_merge_counts_only_edges_it_adds() -> None:
    s = GraphStore(max_edges=2)
    s.import_document(DOC)
    restated = {"edges": DOC["edges"] + DOC["edges"]}  # the same two edges, twice
    result = s.import_document(restated, mode="merge")
    assert result.edges == 2 and s.edge_count == 2
    with pytest.raises(GraphError) as info:
        s.import_document({"edges": [{"source": "a", "target": "c"}]}, mode="merge")
    assert info.value.code == "too_many_edges"


def test_an_edge_restated_without_a_weight_keeps_its_weight_in_a_merge_not_a_replace() -> None:
    s = GraphStore()
    doc = {
        "nodes": [{"id": "a"}, {"id": "b"}, {"id": "c"}],
        "edges": [{"source": "a", "target": "b", "weight": 2.5}],
    }
    s.import_document(doc)
    # an edge list with no weight column, merged to add a-c: a-b went back to 1.0
    s.import_document(
        {"edges": [{"source": "a", "target": "b"}, {"source": "a", "target": "c"}]}, mode="merge"
    )
    weights = {(e["source"], e["target"]): e["weight"] for e in s.export_document()["edges"]}
    assert weights == {("a", "b"): 2.5, ("a", "c"): 1.0}
    s.import_document({**doc, "edges": [{"source": "a", "target": "b"}]}, mode="replace")
    assert [e["weight"] for e in s.export_document()["edges"]] == [1.0]


def test_relabel_bumps_the_revision_but_metadata_does_not() -> None:
    s = GraphStore()
    raw = s.upsert_node(NodeKind.AGENT, "ag", label="coder")
    r = s.revision
    s.upsert_node(NodeKind.AGENT, "ag", metadata={"status": "busy"})  # polled every few seconds
    assert s.revision == r
    s.upsert_node(NodeKind.AGENT, "ag", label="coder")  # unchanged
    assert s.revision == r
    s.upsert_node(NodeKind.AGENT, "ag", label="reviewer")
    assert s.revision == r + 1
    assert s.sync().n == 1 and s.node(raw) is not None


def test_any_string_is_an_id() -> None:
    s = GraphStore()
    s.import_document(
        {"nodes": [{"id": ""}, {"id": " "}], "edges": [{"source": "", "target": " "}]}
    )
    assert {n.key.external_id for n in s.nodes()} == {"", " "} and s.edge_count == 1


def test_pin_changes_reach_the_dense_flags_without_a_rebuild() -> None:
    store = GraphStore()
    store.import_document({"nodes": [{"id": str(i)} for i in range(50)]})
    d = store.sync()
    raws = [int(r) for r in d.ids[[3, 10, 40]]]
    store.pin(raws[0])
    store.pin_many(np.asarray(raws[1:], np.uint32), np.zeros((2, 3), np.float32))
    d = store.sync()
    assert sorted(np.flatnonzero(d.pinned).tolist()) == [3, 10, 40]
    assert store.unpin_many([raws[0], raws[1], 10_000_000]) == 2  # an unknown id is skipped
    d = store.sync()
    assert np.flatnonzero(d.pinned).tolist() == [40]
    store.add_node(NodeKind.KNOWLEDGE, "new")  # a rebuild keeps the flags
    d = store.sync()
    assert [int(r) for r in d.ids[np.flatnonzero(d.pinned)]] == [raws[2]]


def test_drags_and_releases_never_wait_for_a_held_lock() -> None:
    # An import or a rebuild holds the lock for seconds at 100k nodes; a drag on the event
    # loop must not wait for it: it is queued, and the next sync applies it.
    store = GraphStore()
    store.import_document({"nodes": [{"id": str(i)} for i in range(20)]})
    d = store.sync()
    raws = [int(r) for r in d.ids[[2, 5, 9]]]
    store.pin(raws[2])
    store.sync()
    with lock_held_elsewhere(store):
        version = store.version
        store.pin_many(np.asarray(raws[:2], np.uint32), np.asarray([[1, 2, 3], [4, 5, 6]]))
        assert store.unpin_many([raws[2], 10_000_000]) == 1  # unknown: skipped, as unqueued
        with pytest.raises(GraphError) as err:  # unknown ids are refused without the lock too
            store.pin_many(np.asarray([raws[0], 10_000_000], np.uint32), np.zeros((2, 3)))
        assert err.value.path == "records[1]"
        assert store.version > version  # the engine sees a change and steps (then syncs)
        assert not store.node(raws[0]).pinned  # not applied while the lock is held
    d = store.sync()
    pinned = [int(r) for r in d.ids[np.flatnonzero(d.pinned)]]
    assert sorted(pinned) == sorted(raws[:2])
    np.testing.assert_array_equal(
        d.pos[d.index_of(np.asarray(raws[:2], np.uint32))], [[1, 2, 3], [4, 5, 6]]
    )
    assert store.node(raws[0]).pinned and not store.node(raws[2]).pinned


def test_a_queued_drag_of_a_node_removed_meanwhile_is_dropped() -> None:
    store = GraphStore()
    a = store.add_node(NodeKind.KNOWLEDGE, "a")
    b = store.add_node(NodeKind.KNOWLEDGE, "b")
    store.sync()
    with lock_held_elsewhere(store):  # queued
        store.pin_many(np.asarray([a, b], np.uint32), np.asarray([[1.0] * 3, [2.0] * 3]))
    store.remove_node(a)
    d = store.sync()  # applies the queue: a is gone, so only b is pinned
    assert d.n == 1 and d.pinned.tolist() == [1] and d.pos[0].tolist() == [2.0, 2.0, 2.0]


def test_a_scoped_replace_touches_only_nodes_in_its_scope() -> None:
    store = GraphStore()
    store.import_document(
        {
            "nodes": [{"id": "note:a"}, {"id": "note:b"}, {"id": "mine"}],
            "edges": [
                {"source": "note:a", "target": "note:b"},
                {"source": "mine", "target": "note:a"},
            ],
        }
    )
    result = store.import_document(
        {"nodes": [{"id": "note:a"}, {"id": "note:c"}], "edges": []}, "replace", scope="note:"
    )
    assert result.removed == 1  # note:b; "mine" is out of scope
    assert {n.key.external_id for n in store.nodes()} == {"note:a", "note:c", "mine"}
    ends = {
        (store.node(e.source).key.external_id, store.node(e.target).key.external_id)  # type: ignore[union-attr]
        for e in store.edges()
    }
    assert ends == {("mine", "note:a")}  # the note-note edge went, the edge out of scope stayed
    with pytest.raises(GraphError) as err:
        store.import_document({"nodes": [{"id": "other"}]}, "replace", scope="note:")
    assert err.value.path == "nodes[0].id"


def test_a_merge_that_restates_a_node_keeps_its_objects_and_changes_only_what_differs() -> None:
    # Re-importing a graph then frees the whole parsed document at once instead of mixing old
    # and new objects in the allocator's arenas (memory kept after big re-imports).
    store = GraphStore()
    doc = {"nodes": [{"id": "a", "label": "A", "metadata": {"k": [1, 2]}}, {"id": "b"}]}
    store.import_document(doc)
    node = store.node_by_key(NodeKind.KNOWLEDGE, "a")
    assert node is not None
    label, meta = node.label, node.metadata
    again = {"nodes": [{"id": "a", "label": "A", "metadata": {"k": [1, 2]}}]}
    assert store.import_document(again, "merge").updated == 1
    assert node.label is label and node.metadata is meta
    changed = {"nodes": [{"id": "a", "label": "A", "metadata": {"k": [1, 3]}}]}
    store.import_document(changed, "merge")
    assert node.label is label and node.metadata == {"k": [1, 3]}
