"""Graph routes: ``/api/graph/data`` (paged), ``/api/graph/import`` and ``/api/graph/export``.

Parsing, validating and applying a document of any size runs in a worker thread: a 100k-node
import must not stall the event loop (and with it every viewer's frames).
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
from visionflow.graph import document
from visionflow.graph.store import GraphStore
from visionflow.protocol.snapshot import Snapshot
from visionflow.protocol.wire import ID_MASK
from visionflow.state import save_graph
from visionflow.web.context import context_of
from visionflow.web.errors import error_response
from visionflow.web.guards import read_body, require_started, require_token
from visionflow.web.openapi import ApiRoute

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


def _import(store: GraphStore, data: bytes, mode: str) -> dict[str, Any]:
    result = store.import_document(document.decode(data), mode)  # type: ignore[arg-type]
    return {
        "added": result.added,
        "updated": result.updated,
        "removed": result.removed,
        "edges": result.edges,
        "revision": result.revision,
    }


async def graph_import(request: Request) -> Response:
    """Import a graph document (docs/protocol.md section 7), all or nothing; ?mode=merge|replace."""
    ctx = context_of(request)
    refused = require_token(ctx, request) or require_started(ctx)
    if refused is not None:
        return refused
    mode = request.query_params.get("mode", "merge")
    if mode not in ("merge", "replace"):
        return error_response(400, "invalid_parameter", "mode must be merge or replace", "mode")
    body = await read_body(request, ctx.live.current.server.max_request_bytes)
    if isinstance(body, Response):
        return body
    try:
        # decoding and validating a large document is CPU work: off the event loop
        result = await anyio.to_thread.run_sync(_import, ctx.store, body, mode)
    except GraphError as exc:
        return error_response(400, exc.code, exc.message, exc.path or None)
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
    """The knowledge graph as an import document, each node with its current position."""
    ctx = context_of(request)
    starting = require_started(ctx)
    if starting is not None:
        return starting
    snapshot = ctx.engine.latest

    def export() -> bytes:
        positions = PositionIndex(snapshot).as_mapping()
        return msgspec.json.encode(ctx.store.export(positions or None))

    # same graph version and same layout tick: the same document
    key = (ctx.store.version, None if snapshot is None else snapshot.sequence)
    data = await ctx.exports.run(key, export)
    return Response(
        data,
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="visionflow-graph.json"'},
    )


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
            statuses={
                "400": "invalid document: nothing applied (path names the item)",
                "401": "token required",
                "413": "document over server.max_request_bytes",
            },
        ),
        ApiRoute("/api/graph/export", graph_export, methods=["GET"]),
    ]
