"""Paging of ``/api/graph/data``: pages tile the graph, positions come from the snapshot."""

from __future__ import annotations

import numpy as np

from visionflow.graph.store import GraphStore
from visionflow.protocol.snapshot import Snapshot
from visionflow.web.routes_graph import PositionIndex, _page


def _store(n: int) -> GraphStore:
    store = GraphStore()
    store.import_document(
        {
            "nodes": [{"id": f"n{i}", "label": f"N{i}"} for i in range(n)],
            "edges": [{"source": f"n{i}", "target": f"n{i + 1}"} for i in range(n - 1)],
        },
        "replace",
    )
    return store


def test_pages_tile_nodes_and_edges() -> None:
    store = _store(7)
    pages = [_page(store, PositionIndex(None), off, 3) for off in (0, 3, 6)]
    keys = [node.key for p in pages for node in p.nodes]
    assert keys == [f"n{i}" for i in range(7)]
    assert sum(len(p.edges) for p in pages) == 6
    assert all(p.node_count == 7 and p.edge_count == 6 for p in pages)
    assert all(node.position is None for p in pages for node in p.nodes)
    flagged = {node.flagged_id for p in pages for node in p.nodes}
    assert all({e.source, e.target} <= flagged for p in pages for e in p.edges)
    assert _page(store, PositionIndex(None), 50, 3).nodes == []


def test_positions_are_looked_up_by_raw_id_and_missing_ones_are_null() -> None:
    store = _store(4)
    nodes = store.nodes()
    # A snapshot in a different order that lacks the last node (added after the last step).
    ids = np.array([nodes[2].flagged_id, nodes[0].flagged_id, nodes[1].flagged_id], np.uint32)
    pos = np.array([[2, 2, 2], [0, 0, 0], [1, 1, 1]], np.float32)
    snap = Snapshot.create(1, ids, pos, np.zeros_like(pos), revision=1)
    page = _page(store, PositionIndex(snap), 0, 10)
    assert [n.position for n in page.nodes] == [[0, 0, 0], [1, 1, 1], [2, 2, 2], None]
