"""Ours -> X -> ours keeps nodes, edges, weights, labels, groups, metadata and positions, for
every format; networkx reads our GraphML and GEXF, and what networkx writes reads back."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import msgspec
import pytest

from visionflow.errors import GraphError
from visionflow.graph import document, formats
from visionflow.graph.document import DocumentEdge, ExportedDocument, GraphDocument
from visionflow.graph.formats import Limits
from visionflow.graph.formats.common import EDGE_NAMES, NODE_NAMES, exported_name


def networkx() -> Any:
    """networkx, or skip: only the tests that talk to it need it (it is in the bench extra;
    the round trips of our own formats run everywhere)."""
    return pytest.importorskip("networkx")


TRICKY = "quote \" amp & lt < gt > apos ' tab\tnl\ncr\r é 漢 🙂"

SAMPLE = document.parse(
    {
        "nodes": [
            {
                "id": "a",
                "label": "Alpha",
                "group": "notes",
                "position": [0.1, 12.5, -3.0000001],
                "metadata": {
                    "text": TRICKY,
                    "count": 3,
                    "ratio": 0.25,
                    "flag": False,
                    "tags": ["x", {"y": None}],
                    "mixed": 1,
                    "big": 2**70,
                    # names the formats map to fields: written prefixed, read back as they were
                    "x": "not a coordinate",
                    "label": "not the label",
                    "name": "nor this",
                    "id": "nor the id",
                    "metadata.k": "a prefixed name",
                },
            },
            {
                "id": TRICKY,
                "label": TRICKY,
                "position": [1e-300, -999999.5, 0.0],
                "metadata": {"count": 4, "ratio": 1, "mixed": "one", "flag": True},
            },
            {"id": "", "group": "g"},  # the empty id; no label, metadata or position
            {"id": "0", "metadata": {"count": -(2**63)}},
        ],
        "edges": [
            {"source": "a", "target": TRICKY, "weight": 2.5, "metadata": {"kind": "cites"}},
            {"source": TRICKY, "target": "a", "weight": 0.0},
            {"source": "", "target": "a", "weight": 1e6, "metadata": {"weight": "w", "n": [1]}},
            {"source": "0", "target": "0"},
        ],
    }
)


def weight_of(edge: DocumentEdge) -> float:
    """An edge's weight as a store holding it has it (not given: 1.0)."""
    return 1.0 if isinstance(edge.weight, msgspec.UnsetType) else edge.weight


def exported(doc: GraphDocument) -> ExportedDocument:
    """The export a store holding ``doc`` would give (every field set, "" for not given)."""
    nodes = [
        {
            "id": n.id,
            "label": n.label or "",
            "group": n.group or "",
            "metadata": n.metadata or {},
            **({"position": list(n.position)} if n.position is not None else {}),
        }
        for n in doc.nodes
    ]
    edges = [
        {
            "source": e.source,
            "target": e.target,
            "weight": weight_of(e),
            **({"metadata": e.metadata} if e.metadata else {}),
        }
        for e in doc.edges
    ]
    return msgspec.convert({"nodes": nodes, "edges": edges, "revision": 1}, ExportedDocument)


def back(fmt: str, data: bytes) -> dict[str, Any]:
    return same(formats.read(fmt, data, Limits()).document)


def same(doc: GraphDocument) -> dict[str, Any]:
    """``doc`` as the store takes it: a label, group or metadata not given is empty."""
    out: dict[str, Any] = msgspec.to_builtins(doc)
    for node in out["nodes"]:
        node.update(label=node["label"] or "", group=node["group"] or "")
        node["metadata"] = node["metadata"] or {}
    for edge in out["edges"]:
        edge["metadata"] = edge["metadata"] or {}
        edge.setdefault("weight", 1.0)  # not given: what a new edge gets
    return out


@pytest.mark.parametrize("fmt", ["json", "graphml", "gexf"])
def test_our_exports_read_back_whole(fmt: str) -> None:
    data = formats.write(fmt, exported(SAMPLE))
    again = formats.read(fmt, data, Limits()).document
    assert same(again) == same(SAMPLE)
    # bit for bit: positions and weights are floats written in full
    assert [n.position for n in again.nodes] == [n.position for n in SAMPLE.nodes]
    assert formats.write(fmt, exported(again)) == data


def test_characters_xml_cannot_carry_are_replaced() -> None:
    doc = document.parse(
        {"nodes": [{"id": "a\x00b", "label": "bell\x07", "metadata": {"k": "\x1b"}}]}
    )
    for fmt in ("graphml", "gexf"):
        node = back(fmt, formats.write(fmt, exported(doc)))["nodes"][0]
        assert (node["id"], node["label"], node["metadata"]) == (
            "a\ufffdb",
            "bell\ufffd",
            {"k": "\ufffd"},
        )


@pytest.mark.parametrize("fmt", ["graphml", "gexf"])
@pytest.mark.parametrize("ids", [["a\x00b", "a\x01b"], ["a\ufffdb", "a\x07b"]])
def test_ids_xml_would_make_one_are_refused_not_exported(fmt: str, ids: list[str]) -> None:
    # both read back as "a\ufffdb": our own import refused that export (duplicate_id)
    doc = document.parse(
        {"nodes": [{"id": i} for i in ids], "edges": [{"source": ids[0], "target": ids[1]}]}
    )
    with pytest.raises(GraphError) as info:
        formats.write(fmt, exported(doc))
    assert (info.value.code, info.value.path) == ("not_exportable", "format")
    assert repr(ids[0]) in info.value.message and repr(ids[1]) in info.value.message
    formats.write("json", exported(doc))  # JSON carries them


def to_d3(doc: GraphDocument, *, force_graph: bool) -> bytes:
    """What a d3 / 3d-force-graph page would hold for ``doc`` (after its simulation, link ends
    are node objects)."""
    nodes = []
    for n in doc.nodes:
        node: dict[str, Any] = {
            exported_name(k, NODE_NAMES): v for k, v in (n.metadata or {}).items()
        }
        node["id"] = n.id
        if n.label is not None:
            node["name" if force_graph else "label"] = n.label
        if n.group is not None:
            node["group"] = n.group
        if n.position is not None:
            node.update(zip("xyz", n.position, strict=True))
        nodes.append(node)
    by_id = {node["id"]: node for node in nodes}
    links = []
    for e in doc.edges:
        link: dict[str, Any] = {
            exported_name(k, EDGE_NAMES): v for k, v in (e.metadata or {}).items()
        }
        ends = (by_id[e.source], by_id[e.target]) if force_graph else (e.source, e.target)
        link.update(source=ends[0], target=ends[1], weight=weight_of(e))
        links.append(link)
    return json.dumps({"nodes": nodes, "links": links}).encode()


@pytest.mark.parametrize("force_graph", [False, True])
def test_d3_documents_read_back_whole(force_graph: bool) -> None:
    assert back("d3", to_d3(SAMPLE, force_graph=force_graph)) == same(SAMPLE)


def to_networkx(doc: GraphDocument) -> Any:
    nx = networkx()
    g = nx.DiGraph()
    for n in doc.nodes:
        attrs = {exported_name(k, NODE_NAMES): v for k, v in (n.metadata or {}).items()}
        if n.label is not None:
            attrs["label"] = n.label
        if n.group is not None:
            attrs["group"] = n.group
        if n.position is not None:
            attrs.update(zip("xyz", n.position, strict=True))
        g.add_node(n.id, **attrs)
    for e in doc.edges:
        attrs = {exported_name(k, EDGE_NAMES): v for k, v in (e.metadata or {}).items()}
        g.add_edge(e.source, e.target, weight=weight_of(e), **attrs)
    return g


def test_networkx_node_link_reads_back_whole() -> None:
    nx = networkx()
    for edges in ("edges", "links"):
        data = json.dumps(nx.node_link_data(to_networkx(SAMPLE), edges=edges)).encode()
        assert back("networkx", data) == same(SAMPLE)


# networkx writes a carriage return as it is, which XML reads as a line feed
PLAIN = TRICKY.replace("\r", "")
SCALAR = document.parse(  # what networkx's XML writers take: scalar attributes
    {
        "nodes": [
            {
                "id": "a",
                "label": "Alpha",
                "group": "g1",
                "position": [1.5, -2.25, 3.0],
                "metadata": {"n": 3, "s": PLAIN, "f": 0.5, "b": True},
            },
            {"id": "b", "label": "Beta", "metadata": {"n": 4, "x": "prefixed"}},
            {"id": "c", "label": "Gamma"},
        ],
        "edges": [
            {"source": "a", "target": "b", "weight": 2.0, "metadata": {"kind": "k"}},
            {"source": "b", "target": "c", "weight": 0.5},
        ],
    }
)


def test_networkx_written_graphml_and_gexf_read_back_whole() -> None:
    nx = networkx()
    g = to_networkx(SCALAR)
    graphml = "\n".join(nx.generate_graphml(g)).encode()
    assert back("graphml", graphml) == same(SCALAR)
    for version in ("1.2draft", "1.3"):
        data = "\n".join(nx.generate_gexf(g, version=version)).encode()
        assert back("gexf", data) == same(SCALAR), version


def test_networkx_reads_our_graphml() -> None:
    nx = networkx()
    g = nx.read_graphml(io.BytesIO(formats.write("graphml", exported(SAMPLE))))
    assert set(g.nodes) == {n.id for n in SAMPLE.nodes}
    a = g.nodes["a"]
    assert (a["label"], a["group"], (a["x"], a["y"], a["z"])) == (
        "Alpha",
        "notes",
        (0.1, 12.5, -3.0000001),
    )
    assert (a["text"], a["count"], a["ratio"], a["flag"]) == (TRICKY, 3, 0.25, False)
    assert a["metadata.x"] == "not a coordinate"  # the prefixed name
    assert json.loads(a["tags"]) == ["x", {"y": None}]  # JSON text for networkx
    assert g.nodes[TRICKY]["label"] == TRICKY
    assert g.edges["a", TRICKY]["weight"] == 2.5 and g.edges["a", TRICKY]["kind"] == "cites"
    assert g.is_directed() and g.number_of_edges() == 4


def test_networkx_reads_our_gexf() -> None:
    nx = networkx()
    g = nx.read_gexf(io.BytesIO(formats.write("gexf", exported(SAMPLE))))
    assert set(g.nodes) == {n.id for n in SAMPLE.nodes}
    a = g.nodes["a"]
    assert a["label"] == "Alpha" and a["group"] == "notes" and a["count"] == 3
    assert a["viz"]["position"] == {"x": 0.1, "y": 12.5, "z": -3.0000001}
    assert g.nodes[TRICKY]["label"] == TRICKY and g.nodes[TRICKY]["mixed"] == '"one"'
    weights = {(s, t): w for s, t, w in g.edges(data="weight")}
    assert weights[("a", TRICKY)] == 2.5 and weights[("", "a")] == 1e6


def test_csv_edge_lists_read_back_whole() -> None:
    doc = document.parse(
        {
            "nodes": [{"id": "a"}, {"id": TRICKY}, {"id": ","}],
            "edges": [
                {"source": "a", "target": TRICKY, "weight": 2.5, "metadata": {"kind": "x, y"}},
                {"source": TRICKY, "target": ",", "weight": 0.125},
                {"source": ",", "target": "a", "metadata": {"kind": '"q"'}},
            ],
        }
    )
    out = io.StringIO()
    rows = csv.writer(out)
    rows.writerow(["source", "target", "weight", "kind"])
    for e in doc.edges:
        rows.writerow([e.source, e.target, repr(weight_of(e)), (e.metadata or {}).get("kind", "")])
    assert back("csv", out.getvalue().encode()) == same(doc)
