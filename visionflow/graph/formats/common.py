"""What every reader shares: the limits, the result, and how a node's or an edge's attributes
become the fields of docs/protocol.md section 7 (the rest becomes its metadata).

Sans-IO: values in, dicts of the section 7 shape out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from visionflow.errors import GraphError
from visionflow.graph import document
from visionflow.graph.document import GraphDocument, check_position, check_weight

__all__ = [
    "EDGE_NAMES",
    "METADATA_PREFIX",
    "NODE_NAMES",
    "UNSET",
    "Limits",
    "Parsed",
    "default_values_exceeded",
    "edge_record",
    "exported_name",
    "json_text",
    "line_locator",
    "node_record",
    "parsed_by_line",
    "text_id",
]

#: An attribute named ``metadata.K`` goes into the metadata as ``K``: how an export writes a
#: metadata key that would otherwise read back as a field (``x``, ``label``), so it comes back.
METADATA_PREFIX: Final = "metadata."
#: Attribute names a reader maps to a node's or an edge's own fields (or that name it).
NODE_NAMES: Final = frozenset({"id", "label", "name", "group", "x", "y", "z"})
EDGE_NAMES: Final = frozenset({"id", "key", "source", "target", "weight"})


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what a reader builds before the store sees it (a CSV row is a few bytes and a
    dict of hundreds: the graph limits stop it early), and on an XML document's shape."""

    max_nodes: int = 2_000_000
    max_edges: int = 20_000_000
    max_depth: int = 64  # GraphML nests a graph in a node: 30 levels of that
    max_elements: int = 20_000_000  # a 64 MiB body of the smallest elements has 16 million
    # Attribute values an XML document's declared defaults fill in: k keys with a default over
    # n bare nodes make k x n of them, so a 425 KB document made 16 million (1.5 GB, and a
    # 392 MB export) where the document's own values are bounded by its size.
    max_default_values: int = 2_000_000


def default_values_exceeded(limits: Limits, line: int) -> GraphError:
    """The refusal of a document whose declared defaults would fill in too many values."""
    return GraphError(
        "too_many_defaults",
        f"the declared defaults would fill in more than {limits.max_default_values} attribute"
        " values (keys with a default x the nodes or edges without that attribute)",
        f"line {line}",
    )


def _same(path: str) -> str:
    return path


@dataclass(frozen=True, slots=True)
class Parsed:
    """A validated document and how to name, in the source's terms, the item behind a path of
    the document (``edges[3].target`` -> ``links[3].target``, or the line of an XML element)."""

    document: GraphDocument
    locate: Callable[[str], str] = field(default=_same)


_ITEM = re.compile(r"^(nodes|edges)\[(\d+)\](.*)$", re.DOTALL)


def parsed_by_line(
    nodes: list[dict[str, Any]],
    edges: list[dict[str, Any]],
    node_lines: list[int],
    edge_lines: list[int],
) -> Parsed:
    """Validate the records read from a line-based source (XML, CSV), naming a refused item
    by its line (``line 12: edges[3].target``)."""
    locate = line_locator(node_lines, edge_lines)
    try:
        parsed = document.parse({"nodes": nodes, "edges": edges})
    except GraphError as exc:
        raise GraphError(exc.code, exc.message, locate(exc.path)) from None
    return Parsed(parsed, locate)


def line_locator(node_lines: list[int], edge_lines: list[int]) -> Callable[[str], str]:
    """``nodes[k]...`` / ``edges[k]...`` -> ``line N: nodes[k]...`` from each item's line."""

    def locate(path: str) -> str:
        match = _ITEM.match(path)
        if match is None:
            return path
        lines = node_lines if match[1] == "nodes" else edge_lines
        k = int(match[2])
        return f"line {lines[k]}: {path}" if k < len(lines) else path

    return locate


def json_text(value: object) -> str:
    """A JSON value as a string: a string itself, anything else its JSON text (``7``,
    ``1.5``, ``true``, ``null``, ``[0,1]``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # exact (msgspec refuses integers past 64 bits when decoding)
    return msgspec.json.encode(value).decode()


def text_id(value: object, path: str) -> str:
    """A node id from a JSON scalar or array (networkx writes tuples as arrays)."""
    if isinstance(value, dict):
        raise GraphError(
            "invalid_node", "id must be a string, number, boolean, null or array", path
        )
    return json_text(value)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text_like(value: object) -> bool:
    return isinstance(value, str) or _number(value)


def _into(metadata: dict[str, Any], name: str, value: object, code: str, path: str) -> None:
    key = name.removeprefix(METADATA_PREFIX)
    if key in metadata:
        raise GraphError(code, f"two attributes give the metadata key {key!r}", path)
    metadata[key] = value


class _Unset:
    pass


UNSET: Final = _Unset()


def node_record(
    node_id: str,
    attrs: Mapping[str, Any],
    at: Callable[[str], str],
    *,
    label: str | _Unset = UNSET,
    position: tuple[float, float, float] | _Unset = UNSET,
) -> dict[str, Any]:
    """A section 7 node from a foreign node's attributes (``id`` already taken out).

    ``label`` (else ``name``) and ``group`` are the node's own when they are text or a number
    (a number as its JSON text); ``x`` and ``y`` (and ``z``, else 0) its position when they are
    numbers. A ``label`` or ``position`` the format gives elsewhere (GEXF's ``label`` attribute,
    ``viz:position``) comes as an argument, and then these attributes stay metadata. Everything
    else goes into the metadata, ``metadata.K`` as ``K``. ``at(name)`` names an attribute in the
    source for an error.
    """
    rest = dict(attrs)
    node: dict[str, Any] = {"id": node_id}
    if isinstance(label, str):
        node["label"] = label
    else:
        for name in ("label", "name"):
            if _text_like(rest.get(name)):
                node["label"] = json_text(rest.pop(name))
                break
    if _text_like(rest.get("group")):
        node["group"] = json_text(rest.pop("group"))
    if isinstance(position, tuple):
        node["position"] = position
    elif (
        _number(rest.get("x"))
        and _number(rest.get("y"))
        and ("z" not in rest or _number(rest["z"]))
    ):
        xyz = (rest.pop("x"), rest.pop("y"), rest.pop("z", 0.0))
        node["position"] = check_position(xyz, at("x"))
    metadata: dict[str, Any] = {}
    for name, value in rest.items():
        _into(metadata, name, value, "invalid_node", at(name))
    if metadata:
        node["metadata"] = metadata
    return node


def edge_record(
    source: str,
    target: str,
    attrs: Mapping[str, Any],
    at: Callable[[str], str],
) -> dict[str, Any]:
    """A section 7 edge: ``weight`` (a number from 0 to 1e6) and the rest as metadata."""
    rest = dict(attrs)
    edge: dict[str, Any] = {"source": source, "target": target}
    if "weight" in rest:
        edge["weight"] = check_weight(rest.pop("weight"), at("weight"))
    metadata: dict[str, Any] = {}
    for name, value in rest.items():
        _into(metadata, name, value, "invalid_edge", at(name))
    if metadata:
        edge["metadata"] = metadata
    return edge


def exported_name(key: str, names: frozenset[str]) -> str:
    """The attribute name an export gives a metadata key: with the prefix when the plain name
    would read back as a field (or as a prefixed name)."""
    return METADATA_PREFIX + key if key in names or key.startswith(METADATA_PREFIX) else key
