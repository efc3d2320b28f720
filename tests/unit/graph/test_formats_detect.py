"""Which reader an import body goes to: ?format=, else the Content-Type, else the body."""

from __future__ import annotations

import pytest

from visionflow.errors import GraphError
from visionflow.graph.formats import detect

GRAPHML = b'<?xml version="1.0"?>\n<!-- a comment first -->\n<graphml xmlns="http://graphml.graphdrawing.org/xmlns"/>'
GEXF = b'<gexf xmlns="http://gexf.net/1.3" version="1.3"><graph/></gexf>'


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/json", b'{"nodes": [], "edges": []}', "json"),
        ("application/json; charset=utf-8", b'{"edges": [{"source": 1}]}', "json"),
        ("application/json", b'{"nodes": [{"id": "a"}], "revision": 3}', "json"),
        ("application/json", b'{"nodes": [], "links": []}', "d3"),
        ("application/json", b'{"links": [], "edges": []}', "d3"),
        ("application/json", b'{"directed": false, "nodes": [], "links": []}', "networkx"),
        ("application/json", b'{"multigraph": true, "nodes": [], "edges": []}', "networkx"),
        # not an object, not JSON: our reader says what is wrong (bad_json, invalid_document)
        ("application/json", b"[1, 2]", "json"),
        ("application/json", b"{nope", "json"),
        ("application/graphml+xml", b"anything", "graphml"),
        ("application/gexf+xml", b"anything", "gexf"),
        ("text/csv", b"a,b", "csv"),
        ("Text/CSV; charset=utf-8; header=present", b"a,b", "csv"),
        ("application/xml", GRAPHML, "graphml"),
        ("text/xml", GEXF, "gexf"),
    ],
)
def test_chosen_by_content_type_and_body(content_type: str, body: bytes, expected: str) -> None:
    assert detect.choose(None, content_type, body) == expected


def test_the_format_parameter_wins() -> None:
    assert detect.choose("csv", "application/json", b"{}") == "csv"
    assert detect.choose("d3", None, b"") == "d3"
    with pytest.raises(GraphError) as info:
        detect.choose("yaml", "application/json", b"{}")
    assert (info.value.code, info.value.path) == ("invalid_parameter", "format")


@pytest.mark.parametrize("body", [b"{}", b'{"vertices": [], "arcs": []}'])
def test_json_of_no_known_shape_says_what_was_expected(body: bytes) -> None:
    with pytest.raises(GraphError) as info:
        detect.choose(None, "application/json", body)
    assert info.value.code == "unknown_format"
    assert "{nodes, links}" in info.value.message and "node-link" in info.value.message


def test_xml_of_another_kind_is_refused() -> None:
    with pytest.raises(GraphError) as info:
        detect.choose(None, "application/xml", b"<svg/>")
    assert (info.value.code, info.value.path) == ("unknown_format", "line 1")
    with pytest.raises(GraphError) as info:
        detect.choose(None, "application/xml", b"no markup at all")
    assert info.value.code == "bad_xml"


def test_the_root_is_found_without_reading_the_rest() -> None:
    # broken past the first few KiB: never read
    body = GRAPHML.replace(b"/>", b">") + b"\n" * 8192 + b"<node " * 1_000_000
    assert detect.xml_kind(body) == "graphml"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_other_types_are_unsupported(content_type: str | None) -> None:
    with pytest.raises(GraphError) as info:
        detect.choose(None, content_type, b"{}")
    assert (info.value.code, info.value.path) == ("unsupported_media_type", "Content-Type")
