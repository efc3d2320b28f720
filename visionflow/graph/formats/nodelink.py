"""networkx node-link JSON (``networkx.node_link_data``): ``{"directed", "multigraph",
"graph", "nodes", "edges"}`` (``"links"`` before networkx 3.4).

Every node has an ``id``, any JSON value but an object (networkx writes a tuple as an array),
made a string as :func:`~.common.json_text` spells it. ``directed``, ``multigraph`` and
``graph`` (the graph's own attributes) are not read: an edge goes from ``source`` to
``target`` as written, and a multigraph's parallel edges become one (the last), as in any
document. Node and edge attributes follow :func:`~.common.node_record` and
:func:`~.common.edge_record` (a multigraph edge's ``key`` is metadata).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from visionflow.graph import document
from visionflow.graph.formats.common import Parsed
from visionflow.graph.formats.d3 import read_links

__all__ = ["SCHEMA", "read"]

_ID: dict[str, Any] = {"type": ["string", "number", "boolean", "null", "array"]}
_EDGES: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "source": _ID,
            "target": _ID,
            "weight": {"type": "number", "minimum": 0, "maximum": document.MAX_WEIGHT},
        },
        "required": ["source", "target"],
    },
}
#: The JSON schema of what :func:`read` takes (``/openapi.json``).
SCHEMA: dict[str, Any] = {
    "title": "NodeLinkGraph",
    "description": "networkx node-link data (networkx.node_link_data): ids of any JSON type but "
    "object become strings (their JSON text); label (else name), group, x/y/z and an edge's "
    "weight are mapped; other attributes are metadata.",
    "type": "object",
    "properties": {
        "directed": {"type": "boolean"},
        "multigraph": {"type": "boolean"},
        "graph": {"type": "object"},
        "nodes": {
            "type": "array",
            "items": {"type": "object", "properties": {"id": _ID}, "required": ["id"]},
        },
        "edges": _EDGES,
        "links": _EDGES,
    },
    "anyOf": [{"required": ["directed"]}, {"required": ["multigraph"]}],
}


def read(doc: object) -> Parsed:
    links = "edges" if isinstance(doc, Mapping) and "edges" in doc else "links"
    return read_links(doc, links, by_index=False)
