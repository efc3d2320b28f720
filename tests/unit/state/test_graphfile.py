"""graph.json's versions: 1 (unversioned) still loads, 2 is written, a newer one is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from visionflow.graph.store import GraphStore
from visionflow.state import graph_path, load_graph, save_graph
from visionflow.state import graphfile as gf


def _store() -> GraphStore:
    s = GraphStore()
    s.import_document(
        {
            "nodes": [{"id": "a", "label": "A", "metadata": {"k": 1}}, {"id": "b"}],
            "edges": [{"source": "a", "target": "b", "weight": 2.5, "metadata": {"w": "x"}}],
        }
    )
    return s


def test_saved_as_version_2_and_read_back(tmp_path: Path) -> None:
    s = _store()
    save_graph(s, str(tmp_path))
    doc = json.loads(graph_path(str(tmp_path)).read_bytes())
    assert doc["version"] == gf.FORMAT_VERSION == 2
    assert list(doc) == ["version", "nodes", "edges", "revision"]
    assert all("position" not in n for n in doc["nodes"])  # positions live in layout.json
    t = GraphStore()
    assert load_graph(t, str(tmp_path)) is None
    assert t.export_document({})["nodes"] == s.export_document({})["nodes"]
    assert t.export_document({})["edges"] == s.export_document({})["edges"]


def test_version_1_an_unversioned_export_still_loads(tmp_path: Path) -> None:
    old = _store().export_document({})  # what every VisionFlow before Dec 2026 saved
    assert "version" not in old
    data = json.dumps(old).encode()
    assert gf.graph_version(data) == 1
    graph_path(str(tmp_path)).write_bytes(data)
    t = GraphStore()
    assert load_graph(t, str(tmp_path)) is None
    assert len(t) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"version": 3, "nodes": []}', "format version 3 is newer than this VisionFlow reads"),
        (b'{"version": 0, "nodes": []}', "format version 0 is not one VisionFlow ever wrote"),
        (b'{"version": "2", "nodes": []}', "not a graph file"),
        (b"[1, 2]", "not a graph file"),
        (b"{", "not a graph file"),
        (b'{"version": 2, "nodes": [{"id": 5}]}', "nodes[0].id"),
    ],
)
def test_refused_with_a_message(tmp_path: Path, content: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        gf.decode_graph(content)
    graph_path(str(tmp_path)).write_bytes(content)
    t = GraphStore()
    error = load_graph(t, str(tmp_path))  # at start: reported, ignored, never fatal
    assert error is not None and "ignoring" in error
    assert len(t) == 0
