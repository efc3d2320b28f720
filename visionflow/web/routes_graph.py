"""Graph routes: ``/api/graph/data`` (paged), ``/api/graph/import`` and ``/api/graph/export``.

Parsing, validating and applying a document of any size runs in a worker thread: a 100k-node
import must not stall the event loop (and with it every viewer's frames). The formats other
than ours (d3, networkx, GraphML, GEXF, CSV) are read and written by
:mod:`visionflow.graph.formats`; these routes only pick one.
"""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
import numpy as np
from loguru import logger
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from visionflow.errors import GraphError
from visionflow.graph import document, formats
from visionflow.graph.formats import d3, nodelink
from visionflow.graph.store import GraphStore
from visionflow.memory import release_freed
from visionflow.protocol.snapshot import Snapshot
from visionflow.protocol.wire import ID_MASK
from visionflow.state import save_graph
from visionflow.web.context import context_of
from visionflow.web.errors import error_response
from visionflow.web.guards import read_body, require_started, require_token
from visionflow.web.openapi import ApiRoute, schema_ref

log = logger.bind(subsystem="graph")

DEFAULT_PAGE = 10_000
MAX_PAGE = 100_000


class PositionIndex:
    """Positions of the engine's latest snapshot, looked up by raw node id."""

    def __init__(self, snap: Snapshot | None) -> None:
        if snap is None:
            self._raw = np.empty(0, np.uint32)
            self._pos = np.empty((0, 3), np.float32)
            return
        raw = snap.nodes.ids & np.uint32(ID_MASK)
        order = np.argsort(raw, kind="stable")  # ids are integers: a total order
        self._raw, self._pos = raw[order], snap.nodes.positions[order]

    def lookup(self, raw_ids: list[int]) -> list[list[float] | None]:
        """Each id's position, or None for a node the snapshot does not hold yet."""
        if not raw_ids or self._raw.shape[0] == 0:
            return [None] * len(raw_ids)
        want = np.asarray(raw_ids, dtype=np.uint32)
        at = np.minimum(np.searchsorted(self._raw, want), self._raw.shape[0] - 1)
        found = (self._raw[at] == want).tolist()
        rows = self._pos[at].astype(np.float64).tolist()  # one conversion, not one per node
        return [row if ok else None for row, ok in zip(rows, found, strict=True)]

    def as_mapping(self) -> dict[int, tuple[float, float, float]]:
        return {
            int(r): (float(p[0]), float(p[1]), float(p[2]))
            for r, p in zip(self._raw, self._pos, strict=True)
        }


class PageNode(msgspec.Struct):
    id: int
    flagged_id: int
    kind: str
    key: str
    label: str
    group: str
    metadata: dict[str, Any]
    pinned: bool
    position: list[float] | None


class PageEdge(msgspec.Struct):
    source: int
    target: int
    weight: float


class Page(msgspec.Struct):
    revision: int
    offset: int
    limit: int
    node_count: int
    edge_count: int
    nodes: list[PageNode]
    edges: list[PageEdge]


def _int_param(request: Request, name: str, default: int, maximum: int) -> int | Response:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdecimal()) or int(text) > maximum:
        return error_response(
            400, "invalid_parameter", f"{name} must be an integer 0-{maximum}", name
        )
    return int(text)


def _page(store: GraphStore, positions: PositionIndex, offset: int, limit: int) -> Page:
    with store.lock:  # counts and the page from one revision
        nodes, edges, revision = store.page(offset, limit)
        node_count, edge_count = len(store), store.edge_count
    where = positions.lookup([n.id for n in nodes])
    return Page(
        revision=revision,
        offset=offset,
        limit=limit,
        node_count=node_count,
        edge_count=edge_count,
        nodes=[
            PageNode(
                id=n.id,
                flagged_id=n.flagged_id,
                kind=n.key.kind.name.lower(),
                key=n.key.external_id,
                label=n.label,
                group=n.group,
                metadata=n.metadata,
                pinned=n.pinned,
                position=pos,
            )
            for n, pos in zip(nodes, where, strict=True)
        ],
        edges=[PageEdge(s, t, w) for s, t, w in edges],
    )


async def graph_data(request: Request) -> Response:
    """Nodes (id, flagged id, kind, label, group, metadata, position) and edges, paged.

    ``?offset=&limit=`` page both lists (limit up to 100000); ``node_count`` and ``edge_count``
    say how many there are in all.
    """
    ctx = context_of(request)
    starting = require_started(ctx)
    if starting is not None:
        return starting
    offset = _int_param(request, "offset", 0, 1 << 31)
    if isinstance(offset, Response):
        return offset
    limit = _int_param(request, "limit", DEFAULT_PAGE, MAX_PAGE)
    if isinstance(limit, Response):
        return limit
    snapshot = ctx.engine.latest

    def page() -> bytes:  # sorting 100k ids and building the page: off the event loop
        return msgspec.json.encode(_page(ctx.store, PositionIndex(snapshot), offset, limit))

    return Response(await anyio.to_thread.run_sync(page), media_type="application/json")


# After a body this large, the freed parse is given back to the system (visionflow/memory.py).
RELEASE_AFTER_BYTES = 16 * 1024 * 1024


def _import(
    store: GraphStore, data: bytes, mode: str, fmt: str | None, content_type: str | None
) -> dict[str, Any]:
    chosen = formats.choose(fmt, content_type, data)
    # a reader stops at the graph limits: a CSV row is a few bytes and a dict of hundreds
    limits = formats.Limits(max_nodes=store.max_nodes, max_edges=store.max_edges)
    parsed = formats.read(chosen, data, limits)
    try:
        result = store.import_document(parsed.document, mode)  # type: ignore[arg-type]
    except GraphError as exc:  # named as the source names it (links[3], line 12)
        raise GraphError(exc.code, exc.message, parsed.locate(exc.path)) from None
    finally:
        if len(data) >= RELEASE_AFTER_BYTES:
            del parsed
            release_freed()
    return {
        "added": result.added,
        "updated": result.updated,
        "removed": result.removed,
        "edges": result.edges,
        "revision": result.revision,
        "format": chosen,
    }


async def graph_import(request: Request) -> Response:
    """Import a graph document (docs/protocol.md section 7), all or nothing; ?mode=merge|replace.

    The body is VisionFlow JSON, d3 / 3d-force-graph JSON, networkx node-link JSON, GraphML,
    GEXF or a CSV edge list: named by ?format=, else by the Content-Type (application/json,
    application/graphml+xml, application/gexf+xml, text/csv; application/xml and text/xml by
    the root element), JSON by its shape. Fields and attributes a format does not map go into
    the node's or edge's metadata.
    """
    ctx = context_of(request)
    refused = require_token(ctx, request) or require_started(ctx)
    if refused is not None:
        return refused
    mode = request.query_params.get("mode", "merge")
    if mode not in ("merge", "replace"):
        return error_response(400, "invalid_parameter", "mode must be merge or replace", "mode")
    fmt = request.query_params.get("format")
    if fmt is not None and fmt not in formats.FORMATS:
        return error_response(
            400,
            "invalid_parameter",
            f"format must be one of {', '.join(formats.FORMATS)}",
            "format",
        )
    body = await read_body(request, ctx.live.current.server.max_request_bytes)
    if isinstance(body, Response):
        return body
    content_type = request.headers.get("content-type")
    try:
        # reading and validating a large document is CPU work: off the event loop
        result = await anyio.to_thread.run_sync(_import, ctx.store, body, mode, fmt, content_type)
    except GraphError as exc:
        status = 415 if exc.code == "unsupported_media_type" else 400
        return error_response(status, exc.code, exc.message, exc.path or None)
    ctx.changes.knowledge_changed(replaced=mode == "replace")
    try:
        await anyio.to_thread.run_sync(save_graph, ctx.store, ctx.live.current.state.dir)
        result["saved"] = True
    except OSError as exc:
        # Applied but not durable: say so rather than fail a request that did its work.
        log.warning("imported graph not saved: {}", exc)
        result["saved"] = False
    return JSONResponse(result)


async def graph_export(request: Request) -> Response:
    """The knowledge graph, each node with its current position: ?format=json (an import
    document, the default), graphml or gexf (1.2), as networkx and Gephi read them."""
    ctx = context_of(request)
    starting = require_started(ctx)
    if starting is not None:
        return starting
    fmt = request.query_params.get("format", "json")
    if fmt not in formats.EXPORTS:
        return error_response(
            400,
            "invalid_parameter",
            f"format must be one of {', '.join(formats.EXPORTS)}",
            "format",
        )
    snapshot = ctx.engine.latest

    def export() -> bytes:
        positions = PositionIndex(snapshot).as_mapping()
        return formats.write(fmt, ctx.store.export(positions or None))

    # same format, graph version and layout tick: the same document
    key = (fmt, ctx.store.version, None if snapshot is None else snapshot.sequence)
    data = await ctx.exports.run(key, export)
    media, extension = formats.EXPORTS[fmt]
    return Response(
        data,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="visionflow-graph.{extension}"'},
    )


def _query(name: str, values: tuple[str, ...], default: str | None, text: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "enum": list(values)}
    if default is not None:
        schema["default"] = default
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": text}


def _text(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


_XML_BODY = _text("GraphML or GEXF, told apart by the root element (graphml, gexf)")
IMPORT_BODIES: dict[str, dict[str, Any]] = {
    "application/json": {"oneOf": [schema_ref(document.GraphDocument), d3.SCHEMA, nodelink.SCHEMA]},
    "application/graphml+xml": _text(
        "GraphML (networkx, Gephi): key attr.name/attr.type, node and edge data; label, group, "
        "x, y, z and weight are mapped, other data is metadata. No DOCTYPE."
    ),
    "application/gexf+xml": _text(
        "GEXF 1.1-1.3: attributes and attvalues, viz:position, edge weight; other attributes "
        "are metadata. No DOCTYPE."
    ),
    "application/xml": _XML_BODY,
    "text/xml": _XML_BODY,
    "text/csv": _text(
        "An edge list: source,target[,weight], header row optional (other columns are edge "
        "metadata), RFC 4180 quoting, UTF-8"
    ),
}


def routes() -> list[BaseRoute]:
    return [
        ApiRoute(
            "/api/graph/data",
            graph_data,
            methods=["GET"],
            statuses={"400": "bad offset or limit"},
        ),
        ApiRoute(
            "/api/graph/import",
            graph_import,
            methods=["POST"],
            body=document.GraphDocument,
            bodies=IMPORT_BODIES,
            parameters=[
                _query("mode", ("merge", "replace"), "merge", "merge into or replace the graph"),
                _query(
                    "format",
                    formats.FORMATS,
                    None,
                    "the body's format; by default from the Content-Type and the body",
                ),
            ],
            statuses={
                "400": "invalid document, or one no reader recognises: nothing applied (path "
                "names the item, or the line of an XML or CSV body); an XML body with a DOCTYPE "
                "(`unsafe_xml`)",
                "401": "token required",
                "413": "document over server.max_request_bytes",
                "415": "the body is not one of the Content-Types listed for it "
                "(`unsupported_media_type`)",
            },
        ),
        ApiRoute(
            "/api/graph/export",
            graph_export,
            methods=["GET"],
            parameters=[
                _query("format", tuple(formats.EXPORTS), "json", "json, graphml or gexf (1.2)")
            ],
            statuses={"400": "unknown format (`invalid_parameter`)"},
        ),
    ]
