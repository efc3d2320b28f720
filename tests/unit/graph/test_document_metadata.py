"""Fields a document does not name go into metadata (nodes and edges), never dropped; edges
keep their metadata in the store and in exports."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from visionflow.errors import GraphError
from visionflow.graph import document
from visionflow.graph.store import GraphStore, NodeKind


def both_ways(doc: object) -> list[document.GraphDocument]:
    """The document read from a request body and from decoded JSON (the state file's way)."""
    return [document.decode(msgspec.json.encode(doc)), document.parse(doc)]


def test_unknown_fields_join_the_metadata() -> None:
    doc = {
        "nodes": [
            {"id": "a", "color": "red", "size": 3, "metadata": {"k": "v"}},
            {"id": "b", "tags": ["x", {"y": None}], "metadata": None},
            {"id": "c"},
        ],
        "edges": [
            {"source": "a", "target": "b", "weight": 2, "kind": "cites", "metadata": {"n": 1}},
            {"source": "b", "target": "c"},
        ],
    }
    for parsed in both_ways(doc):
        a, b, c = parsed.nodes
        assert a.metadata == {"k": "v", "color": "red", "size": 3}
        assert b.metadata == {"tags": ["x", {"y": None}]}
        assert c.metadata is None  # not given: a node already there keeps its metadata
        first, second = parsed.edges
        assert (first.weight, first.metadata) == (2.0, {"n": 1, "kind": "cites"})
        assert second.metadata is None


@pytest.mark.parametrize(
    ("doc", "code", "path"),
    [
        (
            {"nodes": [{"id": "a"}, {"id": "b", "k": 1, "metadata": {"k": 2}}]},
            "invalid_node",
            "nodes[1].k",
        ),
        (
            {"edges": [{"source": "a", "target": "b", "k": 1, "metadata": {"k": 2}}]},
            "invalid_edge",
            "edges[0].k",
        ),
        (
            {"edges": [{"source": "a", "target": "b", "metadata": []}]},
            "invalid_edge",
            "edges[0].metadata",
        ),
        # the fields the format names keep their rules when unknown ones come along
        (
            {"nodes": [{"id": "a", "x": 1, "position": [0, 0]}]},
            "invalid_position",
            "nodes[0].position",
        ),
        ({"nodes": [{"id": 1, "x": 1}]}, "invalid_node", "nodes[0].id"),
        ({"nodes": [{"id": "a", "x": 1}, {"id": "a"}]}, "duplicate_id", "nodes[1].id"),
        ({"nodes": [{"id": "a", "x": 1, "label": 5}]}, "invalid_node", "nodes[0].label"),
        (
            {"edges": [{"source": "a", "target": "b", "x": 1, "weight": -1}]},
            "invalid_weight",
            "edges[0].weight",
        ),
    ],
)
def test_refusals_name_the_field(doc: object, code: str, path: str) -> None:
    for read in (document.parse, lambda d: document.decode(msgspec.json.encode(d))):
        with pytest.raises(GraphError) as info:
            read(doc)
        assert (info.value.code, info.value.path) == (code, path)


def test_the_openapi_schema_still_allows_other_fields() -> None:
    _, components = msgspec.json.schema_components([document.GraphDocument])
    assert "additionalProperties" not in components["DocumentNode"]
    assert "metadata" in components["DocumentEdge"]["properties"]


def export(store: GraphStore) -> dict[str, Any]:
    return store.export_document()


def test_the_store_keeps_edge_metadata() -> None:
    store = GraphStore()
    store.import_document(
        {
            "nodes": [{"id": "a"}, {"id": "b"}, {"id": "c"}],
            "edges": [
                {"source": "a", "target": "b", "since": 2019},
                {"source": "b", "target": "c"},
            ],
        }
    )
    edges = export(store)["edges"]
    assert edges == [
        {"source": "a", "target": "b", "weight": 1.0, "metadata": {"since": 2019}},
        {"source": "b", "target": "c", "weight": 1.0},  # none: no key in the export
    ]
    # merge: absent metadata keeps the edge's, given metadata replaces it, {} empties it
    store.import_document({"edges": [{"source": "a", "target": "b", "weight": 3}]})
    assert export(store)["edges"][0] == {
        "source": "a",
        "target": "b",
        "weight": 3.0,
        "metadata": {"since": 2019},
    }
    store.import_document({"edges": [{"source": "b", "target": "c", "metadata": {"x": 1}}]})
    assert export(store)["edges"][1]["metadata"] == {"x": 1}
    store.import_document({"edges": [{"source": "b", "target": "c", "metadata": {}}]})
    assert "metadata" not in export(store)["edges"][1]
    # an edge that goes takes its metadata along; a new one in its place starts without
    node_b = store.node_by_key(NodeKind.KNOWLEDGE, "b")
    assert node_b is not None
    store.remove_node(node_b.id)
    store.import_document({"nodes": [{"id": "b"}], "edges": [{"source": "a", "target": "b"}]})
    assert export(store)["edges"] == [{"source": "a", "target": "b", "weight": 1.0}]
    # replace: the document's edges only
    store.import_document(
        {"nodes": [{"id": "a"}, {"id": "b"}], "edges": [{"source": "b", "target": "a", "m": 0}]},
        "replace",
    )
    assert export(store)["edges"] == [
        {"source": "b", "target": "a", "weight": 1.0, "metadata": {"m": 0}}
    ]
    # and an export is a document that gives all of it back
    again = GraphStore()
    again.import_document(export(store), "replace")
    assert export(again)["edges"] == export(store)["edges"]
