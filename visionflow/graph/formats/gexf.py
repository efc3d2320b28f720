"""GEXF 1.2 and 1.3 (Gephi's format; 1.1 reads too).

Reading: ``attributes`` declare the attribute columns of nodes and edges (``title``, ``type``,
a ``default``); a node has an ``id``, a ``label`` and ``attvalues``, and ``viz:position`` is its
position. An edge's ``weight`` is its weight; ``type="mutual"`` makes two edges, one each way.
A node's attributes follow :func:`~.common.node_record` (``group`` is its group), an edge's
:func:`~.common.edge_record`; other XML attributes of a node or an edge (``pid``, ``kind``, an
edge's ``label``) and the other ``viz`` elements (as ``viz:color``, ``viz:size``, ...: an
object of their XML attributes) are metadata too. Not read: graph-level attributes, ``meta``,
edge ``id``\\s and the default edge type (an edge goes from ``source`` to ``target``), and
hierarchy ``parents``. Dynamic values (``spells``, an ``attvalue`` with a time) are refused.

Writing: GEXF 1.2 (what networkx reads by default, and Gephi), a directed graph, each node's
``label`` and ``viz:position``, ``group`` and the metadata keys as attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from visionflow.errors import GraphError
from visionflow.graph.document import ExportedDocument, check_position
from visionflow.graph.formats import typed, xmlsafe
from visionflow.graph.formats.common import (
    EDGE_NAMES,
    NODE_NAMES,
    UNSET,
    Limits,
    Parsed,
    default_values_exceeded,
    edge_record,
    exported_name,
    node_record,
    parsed_by_line,
)

__all__ = ["GEXF_NS", "MEDIA_TYPE", "read", "write"]

GEXF_NS: Final = "http://www.gexf.net/1.2draft"
VIZ_NS: Final = "http://www.gexf.net/1.2draft/viz"
#: Gephi's name for it (not registered with IANA; neither is any other).
MEDIA_TYPE: Final = "application/gexf+xml"

_VIZ: Final = frozenset({"color", "size", "shape", "thickness"})
_TIMED: Final = ("start", "end", "startopen", "endopen", "timestamp", "timestamps")
_NODE_XML: Final = frozenset({"id", "label"})  # XML attributes read as fields, not metadata
_EDGE_XML: Final = frozenset({"id", "source", "target", "weight", "type"})
_NO_DEFAULT: Final = object()


@dataclass(slots=True)
class _Column:
    title: str
    kind: str
    default: Any = _NO_DEFAULT


@dataclass(slots=True)
class _Item:
    what: str  # "node" or "edge"
    line: int
    attrs: dict[str, Any]
    ends: tuple[str, ...]  # (id,) or (source, target)
    label: str | None = None
    position: tuple[float, float, float] | None = None
    mutual: bool = False
    weight: Any = None
    values: set[str] = field(default_factory=set)  # attvalues given


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class _Reader:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.columns: dict[str, dict[str, _Column]] = {"node": {}, "edge": {}}
        self.nodes: list[dict[str, Any]] = []
        self.node_lines: list[int] = []
        self.edges: list[dict[str, Any]] = []
        self.edge_lines: list[int] = []
        self.depth = 0
        self.items: list[_Item] = []
        self.item_depths: list[int] = []
        self.declaring: str | None = None  # the class of the attributes element open
        self.column: _Column | None = None
        self.default: tuple[_Column, int] | None = None
        self.chunks: list[str] = []
        self.defaults: dict[str, dict[str, Any]] = {}  # by node/edge, made when first needed
        self.filled = 0  # attribute values the defaults filled in

    def start(self, ns: str, name: str, attrs: dict[str, str], line: int) -> None:
        self.depth += 1
        if self.depth == 1 and name != "gexf":
            raise GraphError(
                "unknown_format", f"expected a GEXF document, not <{name}>", f"line {line}"
            )
        item = self.items[-1] if self.items else None
        if name == "attvalue":  # the most frequent element first
            if item is not None:
                self._attvalue(item, attrs, line)
        elif name == "attributes":
            self.declaring = attrs.get("class", "node")
        elif name == "attribute" and self.declaring in self.columns:
            col_id = xmlsafe.attr(attrs, "id", line, "attribute")
            kind = attrs.get("type", "string")
            if attrs.get(f"{xmlsafe.VF_NS} type") == typed.JSON:
                kind = typed.JSON
            self.column = _Column(attrs.get("title", col_id), kind)
            self.columns[self.declaring][col_id] = self.column
            self.defaults.clear()
        elif name == "default" and self.column is not None:
            self.default = (self.column, line)
            self.chunks = []
        elif name == "node":
            _static(attrs, line)
            self._open_node(attrs, line)
        elif name == "edge":
            _static(attrs, line)
            self._open_edge(attrs, line)
        elif name == "graph":
            if attrs.get("mode") == "dynamic":  # its times were read as plain metadata
                raise GraphError(
                    "unsupported_feature",
                    'dynamic GEXF (mode="dynamic") is not read',
                    f"line {line}",
                )
        elif name == "position" and item is not None and item.what == "node":
            try:
                xyz = [float(attrs.get(axis, "0")) for axis in ("x", "y", "z")]
            except ValueError:
                xyz = []
            item.position = check_position(xyz, f"line {line}")
        elif name in _VIZ and item is not None:
            item.attrs[f"viz:{name}"] = {k: _number(v) for k, v in attrs.items()}
        elif name in ("spells", "spell", "slices", "slice"):
            raise GraphError("unsupported_feature", "dynamic GEXF is not read", f"line {line}")

    def _open_node(self, attrs: dict[str, str], line: int) -> None:
        if len(self.nodes) + len(self.items) >= self.limits.max_nodes:
            raise GraphError(
                "too_many_nodes", f"more than {self.limits.max_nodes} nodes", f"line {line}"
            )
        node_id = xmlsafe.attr(attrs, "id", line, "node")
        extra = {k: v for k, v in attrs.items() if k not in _NODE_XML}
        self._push(_Item("node", line, extra, (node_id,), label=attrs.get("label")))

    def _open_edge(self, attrs: dict[str, str], line: int) -> None:
        ends = tuple(xmlsafe.attr(attrs, end, line, "edge") for end in ("source", "target"))
        mutual = attrs.get("type") == "mutual"
        if len(self.edges) + (2 if mutual else 1) > self.limits.max_edges:
            raise GraphError(
                "too_many_edges", f"more than {self.limits.max_edges} edges", f"line {line}"
            )
        weight: Any = None
        if "weight" in attrs:
            weight = typed.from_text(attrs["weight"], "double", "weight", "invalid_weight", line)
        extra = {k: v for k, v in attrs.items() if k not in _EDGE_XML}
        self._push(_Item("edge", line, extra, ends, mutual=mutual, weight=weight))

    def _push(self, item: _Item) -> None:
        self.items.append(item)
        self.item_depths.append(self.depth)

    def _attvalue(self, item: _Item, attrs: dict[str, str], line: int) -> None:
        if any(k in attrs for k in _TIMED):
            raise GraphError("unsupported_feature", "dynamic GEXF is not read", f"line {line}")
        col_id = attrs.get("for", attrs.get("id"))
        if col_id is None:
            raise GraphError("invalid_attvalue", "attvalue element without 'for'", f"line {line}")
        column = self.columns[item.what].get(col_id) or _Column(col_id, "string")
        value = xmlsafe.attr(attrs, "value", line, "attvalue")
        if column.title in item.values:
            raise GraphError(
                f"invalid_{item.what}", f"{column.title!r} given twice", f"line {line}"
            )
        item.values.add(column.title)
        code = f"invalid_{item.what}"
        item.attrs[column.title] = typed.from_text(value, column.kind, column.title, code, line)

    def text(self, data: str) -> None:
        if self.default is not None:
            self.chunks.append(data)

    def end(self, ns: str, name: str) -> None:
        if self.items and self.item_depths[-1] == self.depth:
            self.item_depths.pop()
            self._close(self.items.pop())
        elif name == "default" and self.default is not None:
            column, line = self.default
            text = "".join(self.chunks)
            column.default = typed.from_text(
                text, column.kind, column.title, "invalid_attribute", line
            )
            self.default = None
            self.defaults.clear()
        elif name == "attribute":
            self.column = None
        elif name == "attributes":
            self.declaring = None
        self.depth -= 1

    def _close(self, item: _Item) -> None:
        defaults = self.defaults.get(item.what)
        if defaults is None:  # the attributes are declared before the nodes: made once
            defaults = self.defaults[item.what] = {
                column.title: column.default
                for column in self.columns[item.what].values()
                if column.default is not _NO_DEFAULT
            }
        if defaults:
            before = len(item.attrs)
            for title, value in defaults.items():
                if title not in item.values:
                    item.attrs.setdefault(title, value)
            self.filled += len(item.attrs) - before
            if self.filled > self.limits.max_default_values:
                raise default_values_exceeded(self.limits, item.line)
        where = f"line {item.line}"
        if item.what == "node":
            label = UNSET if item.label is None else item.label
            position = UNSET if item.position is None else item.position
            record = node_record(
                item.ends[0], item.attrs, lambda _n: where, label=label, position=position
            )
            self.nodes.append(record)
            self.node_lines.append(item.line)
            return
        if item.weight is not None:
            item.attrs["weight"] = item.weight
        source, target = item.ends
        pairs = [(source, target), (target, source)] if item.mutual else [(source, target)]
        for s, t in pairs:
            self.edges.append(edge_record(s, t, item.attrs, lambda _n: where))
            self.edge_lines.append(item.line)


def _static(attrs: dict[str, str], line: int) -> None:
    """A node or edge with a time (``start``, ``end``, ...) belongs to a dynamic graph."""
    timed = next((k for k in _TIMED if k in attrs), None)
    if timed is not None:
        raise GraphError(
            "unsupported_feature",
            f"dynamic GEXF is not read (a time: {timed}={attrs[timed]!r})",
            f"line {line}",
        )


def read(data: bytes, limits: Limits) -> Parsed:
    """A GEXF document as a validated section 7 one."""
    reader = _Reader(limits)
    xmlsafe.parse(data, reader, limits)
    return parsed_by_line(reader.nodes, reader.edges, reader.node_lines, reader.edge_lines)


# --------------------------------------------------------------------------- writing


def write(doc: ExportedDocument) -> bytes:
    """An export as GEXF 1.2 (UTF-8)."""
    xmlsafe.distinct_ids(n.id for n in doc.nodes)
    q = xmlsafe.quote
    node_meta = typed.column_types(n.metadata for n in doc.nodes)
    edge_meta = typed.column_types(
        e.metadata for e in doc.edges if not isinstance(e.metadata, msgspec.UnsetType)
    )
    out: list[str] = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<gexf xmlns="{GEXF_NS}" xmlns:viz="{VIZ_NS}" xmlns:vf="{xmlsafe.VF_NS}" version="1.2">\n',
        "<meta><creator>VisionFlow</creator></meta>\n",
        '<graph defaultedgetype="directed" mode="static">\n',
    ]

    def columns(what: str, titles: list[str], kinds: list[str]) -> None:
        out.append(f'<attributes class="{what}" mode="static">\n')
        for i, (title, kind) in enumerate(zip(titles, kinds, strict=True)):
            marker = ' vf:type="json"' if kind == typed.JSON else ""
            declared = "string" if kind == typed.JSON else kind
            out.append(f'<attribute id="{i}" title={q(title)} type="{declared}"{marker}/>\n')
        out.append("</attributes>\n")

    # column 0 of the nodes is the group, the metadata keys follow
    node_ids = {k: str(i) for i, k in enumerate(node_meta, start=1)}
    titles = ["group", *(exported_name(k, NODE_NAMES) for k in node_meta)]
    columns("node", titles, ["string", *node_meta.values()])
    edge_ids = {k: str(i) for i, k in enumerate(edge_meta)}
    if edge_meta:
        titles = [exported_name(k, EDGE_NAMES) for k in edge_meta]
        columns("edge", titles, list(edge_meta.values()))

    def attvalues(values: dict[str, Any], kinds: dict[str, str], ids: dict[str, str]) -> None:
        for k, value in values.items():
            text = typed.to_text(value, kinds[k])
            out.append(f'<attvalue for="{ids[k]}" value={q(text)}/>')

    out.append("<nodes>\n")
    for n in doc.nodes:
        label = f" label={q(n.label)}" if n.label else ""
        out.append(f"<node id={q(n.id)}{label}>")
        if n.group or n.metadata:
            out.append("<attvalues>")
            if n.group:
                out.append(f'<attvalue for="0" value={q(n.group)}/>')
            attvalues(n.metadata, node_meta, node_ids)
            out.append("</attvalues>")
        if not isinstance(n.position, msgspec.UnsetType):
            x, y, z = (float(c) for c in n.position)
            out.append(f'<viz:position x="{x!r}" y="{y!r}" z="{z!r}"/>')
        out.append("</node>\n")
    out.append("</nodes>\n<edges>\n")
    for i, e in enumerate(doc.edges):
        out.append(
            f'<edge id="{i}" source={q(e.source)} target={q(e.target)}'
            f' weight="{float(e.weight)!r}">'
        )
        if not isinstance(e.metadata, msgspec.UnsetType) and e.metadata:
            out.append("<attvalues>")
            attvalues(e.metadata, edge_meta, edge_ids)
            out.append("</attvalues>")
        out.append("</edge>\n")
    out.append("</edges>\n</graph>\n</gexf>\n")
    return "".join(out).encode("utf-8")
