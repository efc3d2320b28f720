"""The graph document format: the Structs and the hand-written explanation agree, in our words."""

from __future__ import annotations

import math

import msgspec
import pytest

from visionflow.errors import GraphError
from visionflow.graph import document
from visionflow.graph.document import DocumentNode, GraphDocument

BAD: list[tuple[object, str, str]] = [
    ([], "invalid_document", ""),
    ({"nodes": {}}, "invalid_document", "nodes"),
    ({"edges": None}, "invalid_document", "edges"),
    ({"nodes": [1]}, "invalid_node", "nodes[0]"),
    ({"nodes": [{"id": "a"}, {"id": 5}]}, "invalid_node", "nodes[1].id"),
    ({"nodes": [{"label": "x"}]}, "invalid_node", "nodes[0].id"),
    ({"nodes": [{"id": "a", "label": 1}]}, "invalid_node", "nodes[0].label"),
    ({"nodes": [{"id": "a", "group": []}]}, "invalid_node", "nodes[0].group"),
    ({"nodes": [{"id": "a", "metadata": "m"}]}, "invalid_node", "nodes[0].metadata"),
    ({"nodes": [{"id": "a"}, {"id": "a"}, {"id": 1}]}, "duplicate_id", "nodes[1].id"),
    ({"nodes": [{"id": "a", "position": [0, 0]}]}, "invalid_position", "nodes[0].position"),
    ({"nodes": [{"id": "a", "position": [0, 0, 2e6]}]}, "invalid_position", "nodes[0].position"),
    ({"nodes": [{"id": "a", "position": [0, 0, "1"]}]}, "invalid_position", "nodes[0].position"),
    ({"nodes": [{"id": "a", "position": 3}]}, "invalid_position", "nodes[0].position"),
    ({"edges": ["a"]}, "invalid_edge", "edges[0]"),
    ({"edges": [{"target": "b"}]}, "invalid_edge", "edges[0].source"),
    ({"edges": [{"source": "a", "target": None}]}, "invalid_edge", "edges[0].target"),
    (
        {"edges": [{"source": "a", "target": "b", "weight": "1"}]},
        "invalid_weight",
        "edges[0].weight",
    ),
    (
        {"edges": [{"source": "a", "target": "b", "weight": False}]},
        "invalid_weight",
        "edges[0].weight",
    ),
    (
        {"edges": [{"source": "a", "target": "b", "weight": 1e7}]},
        "invalid_weight",
        "edges[0].weight",
    ),
    (
        {"edges": [{"source": "a", "target": "b", "weight": 10**400}]},
        "invalid_weight",
        "edges[0].weight",
    ),
]


@pytest.mark.parametrize(("doc", "code", "path"), BAD)
def test_bad_documents_name_the_item_whichever_way_they_come(
    doc: object, code: str, path: str
) -> None:
    for read in (document.parse, lambda d: document.decode(msgspec.json.encode(d))):
        with pytest.raises(GraphError) as info:
            read(doc)
        assert (info.value.code, info.value.path) == (code, path)
        assert "`" not in info.value.message  # our wording, not msgspec's ("Expected `str`")


@pytest.mark.parametrize("value", [math.nan, math.inf, -0.5])
def test_non_json_numbers_from_python_callers(value: float) -> None:
    doc = {"edges": [{"source": "a", "target": "b", "weight": value}]}
    with pytest.raises(GraphError) as info:
        document.parse(doc)
    assert info.value.code == "invalid_weight"


def test_bad_json_is_bad_json() -> None:
    for body in (b"{nope", b'{"edges": [{"source": "a", "target": "b", "weight": 1e400}]}'):
        with pytest.raises(GraphError) as info:
            document.decode(body)
        assert info.value.code == "bad_json"


def test_a_good_document_and_what_is_ignored() -> None:
    # other top-level keys are ignored; other fields of a node or edge go into its metadata
    body = (
        b'{"nodes": [{"id": "", "label": null, "position": [1, 2.5, -3], "kind": "x"}],'
        b' "edges": [{"source": "", "target": "", "extra": 1}], "revision": 4}'
    )
    doc = document.decode(body)
    assert doc == GraphDocument(
        nodes=[DocumentNode(id="", position=(1.0, 2.5, -3.0), metadata={"kind": "x"})],
        # no weight given: UNSET (1.0 for a new edge; a merge keeps an existing edge's)
        edges=[document.DocumentEdge("", "", msgspec.UNSET, metadata={"extra": 1})],
    )
    assert document.parse(msgspec.json.decode(body)) == doc


def test_the_schema_comes_from_the_structs() -> None:
    (ref,), components = msgspec.json.schema_components([GraphDocument])  # as /openapi.json does
    assert ref == {"$ref": "#/$defs/GraphDocument"}
    node = components["DocumentNode"]
    assert node["required"] == ["id"]
    position = node["properties"]["position"]["anyOf"][0]
    assert position["minItems"] == position["maxItems"] == 3
    assert position["prefixItems"][0]["maximum"] == 1e6
    weight = components["DocumentEdge"]["properties"]["weight"]
    assert (weight["minimum"], weight["maximum"]) == (0, document.MAX_WEIGHT)
