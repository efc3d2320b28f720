"""d3-force and 3d-force-graph JSON: ``{"nodes": [...], "links": [{"source", "target"}]}``.

A node's id is its ``id`` (any JSON scalar, as :func:`~.common.json_text` spells it), or, when
no node has one, its index in ``nodes`` (d3-force's default). A link's ``source`` and
``target`` are ids, or node objects carrying one, as d3 leaves them after it has run. Node
attributes follow :func:`~.common.node_record` (``name`` is the label 3d-force-graph shows,
``x``/``y``/``z`` the position d3 writes); link attributes :func:`~.common.edge_record`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from visionflow.errors import GraphError
from visionflow.graph import document
from visionflow.graph.formats.common import Parsed, edge_record, node_record, text_id

__all__ = ["SCHEMA", "read", "read_links"]

_ID: dict[str, Any] = {"type": ["string", "number", "boolean", "null", "array"]}
_END: dict[str, Any] = {"description": "an id (any JSON value but an object), or a node object"}
#: The JSON schema of what :func:`read` takes (``/openapi.json``).
SCHEMA: dict[str, Any] = {
    "title": "D3Graph",
    "description": "d3-force / 3d-force-graph: nodes and links. A node's id is its id (its index "
    "when no node has one); a link's source and target are ids, or node objects with one. "
    "label (else name), group, x/y/z and a link's weight are mapped; other fields are metadata.",
    "type": "object",
    "properties": {
        "nodes": {"type": "array", "items": {"type": "object", "properties": {"id": _ID}}},
        "links": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    # an id of any type, or a node object: any JSON value, so no "type" (an
                    # anyOf of the two let a fuzzer call a valid id a schema violation)
                    "source": _END,
                    "target": _END,
                    "weight": {"type": "number", "minimum": 0, "maximum": document.MAX_WEIGHT},
                },
                "required": ["source", "target"],
            },
        },
    },
    "required": ["links"],
}


def _list(doc: Mapping[str, Any], name: str) -> list[Any]:
    items = doc.get(name, [])
    if not isinstance(items, list):
        raise GraphError("invalid_document", f"{name} must be a list", name)
    return items


def read(doc: object) -> Parsed:
    """A decoded d3 document as a validated section 7 one."""
    return read_links(doc, "links", by_index=True)


def read_links(doc: object, links: str, *, by_index: bool) -> Parsed:
    """``doc`` with its edges in ``links``; ``by_index``: nodes without ids are numbered."""
    if not isinstance(doc, Mapping):
        raise GraphError("invalid_document", "document must be a JSON object", "")
    nodes = _list(doc, "nodes")
    edges = _list(doc, links)
    for i, item in enumerate(nodes):
        if not isinstance(item, Mapping):
            raise GraphError("invalid_node", "node must be a JSON object", f"nodes[{i}]")
    by_index = by_index and not any("id" in item for item in nodes)
    out_nodes: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(nodes):
        path = f"nodes[{i}]"
        if by_index:
            node_id = str(i)
        elif "id" not in item:
            raise GraphError(
                "invalid_node", "node has no id" + (" while others have one" if nodes else ""), path
            )
        else:
            node_id = text_id(item["id"], f"{path}.id")
        if node_id in seen:
            raise GraphError(
                "duplicate_id",
                f"id {node_id!r} already used by nodes[{seen[node_id]}]",
                f"{path}.id",
            )
        seen[node_id] = i
        attrs = {k: v for k, v in item.items() if k != "id"}
        out_nodes.append(node_record(node_id, attrs, _under(path)))
    key = "index" if by_index else "id"
    out_edges: list[dict[str, Any]] = []
    for j, item in enumerate(edges):
        path = f"{links}[{j}]"
        if not isinstance(item, Mapping):
            raise GraphError("invalid_edge", "link must be a JSON object", path)
        source = _end(item, "source", key, path)
        target = _end(item, "target", key, path)
        attrs = {k: v for k, v in item.items() if k not in ("source", "target")}
        out_edges.append(edge_record(source, target, attrs, _under(path)))

    def locate(where: str) -> str:
        return f"{links}{where.removeprefix('edges')}" if where.startswith("edges[") else where

    try:
        parsed = document.parse({"nodes": out_nodes, "edges": out_edges})
    except GraphError as exc:
        raise GraphError(exc.code, exc.message, locate(exc.path)) from None
    return Parsed(parsed, locate)


def _under(path: str) -> Callable[[str], str]:
    return lambda name: f"{path}.{name}"


def _end(link: Mapping[str, Any], end: str, key: str, path: str) -> str:
    path = f"{path}.{end}"
    if end not in link:
        raise GraphError("invalid_edge", f"{end} is required", path)
    value = link[end]
    if isinstance(value, Mapping):  # a node object, as d3 leaves a link after it has run
        if key not in value:
            raise GraphError("invalid_edge", f"a node object here needs its {key!r}", path)
        value = value[key]
    return text_id(value, path)
