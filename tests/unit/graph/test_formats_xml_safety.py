"""XML bodies cannot expand entities, read files or URLs, or nest and sprawl without bound:
a DOCTYPE is refused as expat meets it, and depth and element count are limited."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from visionflow.errors import GraphError
from visionflow.graph import formats
from visionflow.graph.formats import Limits, detect

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE graphml [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<graphml><graph><node id="a"><data key="d">&lol9;</data></node></graph></graphml>
"""


def external_entity(root: str, target: str) -> bytes:
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE {root} [<!ENTITY xxe SYSTEM "{target}">]>\n'
        f'<{root}><graph><node id="&xxe;"/></graph></{root}>\n'
    ).encode()


def unsafe(fmt: str, data: bytes) -> GraphError:
    with pytest.raises(GraphError) as info:
        formats.read(fmt, data, Limits())
    return info.value


@pytest.mark.parametrize("fmt", ["graphml", "gexf"])
def test_billion_laughs_is_refused_at_once(fmt: str) -> None:
    data = BILLION_LAUGHS.replace(b"graphml", fmt.encode())
    started = time.perf_counter()
    error = unsafe(fmt, data)
    assert (error.code, error.path) == ("unsafe_xml", "line 2")
    assert "DOCTYPE" in error.message
    assert time.perf_counter() - started < 0.5  # nothing was expanded
    with pytest.raises(GraphError) as info:  # nor when the root element is sniffed
        detect.choose(None, "application/xml", data)
    assert info.value.code == "unsafe_xml"


@pytest.mark.parametrize("fmt", ["graphml", "gexf"])
def test_external_entities_are_never_read(fmt: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    for target in (secret.as_uri(), str(secret), "http://127.0.0.1:9/x.dtd"):
        error = unsafe(fmt, external_entity(fmt, target))
        assert error.code == "unsafe_xml"
        assert "TOP-SECRET" not in str(error)


@pytest.mark.parametrize(
    "doctype",
    [
        b'<!DOCTYPE graphml SYSTEM "http://127.0.0.1:9/graphml.dtd">',  # an external DTD
        b'<!DOCTYPE graphml [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>',  # parameter
        b"<!DOCTYPE graphml>",  # even an empty one: neither format has any use for it
    ],
)
def test_any_doctype_is_refused(doctype: bytes) -> None:
    data = b'<?xml version="1.0"?>\n' + doctype + b"\n<graphml><graph/></graphml>"
    assert unsafe("graphml", data).code == "unsafe_xml"


def test_an_entity_without_a_dtd_is_not_well_formed() -> None:
    data = b'<graphml><graph><node id="&xxe;"/></graph></graphml>'
    error = unsafe("graphml", data)
    assert (error.code, error.path) == ("bad_xml", "line 1")
    assert "undefined entity" in error.message
    # the five predefined entities and character references are XML itself
    parsed = formats.read(
        "graphml", b'<graphml><graph><node id="&lt;&amp;&#65;"/></graph></graphml>', Limits()
    )
    assert parsed.document.nodes[0].id == "<&A"


def test_xinclude_is_not_processed(tmp_path: Path) -> None:
    (tmp_path / "more.graphml").write_text('<node id="included"/>')
    data = (
        '<graphml xmlns:xi="http://www.w3.org/2001/XInclude"><graph>'
        f'<xi:include href="{(tmp_path / "more.graphml").as_uri()}"/></graph></graphml>'
    ).encode()
    assert formats.read("graphml", data, Limits()).document.nodes == []


@pytest.mark.parametrize("fmt", ["graphml", "gexf"])
def test_depth_is_bounded(fmt: str) -> None:
    deep = b"<a>" * 100 + b"</a>" * 100
    error = unsafe(fmt, f"<{fmt}>".encode() + deep + f"</{fmt}>".encode())
    assert (error.code, error.path) == ("too_deep", "line 1")
    nested = b"<graphml>" + b'<graph><node id="n">' * 40 + b"</node></graph>" * 40 + b"</graphml>"
    assert unsafe("graphml", nested).code == "too_deep"  # nested graphs count too


@pytest.mark.parametrize("fmt", ["graphml", "gexf"])
def test_element_count_is_bounded(fmt: str) -> None:
    data = f"<{fmt}>".encode() + b"<x/>\n" * 1000 + f"</{fmt}>".encode()
    with pytest.raises(GraphError) as info:
        formats.read(fmt, data, Limits(max_elements=500))
    assert (info.value.code, info.value.path) == ("too_many_elements", "line 500")
    formats.read(fmt, data, Limits(max_elements=1001))  # the root and 1000 within: fine


def defaults_document(fmt: str, keys: int, nodes: int) -> bytes:
    """``keys`` attributes declared with a default, and ``nodes`` nodes that give none."""
    if fmt == "graphml":
        decl = "".join(
            f'<key id="d{k}" for="node" attr.name="k{k}" attr.type="string">'
            "<default>v</default></key>\n"
            for k in range(keys)
        )
        body = "".join(f'<node id="n{i}"/>\n' for i in range(nodes))
        return f"<graphml>\n{decl}<graph>\n{body}</graph></graphml>\n".encode()
    decl = "".join(
        f'<attribute id="a{k}" title="k{k}" type="string"><default>v</default></attribute>\n'
        for k in range(keys)
    )
    body = "".join(f'<node id="n{i}"/>\n' for i in range(nodes))
    return (
        f'<gexf version="1.2"><graph>\n<attributes class="node">\n{decl}</attributes>\n'
        f"<nodes>\n{body}</nodes></graph></gexf>\n"
    ).encode()


@pytest.mark.parametrize("fmt", ["graphml", "gexf"])
def test_values_filled_in_by_defaults_are_bounded(fmt: str) -> None:
    # k keys with a default over n bare nodes make k x n values from a document of k + n
    # elements: 4000 x 4000 (425 KB) made 16 million, 1.5 GB in the service
    data = defaults_document(fmt, keys=5, nodes=10)
    with pytest.raises(GraphError) as info:
        formats.read(fmt, data, Limits(max_default_values=30))
    assert info.value.code == "too_many_defaults"
    assert "30 attribute values" in info.value.message
    first_node_line = data.decode().splitlines().index('<node id="n0"/>') + 1
    assert info.value.path == f"line {first_node_line + 6}"  # the 7th node: 35 > 30
    parsed = formats.read(fmt, data, Limits(max_default_values=50)).document
    assert [n.metadata for n in parsed.nodes] == [{f"k{k}": "v" for k in range(5)}] * 10
