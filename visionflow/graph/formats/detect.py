"""Which reader a body goes to: ``?format=``, else its Content-Type, else a look at the body.

- ``application/graphml+xml``, ``application/gexf+xml``, ``text/csv``: that format;
- ``application/xml``, ``text/xml``: the root element (``graphml`` or ``gexf``);
- ``application/json``: the shape of the object. ``directed`` or ``multigraph`` is networkx's
  node-link; else ``links``, d3's; else ``nodes`` or ``edges``, ours. Any other object is
  refused, naming the shapes expected (a body that is not a JSON object goes to our reader,
  which says what is wrong with it).

Sans-IO.
"""

from __future__ import annotations

from typing import Final

import msgspec

from visionflow import jsonsafe
from visionflow.errors import GraphError
from visionflow.graph.formats import xmlsafe

__all__ = ["BY_MEDIA_TYPE", "FORMATS", "MEDIA_TYPES", "choose", "json_shape", "xml_kind"]

FORMATS: Final = ("json", "d3", "networkx", "graphml", "gexf", "csv")
#: Media types naming one format.
BY_MEDIA_TYPE: Final = {
    "application/graphml+xml": "graphml",
    "application/gexf+xml": "gexf",
    "text/csv": "csv",
}
_XML: Final = frozenset({"application/xml", "text/xml"})
#: Every media type an import may be sent as.
MEDIA_TYPES: Final = frozenset({"application/json", *BY_MEDIA_TYPE, *_XML})

EXPECTED_JSON: Final = (
    "expected a graph document: VisionFlow's {nodes, edges}, d3's {nodes, links} or networkx's "
    "node-link {directed, multigraph, graph, nodes, edges|links} (or name it: ?format=)"
)

_TOP: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])  # the keys; values left unread


def json_shape(data: bytes) -> str:
    """``json``, ``d3`` or ``networkx`` from the top-level keys, or GraphError."""
    try:
        keys = jsonsafe.decode(data, _TOP).keys()
    except msgspec.DecodeError:
        return "json"  # not a JSON object: our reader explains what it is instead
    if "directed" in keys or "multigraph" in keys:
        return "networkx"
    if "links" in keys:
        return "d3"
    if "nodes" in keys or "edges" in keys:
        return "json"
    raise GraphError("unknown_format", EXPECTED_JSON, "")


def xml_kind(data: bytes) -> str:
    """``graphml`` or ``gexf`` from the root element, or GraphError."""
    _ns, name = xmlsafe.root_name(data)
    if name in ("graphml", "gexf"):
        return name
    raise GraphError(
        "unknown_format", f"expected GraphML (<graphml>) or GEXF (<gexf>), not <{name}>", "line 1"
    )


def media_type(content_type: str | None) -> str:
    return (content_type or "").partition(";")[0].strip().lower()


def choose(fmt: str | None, content_type: str | None, data: bytes) -> str:
    """The format of an import body; GraphError ``invalid_parameter`` for a bad ``format``,
    ``unsupported_media_type`` for a type no reader takes, ``unknown_format`` when neither
    says and the body does not either."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise GraphError(
                "invalid_parameter", f"format must be one of {', '.join(FORMATS)}", "format"
            )
        return fmt
    media = media_type(content_type)
    if media in BY_MEDIA_TYPE:
        return BY_MEDIA_TYPE[media]
    if media in _XML:
        return xml_kind(data)
    if media == "application/json":
        return json_shape(data)
    raise GraphError(
        "unsupported_media_type",
        f"an import is sent as one of {', '.join(sorted(MEDIA_TYPES))}, not {content_type!r}",
        "Content-Type",
    )
