"""The layout file: atomic save, restore by stable key, corrupt files ignored."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest

from visionflow.graph.store import GraphStore, NodeKey, NodeKind
from visionflow.state import PendingLayout, restore, save_graph
from visionflow.state import layout as persist


def _store() -> GraphStore:
    s = GraphStore()
    s.import_document({"nodes": [{"id": "a"}, {"id": "b"}, {"id": "c"}]})
    s.upsert_node(NodeKind.AGENT, "a")  # same external id, other kind
    return s


def test_round_trip_by_stable_key(tmp_path: Path) -> None:
    s = _store()
    d = s.sync()
    d.pos[:] = np.arange(12, dtype=np.float64).reshape(4, 3)
    path = persist.layout_path(tmp_path)
    assert persist.save_layout(path, s.keys(), d.flagged, d.pos.astype(np.float32)) == 4
    assert not list(tmp_path.glob(".*tmp"))  # temp file renamed away
    # a new process: different u32 ids, one node gone, one new
    t = GraphStore()
    t.upsert_node(NodeKind.KNOWLEDGE, "zzz")
    t.import_document({"nodes": [{"id": "c"}, {"id": "a"}]})
    t.upsert_node(NodeKind.AGENT, "a")
    report = persist.load_layout(path)
    assert report.error is None and len(report.positions) == 4
    pending = PendingLayout(report.positions)
    assert pending.apply(t) == 3 and len(pending) == 1  # "b" is not back (yet)
    dt = t.sync()
    got = {t.node(int(r)).key: dt.pos[i].tolist() for i, r in enumerate(dt.ids)}  # type: ignore[union-attr]
    want = {s.node(int(r)).key: d.pos[i].tolist() for i, r in enumerate(d.ids)}  # type: ignore[union-attr]
    for key in want:
        if key in got:
            assert got[key] == want[key]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b'{"version": 1, "nodes": [{"kind": "knowledge", "id": "a", "p": [1, 2',
        b'{"version": 99, "nodes": []}',
        b"\x00\xff garbage",
        b'{"version": 1, "nodes": [{"kind": "alien", "id": "a", "p": [1, 2, 3]}]}',
        b'{"version": 1, "nodes": [{"kind": "knowledge", "id": "a", "p": [1e999, 2, 3]}]}',
        b'{"version": 1, "nodes": [{"kind": "knowledge", "id": "a", "p": [1e20, 2, 3]}]}',
    ],
)
def test_corrupt_or_truncated_file_is_reported_and_ignored(tmp_path: Path, content: bytes) -> None:
    path = persist.layout_path(tmp_path)
    path.write_bytes(content)
    assert persist.load_layout(path).error is not None
    s = _store()
    before = s.version
    assert len(restore(s, str(tmp_path))) == 0
    assert s.version == before


def test_missing_file_is_not_an_error(tmp_path: Path) -> None:
    report = persist.load_layout(persist.layout_path(tmp_path / "nope"))
    assert report.error is None and report.missing and not report.positions
    assert len(restore(_store(), str(tmp_path / "nope"))) == 0


def test_carried_positions_are_written_back_unless_the_node_is_present(tmp_path: Path) -> None:
    s = _store()
    d = s.sync()
    path = persist.layout_path(tmp_path)
    away = NodeKey(NodeKind.AGENT, "sim/agent/x")
    present = NodeKey(NodeKind.KNOWLEDGE, "a")
    carried = {away: (7.0, 8.0, 9.0), present: (99.0, 99.0, 99.0)}
    assert persist.save_layout(path, s.keys(), d.flagged, d.pos, carried) == 5
    saved = persist.load_layout(path).positions
    assert saved[away] == (7.0, 8.0, 9.0)
    assert saved[present] != (99.0, 99.0, 99.0)  # the live position wins


def _pending(tmp_path: Path, keys: list[NodeKey]) -> PendingLayout:
    entries = [
        {"kind": k.kind.name.lower(), "id": k.external_id, "p": [float(i), 0.0, 0.0]}
        for i, k in enumerate(keys)
    ]
    persist.layout_path(tmp_path).write_bytes(msgspec.json.encode({"version": 1, "nodes": entries}))
    return PendingLayout(persist.load_layout(persist.layout_path(tmp_path)).positions)


def test_pending_layout_keeps_only_what_can_still_appear(tmp_path: Path) -> None:
    gone_note = NodeKey(NodeKind.KNOWLEDGE, "deleted-note")
    a1, a2 = NodeKey(NodeKind.AGENT, "sim/agent/1"), NodeKey(NodeKind.AGENT, "sim/agent/2")
    hub = NodeKey(NodeKind.AGENT, "sim/swarm/s1")
    other = NodeKey(NodeKind.AGENT, "removed-endpoint/agent/1")
    pending = _pending(tmp_path, [gone_note, a1, a2, hub, other])
    store = GraphStore()
    assert pending.apply(store) == 0
    pending.keep_agents_of(["sim", "si"])  # "si" must not claim "sim/..." entries
    assert set(pending.carried()) == {a1, a2, hub}
    store.upsert_node(NodeKind.AGENT, "sim/agent/1")
    assert pending.apply(store) == 1
    assert set(pending.carried()) == {a2, hub}
    pending.endpoint_answered("sim")  # it listed its agents: agent 2 and the hub are gone
    assert pending.carried() == {}


def test_no_endpoints_means_nothing_is_carried(tmp_path: Path) -> None:
    pending = _pending(tmp_path, [NodeKey(NodeKind.AGENT, "sim/agent/1")])
    pending.keep_agents_of([])
    assert len(pending) == 0


# ---------------------------------------------------------------- ids across a restart


def _saved_run(state_dir: Path) -> GraphStore:
    """A first run: an imported graph and agents, saved the way the service saves them."""
    s = GraphStore()
    s.upsert_node(NodeKind.AGENT, "sim/agent/0")  # agents first: ids interleave with notes
    s.import_document(
        {
            "nodes": [{"id": f"n{i}"} for i in range(200)],
            "edges": [{"source": f"n{i}", "target": f"n{i + 1}"} for i in range(199)],
        }
    )
    s.remove_node(s.node_by_key(NodeKind.KNOWLEDGE, "n7").id)  # type: ignore[union-attr]
    for i in range(1, 4):
        s.upsert_node(NodeKind.AGENT, f"sim/agent/{i}")
    save_graph(s, str(state_dir))
    d = s.sync()
    persist.save_layout(
        persist.layout_path(state_dir), s.keys(), d.flagged, d.pos, None, s.id_state()
    )
    return s


def _ids(s: GraphStore) -> dict[NodeKey, int]:
    return {n.key: n.id for n in s.nodes()}


def test_node_ids_and_revision_survive_a_restart(tmp_path: Path) -> None:
    first = _saved_run(tmp_path)
    second = GraphStore()
    pending = restore(second, str(tmp_path), ["sim"])
    # the knowledge graph is back at once with the same ids; agents when their server answers
    agents = {k: v for k, v in _ids(first).items() if k.kind is NodeKind.AGENT}
    knowledge = {k: v for k, v in _ids(first).items() if k.kind is NodeKind.KNOWLEDGE}
    assert len(knowledge) == 199 and _ids(second) == knowledge
    assert set(pending.carried()) == set(agents)
    for key in sorted(agents, key=lambda k: k.external_id, reverse=True):  # any order
        second.upsert_node(NodeKind.AGENT, key.external_id)
    pending.apply(second)
    assert _ids(second) == _ids(first)
    # the revision goes on from the saved one; a new node never takes an old id
    assert second.revision > first.revision
    fresh = second.add_node(NodeKind.KNOWLEDGE, "new")
    assert fresh > max(_ids(first).values())  # n7's id is not reused either
    assert fresh == first.id_state().next_id
    # dense arrays stay sorted with ids handed out out of order
    d = second.sync()
    assert (np.diff(d.ids.astype(np.int64)) > 0).all()


def test_agents_not_back_keep_their_ids_through_another_run(tmp_path: Path) -> None:
    first = _saved_run(tmp_path)
    agent = NodeKey(NodeKind.AGENT, "sim/agent/2")
    second = GraphStore()
    pending = restore(second, str(tmp_path), ["sim"])
    d = second.sync()  # the server stays down for this whole run
    persist.save_layout(
        persist.layout_path(tmp_path),
        second.keys(),
        d.flagged,
        d.pos,
        pending.carried(),
        second.id_state(),
    )
    third = GraphStore()
    restore(third, str(tmp_path), ["sim"])
    raw = third.upsert_node(NodeKind.AGENT, agent.external_id)
    assert raw == _ids(first)[agent]
    assert third.revision > second.revision > first.revision


def test_version_1_file_still_loads_and_nodes_get_new_ids(tmp_path: Path) -> None:
    first = GraphStore()
    first.import_document({"nodes": [{"id": "a"}, {"id": "b"}]})
    save_graph(first, str(tmp_path))
    a, b = NodeKey(NodeKind.KNOWLEDGE, "a"), NodeKey(NodeKind.KNOWLEDGE, "b")
    _pending(tmp_path, [b, a])  # a version 1 file (positions only), as written before ids
    s = GraphStore()
    report = persist.load_layout(persist.layout_path(tmp_path))
    assert report.error is None and report.ids == {}
    restore(s, str(tmp_path))
    assert {n.key: n.id for n in s.nodes()} == {a: 1, b: 2}  # assigned as before
    d = s.sync()
    assert d.pos[d.index_of([1, 2])].tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ([{"kind": "agent", "id": "x", "n": 0, "p": [0, 0, 0]}], "nodes[0].n"),
        ([{"kind": "agent", "id": "x", "n": 2**30, "p": [0, 0, 0]}], "nodes[0].n"),
        (
            [
                {"kind": "agent", "id": "x", "n": 5, "p": [0, 0, 0]},
                {"kind": "agent", "id": "y", "n": 5, "p": [0, 0, 0]},
            ],
            "nodes[1].n: id 5 already used by nodes[0]",
        ),
        ([{"kind": "agent", "id": "x", "n": "5", "p": [0, 0, 0]}], "not a layout file"),
    ],
)
def test_bad_ids_make_the_file_reported_and_ignored(
    tmp_path: Path, nodes: list[dict[str, object]], message: str
) -> None:
    path = persist.layout_path(tmp_path)
    path.write_bytes(
        msgspec.json.encode({"version": 2, "revision": 3, "next_id": 9, "nodes": nodes})
    )
    report = persist.load_layout(path)
    assert report.error is not None and message in report.error
    assert report.ids == {} and report.positions == {}
    s = GraphStore()
    restore(s, str(tmp_path))  # reported and ignored: a fresh start
    assert s.add_node(NodeKind.AGENT, "x") == 1


def test_saved_file_is_version_2_with_ids_counter_and_revision(tmp_path: Path) -> None:
    s = _saved_run(tmp_path)
    doc = msgspec.json.decode(persist.layout_path(tmp_path).read_bytes())
    assert doc["version"] == persist.FORMAT_VERSION == 2
    assert doc["revision"] == s.revision and doc["next_id"] == s.id_state().next_id
    by_key = {(e["kind"], e["id"]): e["n"] for e in doc["nodes"]}
    assert by_key == {(k.kind.name.lower(), k.external_id): raw for k, raw in _ids(s).items()}
