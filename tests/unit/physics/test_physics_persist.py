"""Layout persistence: atomic save, restore by stable key, corrupt files ignored."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest

from visionflow.graph.store import GraphStore, NodeKey, NodeKind
from visionflow.physics import persist
from visionflow.state import PendingLayout


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
    report = persist.restore_layout(t, path)
    assert (report.restored, report.skipped, report.error) == (3, 1, None)
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
    s = _store()
    before = s.version
    report = persist.restore_layout(s, path)
    assert report.error is not None and report.restored == 0
    assert s.version == before


def test_missing_file_is_not_an_error(tmp_path: Path) -> None:
    report = persist.restore_layout(_store(), tmp_path / "nope" / "layout.json")
    assert report.error is None and report.restored == 0


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
    return PendingLayout(str(tmp_path))


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
