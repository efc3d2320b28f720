"""The saved knowledge graph file, ``state.dir/graph.json``: its format and its versions.

Version 2 (Dec 2026) is the export document of docs/protocol.md section 7 (knowledge nodes and
edges, no positions: those live in ``layout.json``) with a ``version`` field first:

    {"version": 2, "nodes": [...], "edges": [...], "revision": 57}

Version 1 is the same document without ``version`` (what every earlier VisionFlow wrote): it
reads as it is, and the next save writes version 2. A version above ``FORMAT_VERSION`` (a newer
VisionFlow's) is refused with a message saying so, never guessed at. Sans-IO: bytes in, bytes out.
"""

from __future__ import annotations

import msgspec

from visionflow import jsonsafe
from visionflow.errors import GraphError
from visionflow.graph import document
from visionflow.graph.document import ExportedDocument, ExportedEdge, ExportedNode, GraphDocument

GRAPH_FILE = "graph.json"
FORMAT_VERSION = 2  # 2: a "version" field; 1: the export document as it is
READABLE_VERSIONS = (1, 2)


class _GraphFile(msgspec.Struct):
    version: int
    nodes: list[ExportedNode]
    edges: list[ExportedEdge]
    revision: int


class _Header(msgspec.Struct):
    """Only the version: decoding into it skips the rest without building it."""

    version: int | None = None


_HEADER = msgspec.json.Decoder(_Header)


def encode_graph(exported: ExportedDocument) -> bytes:
    """The file's bytes for an export (``GraphStore.export({})``: knowledge nodes, no positions)."""
    return msgspec.json.encode(
        _GraphFile(FORMAT_VERSION, exported.nodes, exported.edges, exported.revision)
    )


def graph_version(data: bytes) -> int:
    """The format version of a graph file; ValueError saying what is wrong (not a graph file,
    or a version this VisionFlow does not read)."""
    try:
        header = jsonsafe.decode(data, _HEADER)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a graph file: {exc}") from None
    version = 1 if header.version is None else header.version
    if version > FORMAT_VERSION:
        raise ValueError(
            f"format version {version} is newer than this VisionFlow reads "
            f"({READABLE_VERSIONS[0]} to {FORMAT_VERSION}): written by a newer VisionFlow"
        )
    if version not in READABLE_VERSIONS:
        raise ValueError(f"format version {version} is not one VisionFlow ever wrote")
    return version


def decode_graph(data: bytes) -> tuple[int, GraphDocument]:
    """(version, validated document) of a graph file, version 1 or 2; ValueError saying what is
    wrong (the item's path for a refused node or edge)."""
    version = graph_version(data)
    try:
        return version, document.decode(data)
    except GraphError as exc:
        raise ValueError(str(exc)) from None
