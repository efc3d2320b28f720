"""The graph document format (docs/protocol.md section 7): the body of ``POST /api/graph/import``
and of ``GET /api/graph/export``, and the saved ``state.dir/graph.json``.

The msgspec Structs below are the format: they decode a document, and ``/openapi.json`` is
generated from them. msgspec's own error text never reaches a
client: when a document does not decode, :func:`explain` walks it item by item and raises the
:class:`~visionflow.errors.GraphError` of docs/protocol.md, whose ``path`` names the offending
item (``nodes[3].id``). The two agree on what they accept; the tests hold each refusal to its code
and path.

Fields of a node or an edge that the format does not name are not dropped: they go into its
``metadata`` (a key given both ways is refused, naming the field). Other formats (d3,
networkx, GraphML, GEXF, CSV) are read into this same shape by :mod:`visionflow.graph.formats`.

What a document means for the graph (merge or replace, edges to existing nodes, limits) is the
store's business (:meth:`~visionflow.graph.store.GraphStore.import_document`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, cast

import msgspec
import numpy as np

from visionflow import jsonsafe
from visionflow.errors import GraphError
from visionflow.graph.dense import MAX_COORD

__all__ = [
    "EDGE_FIELDS",
    "MAX_WEIGHT",
    "NODE_FIELDS",
    "DocumentEdge",
    "DocumentNode",
    "ExportedDocument",
    "ExportedEdge",
    "ExportedNode",
    "GraphDocument",
    "check_position",
    "check_weight",
    "decode",
    "explain",
    "parse",
]

# Edge weights beyond this are refused: a spring force scaled by ~1e308 overflows to inf.
MAX_WEIGHT = 1e6

Coordinate = Annotated[float, msgspec.Meta(ge=-MAX_COORD, le=MAX_COORD)]
Position = tuple[Coordinate, Coordinate, Coordinate]
Weight = Annotated[float, msgspec.Meta(ge=0, le=MAX_WEIGHT)]


class DocumentNode(msgspec.Struct):
    """A knowledge node; a null or absent label, group or metadata means "not given"."""

    id: str
    label: str | None = None
    group: str | None = None
    metadata: dict[str, Any] | None = None
    position: Position | None = None


class DocumentEdge(msgspec.Struct):
    """An edge; a null or absent metadata, and an absent weight (a null one is refused), mean
    "not given": an edge already there keeps its own, a new one gets {} and 1.0."""

    source: str
    target: str
    weight: Weight | msgspec.UnsetType = msgspec.UNSET
    metadata: dict[str, Any] | None = None


class GraphDocument(msgspec.Struct):
    """An import document; other top-level keys (an export's ``revision``) are ignored."""

    nodes: list[DocumentNode] = msgspec.field(default_factory=list)
    edges: list[DocumentEdge] = msgspec.field(default_factory=list)


class ExportedNode(msgspec.Struct):
    """A node of an export: every field given; ``kind`` only when agents are included,
    ``position`` only once the node has been through a physics step."""

    id: str
    label: str
    group: str
    metadata: dict[str, Any]
    kind: str | msgspec.UnsetType = msgspec.UNSET
    position: list[float] | msgspec.UnsetType = msgspec.UNSET  # a list: to_builtins keeps tuples


class ExportedEdge(msgspec.Struct):
    """An edge of an export: ``metadata`` only when the edge has some."""

    source: str
    target: str
    weight: float
    metadata: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class ExportedDocument(msgspec.Struct):
    """An export: itself a valid import document (``revision`` is ignored there)."""

    nodes: list[ExportedNode]
    edges: list[ExportedEdge]
    revision: int


#: The fields of the format; any other field of a node or edge goes into its metadata.
NODE_FIELDS = frozenset(DocumentNode.__struct_fields__)
EDGE_FIELDS = frozenset(DocumentEdge.__struct_fields__)


# The fast path decodes straight into Structs that refuse unknown fields; a document that has
# some (or any other problem) takes the slow path, which explains or moves them (``_gather``).
class _StrictNode(DocumentNode, forbid_unknown_fields=True):
    pass


class _StrictEdge(DocumentEdge, forbid_unknown_fields=True):
    pass


class _StrictDocument(msgspec.Struct):
    nodes: list[_StrictNode] = msgspec.field(default_factory=list)
    edges: list[_StrictEdge] = msgspec.field(default_factory=list)

    def plain(self) -> GraphDocument:
        # the lists as they are (a subclass's items), not a copy of 100k of them
        return GraphDocument(
            nodes=cast("list[DocumentNode]", self.nodes),
            edges=cast("list[DocumentEdge]", self.edges),
        )


_DECODER = msgspec.json.Decoder(_StrictDocument)


# --------------------------------------------------------------------------- value rules


def check_weight(value: object, path: str) -> float:
    """A number from 0 to MAX_WEIGHT (a boolean is not one), or GraphError naming ``path``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GraphError("invalid_weight", "weight must be a number", path)
    if not (0 <= value <= MAX_WEIGHT):  # exact for any int; NaN fails it too
        raise GraphError(
            "invalid_weight", f"weight must be a number from 0 to {MAX_WEIGHT:g}", path
        )
    return float(value)


def check_position(
    position: Iterable[object], path: str = "position"
) -> tuple[float, float, float]:
    """Three finite numbers within +-MAX_COORD, or GraphError naming ``path``."""
    try:
        coords = list(position)
    except TypeError:
        coords = []
    if len(coords) != 3 or not all(
        isinstance(c, int | float | np.floating | np.integer) and not isinstance(c, bool)
        for c in coords
    ):
        raise GraphError("invalid_position", "position must be three numbers", path)
    # ints are compared before any float() so a 400-digit one cannot overflow
    if not all(-MAX_COORD <= c <= MAX_COORD for c in coords):  # type: ignore[operator]
        raise GraphError(
            "invalid_position",
            f"position must be finite, each coordinate from -{MAX_COORD:g} to {MAX_COORD:g}",
            path,
        )
    x, y, z = (float(c) for c in coords)  # type: ignore[arg-type]
    return (x, y, z)


# --------------------------------------------------------------------------- reading


def decode(data: bytes) -> GraphDocument:
    """A request body as a validated document, or GraphError (``bad_json`` or the item's rule)."""
    try:
        # straight into the Structs: no intermediate dicts for a 100k-node body
        return _unique_ids(jsonsafe.decode(data, _DECODER).plain())
    except msgspec.ValidationError:
        pass  # unknown fields, or explained in our words below (or bad JSON, e.g. 1e400)
    except msgspec.DecodeError as exc:
        raise GraphError("bad_json", f"body is not valid JSON: {exc}", "") from exc
    try:
        doc = jsonsafe.decode(data)
    except msgspec.DecodeError as exc:
        raise GraphError("bad_json", f"body is not valid JSON: {exc}", "") from exc
    return _slow_parse(doc)


def parse(doc: object) -> GraphDocument:
    """A decoded JSON value (or an already parsed document) as a validated document."""
    if isinstance(doc, GraphDocument):
        return _unique_ids(doc)
    try:
        return _unique_ids(msgspec.convert(doc, _StrictDocument).plain())
    except msgspec.ValidationError:
        pass  # unknown fields, or explained in our words below
    return _slow_parse(doc)


def _slow_parse(doc: object) -> GraphDocument:
    explain(doc)  # the fields the format names are right: only unknown ones are left
    assert isinstance(doc, Mapping)
    gathered = {
        "nodes": [
            _gather(n, NODE_FIELDS, f"nodes[{i}]") for i, n in enumerate(doc.get("nodes", []))
        ],
        "edges": [
            _gather(e, EDGE_FIELDS, f"edges[{i}]") for i, e in enumerate(doc.get("edges", []))
        ],
    }
    try:
        return _unique_ids(msgspec.convert(gathered, GraphDocument))
    except msgspec.ValidationError:
        raise _unexplained() from None


def _gather(item: Mapping[str, Any], known: frozenset[str], path: str) -> Mapping[str, Any]:
    """``item`` with the fields the format does not name moved into its metadata."""
    extra = [name for name in item if name not in known]
    if not extra:
        return item
    kept = {name: value for name, value in item.items() if name in known}
    metadata = dict(kept.get("metadata") or {})
    for name in extra:
        if name in metadata:  # neither may win silently
            raise GraphError(
                "invalid_node" if known is NODE_FIELDS else "invalid_edge",
                f"{name!r} is both a field and a key of metadata",
                f"{path}.{name}",
            )
        metadata[name] = item[name]
    kept["metadata"] = metadata
    return kept


def _unexplained() -> GraphError:
    # Only reachable if the Structs and explain() disagreed, which the tests rule out.
    return GraphError("invalid_document", "document does not match docs/protocol.md section 7", "")


def _unique_ids(doc: GraphDocument) -> GraphDocument:
    seen: dict[str, int] = {}
    for i, node in enumerate(doc.nodes):
        if node.id in seen:
            raise GraphError(
                "duplicate_id",
                f"id {node.id!r} already used by nodes[{seen[node.id]}]",
                f"nodes[{i}].id",
            )
        seen[node.id] = i
    return doc


def explain(doc: object) -> None:
    """Raise the GraphError for the first item of ``doc`` that breaks the format, if any."""
    if not isinstance(doc, Mapping):
        raise GraphError("invalid_document", "document must be a JSON object", "")
    raw_nodes = doc.get("nodes", [])
    raw_edges = doc.get("edges", [])
    if not isinstance(raw_nodes, list):
        raise GraphError("invalid_document", "nodes must be a list", "nodes")
    if not isinstance(raw_edges, list):
        raise GraphError("invalid_document", "edges must be a list", "edges")
    seen: dict[str, int] = {}
    for i, item in enumerate(raw_nodes):
        path = f"nodes[{i}]"
        if not isinstance(item, Mapping):
            raise GraphError("invalid_node", "node must be a JSON object", path)
        ext = item.get("id")
        if not isinstance(ext, str):  # docs/protocol.md: any string, the empty one too
            raise GraphError("invalid_node", "id must be a string", f"{path}.id")
        if ext in seen:
            raise GraphError(
                "duplicate_id", f"id {ext!r} already used by nodes[{seen[ext]}]", f"{path}.id"
            )
        seen[ext] = i
        for name in ("label", "group"):
            if item.get(name) is not None and not isinstance(item[name], str):
                raise GraphError("invalid_node", f"{name} must be a string", f"{path}.{name}")
        meta = item.get("metadata")
        if meta is not None and not (
            isinstance(meta, Mapping) and all(isinstance(k, str) for k in meta)
        ):
            raise GraphError("invalid_node", "metadata must be an object", f"{path}.metadata")
        where = item.get("position")
        if where is not None:
            if not isinstance(where, list | tuple):
                raise GraphError(
                    "invalid_position", "position must be three numbers", f"{path}.position"
                )
            check_position(where, f"{path}.position")
    for i, item in enumerate(raw_edges):
        path = f"edges[{i}]"
        if not isinstance(item, Mapping):
            raise GraphError("invalid_edge", "edge must be a JSON object", path)
        if not isinstance(item.get("source"), str):
            raise GraphError("invalid_edge", "source must be a string", f"{path}.source")
        if not isinstance(item.get("target"), str):
            raise GraphError("invalid_edge", "target must be a string", f"{path}.target")
        check_weight(item.get("weight", 1.0), f"{path}.weight")
        meta = item.get("metadata")
        if meta is not None and not (
            isinstance(meta, Mapping) and all(isinstance(k, str) for k in meta)
        ):
            raise GraphError("invalid_edge", "metadata must be an object", f"{path}.metadata")
