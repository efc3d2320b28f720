"""GraphML, as networkx and Gephi write and read it.

Reading: ``key`` elements declare attributes (``attr.name``, ``attr.type``, a ``default``);
each ``node`` and ``edge`` carries ``data``. A node's attributes follow
:func:`~.common.node_record` (Gephi's ``label``, ``x``, ``y``, ``z``), an edge's
:func:`~.common.edge_record` (``weight``). Nodes of nested graphs are read like the others.
Not read: graph-level data, edge ``id``\\s and direction (an edge goes from ``source`` to
``target``), ports, and markup inside a ``data`` element (yFiles graphics). Hyperedges and
``locator`` (a graph kept elsewhere) are refused.

Writing: a directed graph with ``label``, ``group``, ``x``, ``y``, ``z`` on nodes, ``weight``
on edges, and a key per metadata key (:func:`~.typed.column_types`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from visionflow.errors import GraphError
from visionflow.graph.document import ExportedDocument
from visionflow.graph.formats import typed, xmlsafe
from visionflow.graph.formats.common import (
    EDGE_NAMES,
    NODE_NAMES,
    Limits,
    Parsed,
    default_values_exceeded,
    edge_record,
    exported_name,
    node_record,
    parsed_by_line,
)

__all__ = ["GRAPHML_NS", "MEDIA_TYPE", "read", "write"]

GRAPHML_NS: Final = "http://graphml.graphdrawing.org/xmlns"
MEDIA_TYPE: Final = "application/graphml+xml"

# Attributes VisionFlow reads as numbers whatever a hand-written key declares (the default
# attr.type is string).
_NUMERIC: Final = {"node": frozenset({"x", "y", "z"}), "edge": frozenset({"weight"})}
_NO_DEFAULT: Final = object()


@dataclass(slots=True)
class _Key:
    name: str
    domain: str
    kind: str
    default: Any = _NO_DEFAULT

    def applies_to(self, what: str) -> bool:
        return self.domain in (what, "all")


@dataclass(slots=True)
class _Item:
    what: str  # "node" or "edge"
    line: int
    ends: tuple[str, ...]  # (id,) or (source, target)
    attrs: dict[str, Any] = field(default_factory=dict)


class _Reader:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.keys: dict[str, _Key] = {}
        self.nodes: list[dict[str, Any]] = []
        self.node_lines: list[int] = []
        self.edges: list[dict[str, Any]] = []
        self.edge_lines: list[int] = []
        self.open: list[str] = []  # local names of the open elements ("": another namespace)
        self.ns = GRAPHML_NS
        self.items: list[_Item] = []  # open nodes and edges
        self.key: _Key | None = None  # the key being declared
        self.data: tuple[_Key, _Item | None, int] | None = None  # the data or default open
        self.data_depth = 0  # how many elements are open, it included
        self.markup = False  # an element inside the open data
        self.chunks: list[str] = []
        self.defaults: dict[str, dict[str, Any]] = {}  # by node/edge, made when first needed
        self.filled = 0  # attribute values the defaults filled in

    def start(self, ns: str, name: str, attrs: dict[str, str], line: int) -> None:
        # the most frequent elements first: this runs for every element of the document
        open_ = self.open
        if not open_:
            if name != "graphml":
                raise GraphError(
                    "unknown_format", f"expected a GraphML document, not <{name}>", f"line {line}"
                )
            self.ns = ns  # the root's namespace is GraphML's, whatever a file calls it
        if self.data is not None or (ns and ns != GRAPHML_NS and ns != self.ns):
            self.markup = self.data is not None  # yFiles graphics and the like: not read
            open_.append("")
            return
        parent = open_[-1] if open_ else ""
        open_.append(name)
        if name == "data":
            if parent == "node" or parent == "edge":
                key_id = xmlsafe.attr(attrs, "key", line, "data")
                key = self.keys.get(key_id) or _Key(key_id, "all", "string")  # undeclared: text
                self._open_data(key, self.items[-1], line)
        elif name == "node":
            if len(self.nodes) + len(self.items) >= self.limits.max_nodes:
                raise GraphError(
                    "too_many_nodes", f"more than {self.limits.max_nodes} nodes", f"line {line}"
                )
            self.items.append(_Item("node", line, (xmlsafe.attr(attrs, "id", line, "node"),)))
        elif name == "edge":
            if len(self.edges) >= self.limits.max_edges:
                raise GraphError(
                    "too_many_edges", f"more than {self.limits.max_edges} edges", f"line {line}"
                )
            ends = tuple(xmlsafe.attr(attrs, end, line, "edge") for end in ("source", "target"))
            self.items.append(_Item("edge", line, ends))
        elif name == "key":
            key_id = xmlsafe.attr(attrs, "id", line, "key")
            kind = attrs.get("attr.type", "string")
            if attrs.get(f"{xmlsafe.VF_NS} type") == typed.JSON:
                kind = typed.JSON
            self.key = _Key(attrs.get("attr.name", key_id), attrs.get("for", "all"), kind)
            self.keys[key_id] = self.key
            self.defaults.clear()
        elif name == "default" and parent == "key" and self.key is not None:
            self._open_data(self.key, None, line)
        elif name in ("hyperedge", "locator"):
            what = "hyperedges" if name == "hyperedge" else "graphs kept elsewhere (locator)"
            raise GraphError("unsupported_feature", f"{what} are not read", f"line {line}")

    def _open_data(self, key: _Key, item: _Item | None, line: int) -> None:
        self.data = (key, item, line)
        self.data_depth = len(self.open)
        self.markup = False
        self.chunks = []

    def text(self, data: str) -> None:
        if self.data is not None:
            self.chunks.append(data)

    def end(self, ns: str, name: str) -> None:
        name = self.open.pop()
        if self.data is not None:
            if len(self.open) < self.data_depth:
                self._close_data()
        elif name == "node" or name == "edge":
            self._close_item(self.items.pop())
        elif name == "key":
            self.key = None

    def _close_data(self) -> None:
        assert self.data is not None
        key, item, line = self.data
        self.data = None
        if self.markup:
            return
        chunks = self.chunks
        text = chunks[0] if len(chunks) == 1 else "".join(chunks)
        name, kind = key.name, key.kind
        if item is None:
            key.default = typed.from_text(text, kind, name, "invalid_key", line)
            self.defaults.clear()
            return
        what, attrs = item.what, item.attrs
        if name in attrs:
            raise GraphError(f"invalid_{what}", f"{name!r} given twice", f"line {line}")
        if name in _NUMERIC[what] and kind == "string":
            kind = "double"  # a hand-written key without attr.type
        elif kind == "string":
            attrs[name] = text
            return
        code = "invalid_weight" if what == "edge" and name == "weight" else f"invalid_{what}"
        attrs[name] = typed.from_text(text, kind, name, code, line)

    def _defaults(self, what: str) -> dict[str, Any]:
        found = self.defaults.get(what)
        if found is None:
            found = self.defaults[what] = {
                key.name: key.default
                for key in self.keys.values()
                if key.default is not _NO_DEFAULT and key.applies_to(what)
            }
        return found

    def _close_item(self, item: _Item) -> None:
        attrs = item.attrs
        defaults = self._defaults(item.what)
        if defaults:
            before = len(attrs)
            for name, value in defaults.items():
                attrs.setdefault(name, value)
            self.filled += len(attrs) - before
            if self.filled > self.limits.max_default_values:
                raise default_values_exceeded(self.limits, item.line)
        where = f"line {item.line}"
        if item.what == "node":
            self.nodes.append(node_record(item.ends[0], attrs, lambda _name: where))
            self.node_lines.append(item.line)
        else:
            source, target = item.ends
            self.edges.append(edge_record(source, target, attrs, lambda _name: where))
            self.edge_lines.append(item.line)


def read(data: bytes, limits: Limits) -> Parsed:
    """A GraphML document as a validated section 7 one."""
    reader = _Reader(limits)
    xmlsafe.parse(data, reader, limits)
    return parsed_by_line(reader.nodes, reader.edges, reader.node_lines, reader.edge_lines)


# --------------------------------------------------------------------------- writing


def write(doc: ExportedDocument) -> bytes:
    """An export as GraphML (UTF-8)."""
    xmlsafe.distinct_ids(n.id for n in doc.nodes)
    q, t = xmlsafe.quote, xmlsafe.text
    node_meta = typed.column_types(n.metadata for n in doc.nodes)
    edge_meta = typed.column_types(
        e.metadata for e in doc.edges if not isinstance(e.metadata, msgspec.UnsetType)
    )
    out: list[str] = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<graphml xmlns="{GRAPHML_NS}"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        f' xmlns:vf="{xmlsafe.VF_NS}"'
        f' xsi:schemaLocation="{GRAPHML_NS} {GRAPHML_NS}/1.0/graphml.xsd">\n',
    ]
    ids: dict[tuple[str, str], str] = {}

    def key(domain: str, name: str, kind: str) -> None:
        key_id = ids[(domain, name)] = f"d{len(ids)}"
        marker = ' vf:type="json"' if kind == typed.JSON else ""
        declared = "string" if kind == typed.JSON else kind
        out.append(
            f'<key id="{key_id}" for="{domain}" attr.name={q(name)}'
            f' attr.type="{declared}"{marker}/>\n'
        )

    key("node", "label", "string")
    key("node", "group", "string")
    for axis in "xyz":
        key("node", axis, "double")
    key("edge", "weight", "double")
    node_names = {k: exported_name(k, NODE_NAMES) for k in node_meta}
    edge_names = {k: exported_name(k, EDGE_NAMES) for k in edge_meta}
    for k, kind in node_meta.items():
        key("node", node_names[k], kind)
    for k, kind in edge_meta.items():
        key("edge", edge_names[k], kind)
    out.append('<graph id="G" edgedefault="directed">\n')
    label, group = ids[("node", "label")], ids[("node", "group")]
    axes = [ids[("node", axis)] for axis in "xyz"]
    for n in doc.nodes:
        out.append(f"<node id={q(n.id)}>")
        if n.label:
            out.append(f'<data key="{label}">{t(n.label)}</data>')
        if n.group:
            out.append(f'<data key="{group}">{t(n.group)}</data>')
        if not isinstance(n.position, msgspec.UnsetType):
            for axis, c in zip(axes, n.position, strict=True):
                out.append(f'<data key="{axis}">{float(c)!r}</data>')
        for k, value in n.metadata.items():
            kid = ids[("node", node_names[k])]
            out.append(f'<data key="{kid}">{t(typed.to_text(value, node_meta[k]))}</data>')
        out.append("</node>\n")
    weight = ids[("edge", "weight")]
    for e in doc.edges:
        out.append(
            f"<edge source={q(e.source)} target={q(e.target)}>"
            f'<data key="{weight}">{float(e.weight)!r}</data>'
        )
        if not isinstance(e.metadata, msgspec.UnsetType):
            for k, value in e.metadata.items():
                kid = ids[("edge", edge_names[k])]
                out.append(f'<data key="{kid}">{t(typed.to_text(value, edge_meta[k]))}</data>')
        out.append("</edge>\n")
    out.append("</graph>\n</graphml>\n")
    return "".join(out).encode("utf-8")
