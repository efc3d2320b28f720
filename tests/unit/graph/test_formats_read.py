"""The readers of visionflow.graph.formats on files as the tools write them (fixtures/) and on
the cases each format's rules name: what becomes a field, what becomes metadata, what is
refused and where the refusal points."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from visionflow.errors import GraphError
from visionflow.graph import formats
from visionflow.graph.formats import Limits
from visionflow.graph.store import GraphStore

FIXTURES = Path(__file__).parent / "fixtures"


def read(fmt: str, data: bytes | str, limits: Limits | None = None) -> dict[str, Any]:
    """The document a body reads as, as builtins with the unset fields left out."""
    raw = data.encode() if isinstance(data, str) else data
    parsed = formats.read(fmt, raw, limits or Limits())
    doc: dict[str, Any] = msgspec.to_builtins(parsed.document)
    for item in [*doc["nodes"], *doc["edges"]]:
        for key in [k for k, v in item.items() if v is None]:
            del item[key]
        if "position" in item:
            item["position"] = list(item["position"])
    for edge in doc["edges"]:
        edge.setdefault("weight", 1.0)  # not given: what a new edge gets
    return doc


def refused(fmt: str, data: bytes | str, limits: Limits | None = None) -> GraphError:
    raw = data.encode() if isinstance(data, str) else data
    with pytest.raises(GraphError) as info:
        formats.read(fmt, raw, limits or Limits())
    return info.value


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# --------------------------------------------------------------------------- fixtures


def test_gephi_graphml() -> None:
    doc = read("graphml", fixture("gephi.graphml"))
    first = doc["nodes"][0]
    assert first == {
        "id": "0",
        "label": "Myriel",
        "position": [-266.82776, 299.6904, 0.0],
        "metadata": {"Modularity Class": 1, "size": 28.685715, "r": 235, "g": 81, "b": 72},
    }
    assert [n["label"] for n in doc["nodes"]] == ["Myriel", "Napoleon", "Mlle.Baptistine"]
    # edge ids are not kept; an edge goes from source to target as written
    assert doc["edges"] == [
        {"source": "1", "target": "0", "weight": 1.0},
        {"source": "2", "target": "0", "weight": 8.0, "metadata": {"Edge Label": "sister"}},
    ]


def test_gephi_gexf_1_3() -> None:
    doc = read("gexf", fixture("gephi.gexf"))
    assert doc["nodes"][0] == {
        "id": "0",
        "label": "Myriel",
        "position": [-266.82776, 299.6904, 0.0],
        "metadata": {
            "Modularity Class": 1,
            "PageRank": 0.0429,
            "viz:size": {"value": 28.685715},
            "viz:color": {"r": 235, "g": 81, "b": 72},
        },
    }
    assert doc["edges"] == [
        {"source": "1", "target": "0", "weight": 1.0},
        {
            "source": "2",
            "target": "0",
            "weight": 8.0,
            "metadata": {"label": "sister", "viz:thickness": {"value": 2.0}},
        },
        # mutual: one edge each way
        {"source": "2", "target": "1", "weight": 1.0},
        {"source": "1", "target": "2", "weight": 1.0},
    ]


@pytest.mark.parametrize("name", ["networkx.graphml", "networkx.gexf"])
def test_networkx_files(name: str) -> None:
    doc = read(name.rpartition(".")[2], fixture(name))
    hub, leaf, lone = doc["nodes"]
    assert hub == {
        "id": "hub",
        "label": "Hub",
        "group": "core",
        "position": [1.5, -2.0, 0.25],
        "metadata": {"rank": 1, "score": 0.5},
    }
    assert leaf["position"] == [0.0, 3.0, -1.0] and leaf["group"] == "edge"
    assert lone["metadata"] == {"active": True}
    assert doc["edges"] == [
        {"source": "hub", "target": "leaf", "weight": 2.5, "metadata": {"kind": "cites"}},
        {"source": "leaf", "target": "hub", "weight": 0.5},
    ]


def test_networkx_node_link_with_integer_and_tuple_ids() -> None:
    doc = read("networkx", fixture("networkx-node-link.json"))
    assert doc["nodes"] == [{"id": "1", "label": "one"}, {"id": "[2,3]", "label": "pair"}]
    # a multigraph's parallel edges: one edge per ordered pair, the last wins (in the store)
    assert [e["metadata"]["key"] for e in doc["edges"]] == [0, 1]
    store = GraphStore()
    result = store.import_document(
        formats.read("networkx", fixture("networkx-node-link.json"), Limits()).document
    )
    assert (result.added, result.edges) == (2, 1)
    assert store.edges()[0].weight == 5.0


def test_d3_miserables() -> None:
    doc = read("d3", fixture("d3-miserables.json"))
    assert doc["nodes"][0] == {"id": "Myriel", "group": "1"}  # a number as its JSON text
    assert doc["edges"][1] == {
        "source": "Mlle.Baptistine",
        "target": "Myriel",
        "weight": 1.0,
        "metadata": {"value": 8},  # d3's link strength is not our weight
    }


def test_3d_force_graph_after_its_simulation_ran() -> None:
    doc = read("d3", fixture("force-graph-after-run.json"))
    root, child = doc["nodes"]
    assert root == {
        "id": "0",
        "label": "root",
        "position": [12.5, -3.25, 7.0],
        "metadata": {"val": 4, "index": 0, "vx": 0.01, "vy": -0.02, "vz": 0.0},
    }
    assert child["metadata"]["color"] == "#ff0000"
    # link ends are the node objects d3 put there
    assert doc["edges"] == [{"source": "0", "target": "1", "weight": 3.0, "metadata": {"index": 0}}]


def test_gephi_edge_table_csv() -> None:
    doc = read("csv", fixture("edges.csv"))
    assert doc["nodes"] == [{"id": "a"}, {"id": "b"}, {"id": 'c "quoted"'}, {"id": "multi\r\nline"}]
    assert doc["edges"] == [
        {
            "source": "a",
            "target": "b",
            "weight": 2.5,
            "metadata": {"Type": "Directed", "Label": "cites, twice"},
        },
        {"source": 'c "quoted"', "target": "a", "weight": 1.0, "metadata": {"Type": "Undirected"}},
        {
            "source": "multi\r\nline",
            "target": "b",
            "weight": 1.0,
            "metadata": {"Type": "Directed", "Label": "x"},
        },
    ]


# --------------------------------------------------------------------------- d3 and networkx


def test_d3_nodes_without_ids_are_numbered() -> None:
    body = {"nodes": [{"name": "a"}, {"name": "b"}], "links": [{"source": 0, "target": 1}]}
    doc = read("d3", json.dumps(body))
    assert [n["id"] for n in doc["nodes"]] == ["0", "1"]
    assert doc["edges"][0]["source"] == "0"
    body = {"nodes": [{"index": 0}, {"index": 1}], "links": [{"source": {"index": 1}, "target": 0}]}
    assert read("d3", json.dumps(body))["edges"][0]["source"] == "1"


def test_d3_and_networkx_ids_become_their_json_text() -> None:
    body = {
        "nodes": [{"id": 7}, {"id": 1.5}, {"id": True}, {"id": None}, {"id": "s"}],
        "links": [{"source": 7, "target": 1.5}, {"source": True, "target": None}],
    }
    doc = read("d3", json.dumps(body))
    assert [n["id"] for n in doc["nodes"]] == ["7", "1.5", "true", "null", "s"]
    assert [(e["source"], e["target"]) for e in doc["edges"]] == [("7", "1.5"), ("true", "null")]
    nl = {"directed": True, "nodes": [{"id": 7}], "links": [{"source": 7, "target": 7}]}
    assert read("networkx", json.dumps(nl))["edges"][0]["source"] == "7"


def test_label_name_group_and_position_rules() -> None:
    body = {
        "nodes": [
            {"id": "a", "label": "L", "name": "N", "group": 2, "x": 1, "y": 2},
            {"id": "b", "name": 5, "group": ["not", "text"], "x": 1},
            {"id": "c", "x": 1, "y": 2, "z": "high", "label": None},
            {"id": "d", "metadata.x": 9, "x": 1, "y": 2, "z": 3},
        ],
        "links": [],
    }
    a, b, c, d = read("d3", json.dumps(body))["nodes"]
    assert a == {
        "id": "a",
        "label": "L",
        "group": "2",
        "position": [1.0, 2.0, 0.0],
        "metadata": {"name": "N"},
    }
    assert b == {"id": "b", "label": "5", "metadata": {"group": ["not", "text"], "x": 1}}
    assert c == {"id": "c", "metadata": {"x": 1, "y": 2, "z": "high", "label": None}}
    assert d == {"id": "d", "position": [1.0, 2.0, 3.0], "metadata": {"x": 9}}  # metadata.K -> K


@pytest.mark.parametrize(
    ("fmt", "body", "code", "path"),
    [
        ("d3", [], "invalid_document", ""),
        ("d3", {"nodes": {}, "links": []}, "invalid_document", "nodes"),
        ("d3", {"nodes": [], "links": {}}, "invalid_document", "links"),
        ("d3", {"nodes": [{"id": "a"}, {"name": "b"}]}, "invalid_node", "nodes[1]"),
        ("d3", {"nodes": [{"id": {"o": 1}}]}, "invalid_node", "nodes[0].id"),
        ("d3", {"nodes": [{"id": 1}, {"id": "1"}]}, "duplicate_id", "nodes[1].id"),
        (
            "d3",
            {"nodes": [{"id": "a"}], "links": [{"target": "a"}]},
            "invalid_edge",
            "links[0].source",
        ),
        (
            "d3",
            {"nodes": [{"id": "a"}], "links": [{"source": {"x": 1}, "target": "a"}]},
            "invalid_edge",
            "links[0].source",
        ),
        (
            "d3",
            {"nodes": [{"id": "a"}], "links": [{"source": "a", "target": "a", "weight": "2"}]},
            "invalid_weight",
            "links[0].weight",
        ),
        ("d3", {"nodes": [{"id": "a", "x": 1, "y": 2e9}]}, "invalid_position", "nodes[0].x"),
        (
            "d3",
            {"nodes": [{"id": "a", "k": 1, "metadata.k": 2}]},
            "invalid_node",
            "nodes[0].metadata.k",
        ),
        ("networkx", {"directed": True, "nodes": [{"name": "a"}]}, "invalid_node", "nodes[0]"),
        (
            "networkx",
            {"directed": True, "nodes": [{"id": 1}], "edges": [{"source": 1}]},
            "invalid_edge",
            "edges[0].target",
        ),
        (
            "networkx",
            {
                "directed": True,
                "nodes": [{"id": 1}],
                "links": [{"source": 1, "target": 1, "weight": -1}],
            },
            "invalid_weight",
            "links[0].weight",
        ),
    ],
)
def test_json_refusals_name_the_item(fmt: str, body: object, code: str, path: str) -> None:
    error = refused(fmt, json.dumps(body))
    assert (error.code, error.path) == (code, path), error


def test_store_refusals_are_named_as_the_source_names_them() -> None:
    parsed = formats.read(
        "d3", b'{"nodes": [{"id": "a"}], "links": [{"source": "a", "target": "zz"}]}', Limits()
    )
    with pytest.raises(GraphError) as info:
        GraphStore().import_document(parsed.document, "replace")
    assert parsed.locate(info.value.path) == "links[0].target"
    xml = b'<graphml>\n<graph>\n<node id="a"/>\n<edge source="a" target="zz"/>\n</graph></graphml>'
    parsed = formats.read("graphml", xml, Limits())
    with pytest.raises(GraphError) as info:
        GraphStore().import_document(parsed.document, "replace")
    assert parsed.locate(info.value.path) == "line 4: edges[0].target"


def test_bad_json_is_bad_json() -> None:
    for fmt in ("d3", "networkx", "json"):
        assert refused(fmt, b"{nope").code == "bad_json"


# --------------------------------------------------------------------------- GraphML


def graphml(body: str, keys: str = "") -> str:
    return (
        '<?xml version="1.0"?>\n<graphml xmlns="http://graphml.graphdrawing.org/xmlns">\n'
        f'{keys}<graph edgedefault="undirected">\n{body}</graph>\n</graphml>\n'
    )


def test_graphml_defaults_untyped_keys_nested_graphs_and_yfiles_markup() -> None:
    keys = (
        '<key id="c" for="node" attr.name="color" attr.type="string">'
        "<default>grey</default></key>\n"
        '<key id="w" for="edge" attr.name="weight"/>\n'  # no attr.type: text, read as a number
        '<key id="x" for="node" attr.name="x"/><key id="y" for="node" attr.name="y"/>\n'
        '<key id="g" for="graph" attr.name="title" attr.type="string"/>\n'
        '<key id="ok" for="all" attr.name="ok" attr.type="boolean"/>\n'
        '<key id="yf" for="node" yfiles.type="nodegraphics"/>\n'
    )
    body = (
        '<data key="g">ignored</data>\n'
        '<node id="a"><data key="c">red</data><data key="x">1.5</data><data key="y">-2</data>'
        '<data key="yf"><y:ShapeNode xmlns:y="http://www.yworks.com/xml/graphml">'
        "<y:NodeLabel>A</y:NodeLabel></y:ShapeNode></data></node>\n"
        '<node id="outer"><graph id="inner">'
        '<node id="b"><data key="ok">1</data></node></graph></node>\n'
        '<edge source="a" target="b" id="e0" directed="false"><data key="w">2</data>'
        '<data key="undeclared">text</data></edge>\n'
    )
    doc = read("graphml", graphml(body, keys))
    assert doc["nodes"] == [
        {"id": "a", "position": [1.5, -2.0, 0.0], "metadata": {"color": "red"}},
        {"id": "b", "metadata": {"ok": True, "color": "grey"}},
        {"id": "outer", "metadata": {"color": "grey"}},
    ]
    assert doc["edges"] == [
        {"source": "a", "target": "b", "weight": 2.0, "metadata": {"undeclared": "text"}}
    ]


@pytest.mark.parametrize(
    ("body", "keys", "code", "path"),
    [
        ('<node><data key="d">1</data></node>\n', "", "invalid_node", "line 4"),
        ('<node id="a"/>\n<edge source="a"/>\n', "", "invalid_edge", "line 5"),
        ('<node id="a"/>\n<node id="a"/>\n', "", "duplicate_id", "line 5: nodes[1].id"),
        (
            '<node id="a"><data key="n">x1</data></node>\n',
            '<key id="n" for="node" attr.name="n" attr.type="int"/>\n',
            "invalid_node",
            "line 5",
        ),
        (
            '<node id="a"><data key="n">nan</data></node>\n',
            '<key id="n" for="node" attr.name="n" attr.type="double"/>\n',
            "invalid_node",
            "line 5",
        ),
        (
            '<node id="a"><data key="n">yes</data></node>\n',
            '<key id="n" for="node" attr.name="n" attr.type="boolean"/>\n',
            "invalid_node",
            "line 5",
        ),
        (
            '<node id="a"><data key="n">1</data><data key="n">2</data></node>\n',
            "",
            "invalid_node",
            "line 4",
        ),
        (
            '<node id="a"/><edge source="a" target="a"><data key="weight">heavy</data></edge>\n',
            "",
            "invalid_weight",
            "line 4",
        ),
        (
            '<node id="a"><data key="x">1</data><data key="y">9e9</data></node>\n',
            "",
            "invalid_position",
            "line 4",
        ),
        ('<hyperedge><endpoint node="a"/></hyperedge>\n', "", "unsupported_feature", "line 4"),
        ("<locator/>\n", "", "unsupported_feature", "line 4"),
        ('<node id="a">\n', "", "bad_xml", "line 5"),
    ],
)
def test_graphml_refusals_name_the_line(body: str, keys: str, code: str, path: str) -> None:
    error = refused("graphml", graphml(body, keys))
    assert (error.code, error.path) == (code, path), error


def test_graphml_in_another_namespace_is_read_as_the_root_says() -> None:
    old = b'<graphml xmlns="http://graphml.graphdrawing.org/xmlns/graphml"><graph><node id="a"/>'
    doc = read("graphml", old + b"</graph></graphml>")
    assert doc["nodes"] == [{"id": "a"}]


def test_graphml_reader_wants_graphml() -> None:
    error = refused("graphml", b"<gexf/>")
    assert (error.code, error.path) == ("unknown_format", "line 1")


# --------------------------------------------------------------------------- GEXF


def gexf(body: str, attributes: str = "") -> str:
    return (
        '<?xml version="1.0"?>\n<gexf xmlns="http://www.gexf.net/1.2draft" '
        'xmlns:viz="http://www.gexf.net/1.2draft/viz" version="1.2">\n'
        f'<graph mode="static" defaultedgetype="directed">\n{attributes}{body}</graph>\n</gexf>\n'
    )


def test_gexf_defaults_hierarchy_and_xml_attributes() -> None:
    attributes = (
        '<attributes class="node"><attribute id="0" title="kind" type="string">'
        "<default>note</default></attribute>"
        '<attribute id="1" title="tags" type="liststring"/></attributes>\n'
        '<attributes class="edge"><attribute id="0" title="since" type="integer"/></attributes>\n'
    )
    body = (
        "<nodes>\n"
        '<node id="a" label="A" pid="p"><attvalues><attvalue for="1" value="x|y"/></attvalues>'
        '<nodes><node id="a1"><viz:position x="1" y="2"/></node></nodes></node>\n'
        "</nodes>\n<edges>\n"
        '<edge id="9" source="a" target="a1" kind="ref" label="L"><attvalues>'
        '<attvalue for="0" value="2019"/></attvalues></edge>\n'
        "</edges>\n"
    )
    doc = read("gexf", gexf(body, attributes))
    assert doc["nodes"] == [
        {"id": "a1", "position": [1.0, 2.0, 0.0], "metadata": {"kind": "note"}},
        {"id": "a", "label": "A", "metadata": {"pid": "p", "tags": "x|y", "kind": "note"}},
    ]
    assert doc["edges"] == [
        {
            "source": "a",
            "target": "a1",
            "weight": 1.0,
            "metadata": {"kind": "ref", "label": "L", "since": 2019},
        }
    ]


@pytest.mark.parametrize(
    ("body", "code", "path"),
    [
        ('<nodes><node label="x"/></nodes>\n', "invalid_node", "line 4"),
        (
            '<nodes><node id="a"/></nodes><edges><edge target="a"/></edges>\n',
            "invalid_edge",
            "line 4",
        ),
        (
            '<edges><edge source="a" target="a" weight="much"/></edges>\n',
            "invalid_weight",
            "line 4",
        ),
        (
            '<nodes><node id="a"><viz:position x="1" y="oops"/></node></nodes>\n',
            "invalid_position",
            "line 4",
        ),
        (
            '<nodes><node id="a"><attvalues><attvalue for="0" value="1" start="2001"/>'
            "</attvalues></node></nodes>\n",
            "unsupported_feature",
            "line 4",
        ),
        (
            '<nodes><node id="a"><spells><spell start="1"/></spells></node></nodes>\n',
            "unsupported_feature",
            "line 4",
        ),
        (
            '<nodes><node id="a"><attvalues><attvalue for="0"/></attvalues></node></nodes>\n',
            "invalid_attvalue",
            "line 4",
        ),
    ],
)
def test_gexf_refusals_name_the_line(body: str, code: str, path: str) -> None:
    error = refused("gexf", gexf(body))
    assert (error.code, error.path) == (code, path), error


def test_dynamic_gexf_is_refused_not_read_as_static() -> None:
    # its times became metadata strings and the graph was read as if static
    dynamic = gexf('<nodes><node id="a"/></nodes>\n').replace('mode="static"', 'mode="dynamic"')
    error = refused("gexf", dynamic)
    assert (error.code, error.path) == ("unsupported_feature", "line 3")
    assert 'mode="dynamic"' in error.message
    for body in (
        '<nodes><node id="a" start="2001" end="2002"/></nodes>\n',
        '<nodes><node id="a"/><node id="b"/></nodes>\n'
        '<edges><edge source="a" target="b" timestamp="3"/></edges>\n',
    ):
        error = refused("gexf", gexf(body))
        assert error.code == "unsupported_feature" and "a time:" in error.message


# --------------------------------------------------------------------------- CSV


def test_csv_without_a_header() -> None:
    doc = read("csv", 'a,b\nb, c ,0.5\n\n  d,a\n" e",a\n')
    assert [n["id"] for n in doc["nodes"]] == ["a", "b", "c ", "d", " e"]
    assert [(e["source"], e["target"], e["weight"]) for e in doc["edges"]] == [
        ("a", "b", 1.0),
        ("b", "c ", 0.5),
        ("d", "a", 1.0),
        (" e", "a", 1.0),
    ]


@pytest.mark.parametrize(
    ("body", "code", "path"),
    [
        ("a,b\nc\n", "bad_csv", "line 2"),
        ("a,b\nc,d,1,2\n", "bad_csv", "line 2"),
        ("a,b\n\nc,d,heavy\n", "invalid_weight", "line 3"),
        ("a,b\nc,d,-1\n", "invalid_weight", "line 2"),
        ("a,b\n,d\n", "bad_csv", "line 2"),
        ('a,b\n"c,d\n', "bad_csv", "line 2"),
        ('a,b\n"c"x,d\n', "bad_csv", "line 2"),
        ("source,target,weight\na,b\n", "bad_csv", "line 2"),
        ("source,target,Source\na,b,c\n", "bad_csv", "line 1"),
        ('a,b\n"multi\nline",c\nd,e,f,g\n', "bad_csv", "line 4"),
    ],
)
def test_csv_refusals_name_the_line(body: str, code: str, path: str) -> None:
    error = refused("csv", body)
    assert (error.code, error.path) == (code, path), error


@pytest.mark.parametrize(
    "body", ["", "\n\n", "\ufeff", "source,target\n", "Source,Target,Weight\n\n"]
)
def test_a_csv_without_edges_is_refused(body: str) -> None:
    """An empty body (curl's @file mistyped) must not empty the graph by a replace."""
    error = refused("csv", body)
    assert (error.code, error.path) == ("bad_csv", "")
    assert error.message.startswith("no edges")


def test_csv_that_is_not_utf8() -> None:
    error = refused("csv", b"a,b\n" * 5000 + b"c,\xff\n")
    assert (error.code, error.path) == ("bad_csv", "line 5001")
    assert "UTF-8" in error.message


def test_readers_stop_at_the_graph_limits() -> None:
    small = Limits(max_nodes=3, max_edges=2)
    assert refused("csv", "a,b\nc,d\n", small).code == "too_many_nodes"
    assert refused("csv", "a,b\nb,c\nc,a\n", small).code == "too_many_edges"
    nodes = "".join(f'<node id="{i}"/>' for i in range(4))
    assert refused("graphml", graphml(nodes), small).code == "too_many_nodes"
    edges = '<node id="a"/>' + '<edge source="a" target="a"/>' * 3
    assert refused("graphml", graphml(edges), small).code == "too_many_edges"
    assert refused("gexf", gexf(f"<nodes>{nodes}</nodes>"), small).code == "too_many_nodes"
    mutual = (
        '<edges><edge source="a" target="b"/><edge source="b" target="c" type="mutual"/></edges>'
    )
    assert refused("gexf", gexf(mutual), small).code == "too_many_edges"
