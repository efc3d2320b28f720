"""Graph routes: ``/api/graph/data`` (paged, searched, filtered), ``/api/graph/neighbours/{id}``,
``/api/graph/import`` and ``/api/graph/export``.

Parsing, validating and applying a document of any size runs in a worker thread: a 100k-node
import must not stall the event loop (and with it every viewer's frames). So do searches and
neighbourhoods, which copy the node list under the store's lock and scan it without, and
read edges a few milliseconds at a time (the event loop's agent updates take that lock). The
formats other than ours (d3, networkx, GraphML, GEXF, CSV) are read and written by
:mod:`visionflow.graph.formats`; these routes only pick one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
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
from visionflow.graph.store import GraphStore, Node, NodeKind
from visionflow.memory import keep_out_of_gc, no_gc_while, release_freed
from visionflow.protocol.snapshot import Snapshot
from visionflow.protocol.wire import FLAG_MASK, ID_MASK
from visionflow.state import save_graph
from visionflow.threads import run_abandonable
from visionflow.web.context import context_of
from visionflow.web.errors import error_response
from visionflow.web.guards import imports_busy, read_body, require_started, require_token
from visionflow.web.openapi import ApiRoute, obj, schema_ref

log = logger.bind(subsystem="graph")

DEFAULT_PAGE = 10_000
MAX_PAGE = 100_000
# Edges of a filtered page or a neighbourhood: past this, ``truncated`` (ask a smaller limit).
MAX_EDGES = MAX_PAGE
# Longest ``q``, ``type`` or ``status`` (characters): a search box, not a document.
MAX_QUERY_CHARS = 200
# What ``?kind=`` names: a placeholder is a knowledge node of this group (a notes vault's page
# that is linked but not written); ``knowledge`` means the other knowledge nodes.
KINDS = ("knowledge", "agent", "placeholder")
PLACEHOLDER_GROUP = "placeholder"
# Hops ``/api/graph/neighbours/{id}?depth=`` takes.
DEPTHS = (1, 2)
# Times a query is read again when the graph changed while it was read (then it is answered
# as read: the viewer is sent graph_changed for the newer revision and reads it again).
QUERY_TRIES = 3


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
    # a filtered page only: it had more than MAX_EDGES edges
    truncated: bool = False


class Neighbourhood(msgspec.Struct):
    revision: int
    depth: int
    limit: int
    truncated: bool
    node_count: int
    edge_count: int
    nodes: list[PageNode]
    edges: list[PageEdge]


def node_kind(node: Node) -> str:
    """``kind=``'s name for a node: agent, placeholder or knowledge."""
    if node.key.kind is NodeKind.AGENT:
        return "agent"
    return "placeholder" if node.group == PLACEHOLDER_GROUP else "knowledge"


def _folded(value: object) -> str | None:
    return value.casefold() if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class NodeFilter:
    """What ``?q=&kind=&type=&status=`` ask for; a node must meet every one given (AND).

    ``q``: a case-insensitive substring of the label, the key or one of the aliases
    (``metadata["aliases"]``, a list of strings, as a notes vault keeps them). ``type``: an
    agent's reported type or its colour-table type (``metadata["type"]`` / ``["kind"]``, so
    ``coordinator`` finds a 2.x ``task-orchestrator``); ``status``: its ``metadata["status"]``;
    both case-insensitive, whole values, and agents only. ``q``, ``type`` and ``status`` are
    kept casefolded.
    """

    q: str | None = None
    kind: str | None = None
    type: str | None = None
    status: str | None = None

    @classmethod
    def of(cls, params: dict[str, str]) -> NodeFilter:
        """From the query parameters given (names ``q``, ``kind``, ``type``, ``status``)."""
        return cls(
            _folded(params.get("q")),
            params.get("kind"),
            _folded(params.get("type")),
            _folded(params.get("status")),
        )

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.q, self.kind, self.type, self.status))

    def matches(self, node: Node) -> bool:
        if self.kind is not None and node_kind(node) != self.kind:
            return False
        if self.type is not None or self.status is not None:
            if node.key.kind is not NodeKind.AGENT:
                return False
            meta = node.metadata
            if self.type is not None and self.type not in (
                _folded(meta.get("type")),
                _folded(meta.get("kind")),
            ):
                return False
            if self.status is not None and self.status != _folded(meta.get("status")):
                return False
        return self.q is None or self._text_matches(node)

    def _text_matches(self, node: Node) -> bool:
        q = self.q
        assert q is not None
        if q in node.label.casefold() or q in node.key.external_id.casefold():
            return True
        aliases = node.metadata.get("aliases")
        if isinstance(aliases, list):
            for alias in aliases:  # a loop: a generator per node kept the collector busy
                if isinstance(alias, str) and q in alias.casefold():
                    return True
        return False


def _int_param(
    request: Request, name: str, default: int, maximum: int, minimum: int = 0
) -> int | Response:
    text = request.query_params.get(name)
    if text is None:
        return default
    # the length first: int() refuses over 4300 digits (a ValueError, so a 500, before this)
    if (
        not (text.isascii() and text.isdecimal() and len(text) <= 20)
        or not minimum <= int(text) <= maximum
    ):
        return error_response(
            400, "invalid_parameter", f"{name} must be an integer {minimum}-{maximum}", name
        )
    return int(text)


def _filter_param(request: Request) -> NodeFilter | Response:
    """``?q=&kind=&type=&status=``; one left empty (as a form sends it) is no filter."""
    given: dict[str, str] = {}
    for name in ("q", "kind", "type", "status"):
        text = request.query_params.get(name)
        if not text:
            continue
        if len(text) > MAX_QUERY_CHARS:
            return error_response(
                400,
                "invalid_parameter",
                f"{name} must be at most {MAX_QUERY_CHARS} characters",
                name,
            )
        given[name] = text
    if given.get("kind", KINDS[0]) not in KINDS:
        return error_response(
            400, "invalid_parameter", f"kind must be one of {', '.join(KINDS)}", "kind"
        )
    return NodeFilter.of(given)


def _page_nodes(nodes: list[Node], positions: PositionIndex) -> list[PageNode]:
    where = positions.lookup([n.id for n in nodes])
    return [
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
    ]


def _page(store: GraphStore, positions: PositionIndex, offset: int, limit: int) -> Page:
    with store.lock:  # counts and the page from one revision
        nodes, edges, revision = store.page(offset, limit)
        node_count, edge_count = len(store), store.edge_count
    return Page(
        revision=revision,
        offset=offset,
        limit=limit,
        node_count=node_count,
        edge_count=edge_count,
        nodes=_page_nodes(nodes, positions),
        edges=[PageEdge(s, t, w) for s, t, w in edges],
    )


def _filtered_page(
    store: GraphStore, positions: PositionIndex, flt: NodeFilter, offset: int, limit: int
) -> Page:
    """The matching nodes ``[offset, offset+limit)``, in the store's order, and the edges from
    them to any matching node: each edge between two matches comes once, with its source's
    page, so one page of results carries every edge among them and all pages the rest."""
    for _ in range(QUERY_TRIES):
        with store.lock:  # a copy of the list (milliseconds); the scan runs without the lock
            nodes, revision = store.nodes(), store.revision
        matched = [n for n in nodes if flt.matches(n)]
        window = matched[offset : offset + limit]
        among = {n.id for n in matched}
        edges, truncated = store.edges_from([n.id for n in window], among, MAX_EDGES)
        if store.revision == revision:
            break
    return Page(
        revision=revision,
        offset=offset,
        limit=limit,
        node_count=len(matched),
        edge_count=len(edges),
        nodes=_page_nodes(window, positions),
        edges=[PageEdge(s, t, w) for s, t, w in edges],
        truncated=truncated,
    )


def _neighbours(
    store: GraphStore, positions: PositionIndex, node_id: int, depth: int, limit: int
) -> Neighbourhood:
    """The node, its neighbours up to ``depth`` hops (at most ``limit`` nodes in all) and the
    edges among them; GraphError ``unknown_node`` for no node with that raw or flagged id."""
    for _ in range(QUERY_TRIES):
        with store.lock:
            node, revision = store.node(node_id), store.revision
        if node is None or (node_id & FLAG_MASK and node_id != node.flagged_id):
            raise GraphError("unknown_node", f"no node with id {node_id}", "id")
        ids, cut = store.neighbourhood(node.id, depth, limit)
        # one dict lookup each needs no lock; a node gone meanwhile moved the revision
        nodes = [n for n in map(store.node, ids) if n is not None]
        edges, too_many = store.edges_from(ids, set(ids), MAX_EDGES)
        if store.revision == revision:
            break
    return Neighbourhood(
        revision=revision,
        depth=depth,
        limit=limit,
        truncated=cut or too_many,
        node_count=len(nodes),
        edge_count=len(edges),
        nodes=_page_nodes(nodes, positions),
        edges=[PageEdge(s, t, w) for s, t, w in edges],
    )


async def graph_data(request: Request) -> Response:
    """Nodes (id, flagged id, kind, label, group, metadata, position) and edges, paged.

    ``?offset=&limit=`` page both lists (limit up to 100000); ``node_count`` and ``edge_count``
    say how many there are in all. ``?q=&kind=&type=&status=`` (combined: AND) keep the nodes
    that match, paged the same way, ``node_count`` counting them; each filtered page carries
    the edges from its nodes to any matching node (``edge_count`` counts them, at most 100000,
    else ``truncated``), so the pages together hold every edge among the matches once.
    """
    ctx = context_of(request)
    refused = require_token(ctx, request) or require_started(ctx)
    if refused is not None:
        return refused
    offset = _int_param(request, "offset", 0, 1 << 31)
    if isinstance(offset, Response):
        return offset
    limit = _int_param(request, "limit", DEFAULT_PAGE, MAX_PAGE)
    if isinstance(limit, Response):
        return limit
    flt = _filter_param(request)
    if isinstance(flt, Response):
        return flt
    snapshot = ctx.engine.latest

    def page() -> bytes:  # sorting 100k ids, a search, building the page: off the event loop
        positions = PositionIndex(snapshot)
        if flt.active:
            return msgspec.json.encode(_filtered_page(ctx.store, positions, flt, offset, limit))
        return msgspec.json.encode(_page(ctx.store, positions, offset, limit))

    return Response(await anyio.to_thread.run_sync(page), media_type="application/json")


async def graph_neighbours(request: Request) -> Response:
    """A node, its neighbours up to ``?depth=`` hops (1, the default, or 2; edges either way)
    and the edges among them, as ``/api/graph/data`` gives nodes and edges.

    The path's id is the node's ``id`` or ``flagged_id`` as ``/api/graph/data`` reports them
    (not its key: find that with ``?q=``). The node comes first, then the nodes one hop away,
    then two, each by ascending id; at most ``?limit=`` nodes (default 10000, at most 100000)
    and 100000 edges, ``truncated`` when there were more.
    """
    ctx = context_of(request)
    refused = require_token(ctx, request) or require_started(ctx)
    if refused is not None:
        return refused
    text = request.path_params["id"]
    if not (text.isascii() and text.isdecimal() and len(text) <= 10) or int(text) > 0xFFFF_FFFF:
        return error_response(
            400,
            "invalid_parameter",
            "id must be a node's id or flagged_id (an integer 0-4294967295), not its key",
            "id",
        )
    node_id = int(text)
    depth = _int_param(request, "depth", DEPTHS[0], DEPTHS[-1], minimum=DEPTHS[0])
    if isinstance(depth, Response) or depth not in DEPTHS:
        return error_response(400, "invalid_parameter", "depth must be 1 or 2", "depth")
    limit = _int_param(request, "limit", DEFAULT_PAGE, MAX_PAGE, minimum=1)
    if isinstance(limit, Response):
        return limit
    snapshot = ctx.engine.latest

    def neighbours() -> bytes:
        found = _neighbours(ctx.store, PositionIndex(snapshot), node_id, depth, limit)
        return msgspec.json.encode(found)

    try:
        data = await anyio.to_thread.run_sync(neighbours)
    except GraphError as exc:
        return error_response(404, exc.code, exc.message, exc.path or None)
    return Response(data, media_type="application/json")


# After a body this large, the freed parse is given back to the system (visionflow/memory.py).
RELEASE_AFTER_BYTES = 16 * 1024 * 1024
# After an import of this many nodes, what is alive is frozen out of the cyclic GC (same module).
FREEZE_AFTER_NODES = 10_000


def _import(
    store: GraphStore, data: bytes, mode: str, fmt: str | None, content_type: str | None
) -> dict[str, Any] | GraphError:
    """The import's answer, or the reason it was refused, returned rather than raised: an
    exception that crosses back from the worker thread drags its traceback along, whose frames
    hold the parsed document, and the thread machinery keeps it in reference cycles that only
    a full collection frees (4 refused 53 MiB imports kept 1.7 GB)."""
    try:
        return _read_and_apply(store, data, mode, fmt, content_type)
    except GraphError as exc:
        return GraphError(exc.code, exc.message, exc.path)  # no traceback, no frames
    finally:
        # the parsed document is gone with the call's frame, applied or refused
        if len(data) >= RELEASE_AFTER_BYTES:
            release_freed()


def _read_and_apply(
    store: GraphStore, data: bytes, mode: str, fmt: str | None, content_type: str | None
) -> dict[str, Any]:
    chosen = formats.choose(fmt, content_type, data)
    # a reader stops at the graph limits: a CSV row is a few bytes and a dict of hundreds
    limits = formats.Limits(max_nodes=store.max_nodes, max_edges=store.max_edges)
    with no_gc_while():  # the objects it makes live on: collecting them now only stalls
        parsed = formats.read(chosen, data, limits)
    refused: tuple[str, str, str] | None = None
    try:
        with no_gc_while():
            result = store.import_document(parsed.document, mode)  # type: ignore[arg-type]
    except GraphError as exc:  # named as the source names it (links[3], line 12)
        refused = (exc.code, exc.message, parsed.locate(exc.path))
    # raised out here, not in the except clause: the frame would hold the caught exception,
    # whose traceback holds this frame (a cycle keeping the document alive)
    if refused is not None:
        raise GraphError(*refused)
    return {
        "added": result.added,
        "updated": result.updated,
        "removed": result.removed,
        "edges": result.edges,
        "revision": result.revision,
        "format": chosen,
    }


def _save(store: GraphStore, state_dir: str, big: bool) -> None:
    """Save the graph after an import; after a big one, the heap its encoding freed goes back
    to the system too (the import's own release ran before this save: 300k nodes kept ~350 MiB
    more per round of imports without it)."""
    try:
        save_graph(store, state_dir)
    finally:
        if big:
            release_freed()


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
    max_waiting = ctx.live.current.server.max_queued_imports
    if ctx.imports.full(max_waiting):  # refused before its body is received
        return imports_busy(max_waiting, close=True)
    body = await read_body(request, ctx.live.current.server.max_request_bytes)
    if isinstance(body, Response):
        return body
    content_type = request.headers.get("content-type")
    # reading and validating a large document is CPU work: off the event loop, and one
    # import at a time, a bounded number waiting (a parse takes ~10x its body in memory)
    async with ctx.imports.turn(max_waiting) as admitted:
        if not admitted:
            return imports_busy(max_waiting)
        # abandonable: a shutdown does not wait for a 150k-node parse (nothing was answered)
        result = await run_abandonable(
            partial(_import, ctx.store, body, mode, fmt, content_type), name="graph import"
        )
    if isinstance(result, GraphError):  # _import returns its refusal rather than raising it
        status = 415 if result.code == "unsupported_media_type" else 400
        return error_response(status, result.code, result.message, result.path or None)
    if result["added"] + result["updated"] >= FREEZE_AFTER_NODES:
        keep_out_of_gc()  # the graph it made lives on: no full collection walks it again
    if ctx.changes.example_shown:  # the user's own graph is not shown mixed with the example
        result["removed"] += await run_abandonable(ctx.changes.drop_example, name="drop example")
        ctx.registry.remove("notes")
        # dropping it took a revision of its own: the answer names the graph as it now is
        result["revision"] = ctx.store.revision
    ctx.changes.knowledge_changed(replaced=mode == "replace")
    try:
        big = len(body) >= RELEASE_AFTER_BYTES
        # abandoned by a shutdown: graph.json keeps the previous save (written atomically) and
        # the import was not acknowledged
        await run_abandonable(
            partial(_save, ctx.store, ctx.live.current.state.dir, big), name="graph save"
        )
        result["saved"] = True
    except OSError as exc:
        # Applied but not durable: say so rather than fail a request that did its work.
        log.warning("imported graph not saved: {}", exc)
        ctx.metrics.graph_save_failures.inc()
        result["saved"] = False
    return JSONResponse(result)


async def graph_export(request: Request) -> Response:
    """The knowledge graph, each node with its current position: ?format=json (an import
    document, the default), graphml or gexf (1.2), as networkx and Gephi read them."""
    ctx = context_of(request)
    refused = require_token(ctx, request) or require_started(ctx)
    if refused is not None:
        return refused
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
    try:
        data = await ctx.exports.run(key, export)
    except GraphError as exc:  # a graph this format cannot carry
        return error_response(422, exc.code, exc.message, exc.path)
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


def _param(name: str, schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": text}


_OFFSET = _param(
    "offset", {"type": "integer", "minimum": 0, "maximum": 1 << 31, "default": 0}, "the first node"
)
_LIMIT = _param(
    "limit",
    {"type": "integer", "minimum": 0, "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
    "nodes (and, unfiltered, edges) per page",
)
_SHORT = {"type": "string", "maxLength": MAX_QUERY_CHARS}
DATA_PARAMETERS = [
    _OFFSET,
    _LIMIT,
    _param(
        "q",
        _SHORT,
        "a case-insensitive substring of a node's label, key or one of its aliases "
        "(metadata.aliases)",
    ),
    _param(
        "kind",
        # "": a form's empty field, no filter (as for q, type and status)
        {"type": "string", "enum": ["", *KINDS]},
        "knowledge, agent, or placeholder (a knowledge node of group placeholder: a page that "
        "is linked but not written); knowledge means the other knowledge nodes; empty: any",
    ),
    _param(
        "type",
        _SHORT,
        "agents of this type, reported or colour-table (metadata.type or metadata.kind), "
        "case-insensitive",
    ),
    _param("status", _SHORT, "agents of this status (metadata.status), case-insensitive"),
]
NEIGHBOUR_PARAMETERS = [
    {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 0, "maximum": 0xFFFF_FFFF},
        "description": "a node's id or flagged_id (a key gets a 400 that says so)",
    },
    _param("depth", {"type": "integer", "enum": list(DEPTHS), "default": 1}, "hops"),
    _param(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
        "nodes at most, the node itself included",
    ),
]


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


#: What a route that reads the graph answers while the saved graph is being restored.
STARTING = {"503": "the saved graph is still being restored (`starting`, with Retry-After)"}
_COUNT = {"type": "integer", "minimum": 0}
IMPORTED = obj(
    ["added", "updated", "removed", "edges", "revision", "format", "saved"],
    added=_COUNT,
    updated=_COUNT,
    removed=_COUNT,
    edges=_COUNT,
    revision={"type": "integer"},
    format={"enum": list(formats.FORMATS)},
    saved={"type": "boolean", "description": "false: applied, but not saved under state.dir"},
)


def routes() -> list[BaseRoute]:
    return [
        ApiRoute(
            "/api/graph/data",
            graph_data,
            needs_token=True,  # the graph's data: readable only with the token, when one is set
            methods=["GET"],
            parameters=DATA_PARAMETERS,
            response=Page,
            statuses={
                "400": "a bad parameter (`invalid_parameter`, path names it): offset or limit "
                f"not an integer in range, an unknown kind, a q, type or status over "
                f"{MAX_QUERY_CHARS} characters",
                **STARTING,
            },
        ),
        ApiRoute(
            "/api/graph/neighbours/{id}",
            graph_neighbours,
            needs_token=True,  # the graph's data: readable only with the token, when one is set
            methods=["GET"],
            parameters=NEIGHBOUR_PARAMETERS,
            response=Neighbourhood,
            statuses={
                "400": "id not an integer, depth not 1 or 2, limit not 1-100000 "
                "(`invalid_parameter`, path names it)",
                "404": "no node with that id (`unknown_node`)",
                **STARTING,
            },
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
            response=IMPORTED,
            statuses={
                **STARTING,
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
            needs_token=True,  # the graph's data: readable only with the token, when one is set
            methods=["GET"],
            parameters=[
                _query("format", tuple(formats.EXPORTS), "json", "json, graphml or gexf (1.2)")
            ],
            media={
                media: document.GraphDocument if fmt == "json" else _text(f"{fmt} XML")
                for fmt, (media, _) in formats.EXPORTS.items()
            },
            statuses={
                "400": "unknown format (`invalid_parameter`)",
                "422": "a graph the format cannot carry: node ids that XML would make one "
                "(`not_exportable`)",
                **STARTING,
            },
        ),
    ]
