"""The graph store: nodes with stable u32 ids, edges, revisions, and dense arrays for physics.

Two sides, one lock:

- The *logical* graph (nodes, edges, labels, metadata, pins) is edited on the event loop.  Every
  edit is validated first and applied whole or not at all; the topology ``revision`` bumps on
  every node/edge change, ``version`` on every change at all (pins and positions included).
- The *dense* arrays (index <-> id maps, positions, velocities, pinned, group, CSR adjacency) are
  owned by the physics thread.  Edits never touch them; ``sync()``, called by the engine before
  each step, folds pending edits in (new nodes seeded next to their neighbours, removed nodes
  compacted out, ids unchanged).  Between syncs the engine steps the arrays without the lock.

Ids are allocated from one counter for both kinds, never reused, in the low 30 bits; the wire
id adds the kind flag (docs/protocol.md section 1).  They survive a restart: the layout file keeps
each node's id, the counter and the revision, and ``restore_ids`` hands a node that comes back
its old id (``IdState``).  The dense id array is sorted on every rebuild, so lookups are binary
searches.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
import threading
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt

from visionflow.errors import GraphError
from visionflow.graph.dense import MAX_COORD, csr_from_edges
from visionflow.graph.document import (
    ExportedDocument,
    ExportedEdge,
    ExportedNode,
    check_weight,
    parse,
)
from visionflow.graph.document import check_position as check_position  # persist.py uses it
from visionflow.graph.heat import spread_heat
from visionflow.protocol.wire import AGENT_FLAG, ID_MASK, KNOWLEDGE_FLAG

ImportMode = Literal["replace", "merge"]
# (pinned, position to move to first or None): a drag, a pin where it is, or a release
PinRequest = tuple[bool, tuple[float, float, float] | None]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U32 = npt.NDArray[np.uint32]

# Spread of a new node around the mean of its placed neighbours, and the sphere scale for a node
# with none (radius grows with the cube root of the node count, like a uniform ball would).
SEED_SPREAD = 5.0
SPHERE_SCALE = 10.0

# Heat (the share of its forces a node moves by; physics/cpu.py) that a change gives the nodes it
# touches: their neighbours get half of it and the nodes two hops away a quarter, so a change
# reheats the layout in proportion to its reach. A new node starts at 1 (a whole new graph
# runs the full cooling schedule); a dragged node warms its neighbourhood as d3-force's
# ``alphaTarget(0.3)`` does; a removed node or a changed edge loosens what it held.
NEW_HEAT = 1.0
DRAG_HEAT = 0.6
CHANGE_HEAT = 0.5

# How long a read-only query (edges_from, neighbourhood) holds the lock at a time, in seconds:
# a query over a large graph takes many short holds, so the event loop's edits never wait
# long for it (at 300k nodes an adjacency entry costs about a microsecond: cache misses).
QUERY_HOLD_S = 0.004
QUERY_BATCH = 1024


class NodeKind(enum.IntEnum):
    """Node kind; the value is also the node's physics group (row of the parameter table)."""

    KNOWLEDGE = 0
    AGENT = 1

    @property
    def flag(self) -> int:
        return KNOWLEDGE_FLAG if self is NodeKind.KNOWLEDGE else AGENT_FLAG


@dataclass(frozen=True, slots=True)
class NodeKey:
    """What identifies a node across restarts: its kind and the id its source gave it."""

    kind: NodeKind
    external_id: str


@dataclass(slots=True)
class Node:
    id: int  # raw id, low 30 bits
    key: NodeKey
    label: str = ""
    group: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    pinned: bool = False

    @property
    def flagged_id(self) -> int:
        return self.id | self.key.kind.flag


@dataclass(frozen=True, slots=True)
class Edge:
    source: int  # raw ids
    target: int
    weight: float


@dataclass(frozen=True, slots=True)
class IdState:
    """What keeps ids and the revision stable across a restart (saved with the layout).

    ``reserved``: saved ids of nodes not back yet (an agent whose server has not answered).
    """

    revision: int
    next_id: int
    reserved: dict[NodeKey, int]


@dataclass(frozen=True, slots=True)
class ImportResult:
    added: int
    updated: int
    removed: int
    edges: int
    revision: int


@dataclass(slots=True)
class DenseState:
    """Arrays for the physics engine, in dense index order (ids ascending).

    ``pos``/``vel`` are float64 (n, 3) and are stepped in place by the engine thread, and so is
    ``heat`` (0 = at rest; see ``NEW_HEAT``).  The CSR adjacency (``indptr``, ``indices``,
    ``weights``) holds every edge in both directions.
    """

    ids: U32  # raw ids, sorted ascending
    flagged: U32  # wire ids (kind flag | raw id)
    group: npt.NDArray[np.int8]
    pos: F64
    vel: F64
    pinned: npt.NDArray[np.uint8]
    indptr: I64
    indices: I64
    weights: F64
    revision: int
    version: int
    heat: F64
    # Dense indices of the nodes the last rebuild added and seeded (not restored or imported
    # with a position): the engine may place them better (multilevel) and then clears this.
    fresh: I64 = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def n(self) -> int:
        return int(self.ids.shape[0])

    def index_of(self, raw_ids: npt.ArrayLike) -> I64:
        """Dense indices of raw ids (-1 where absent)."""
        q = np.asarray(raw_ids, dtype=np.uint32)
        idx = np.searchsorted(self.ids, q)
        idx = np.minimum(idx, max(self.n - 1, 0))
        ok = (self.n > 0) & (self.ids[idx] == q) if self.n else np.zeros(q.shape, bool)
        return np.where(ok, idx, -1).astype(np.int64)


def _empty_dense() -> DenseState:
    return DenseState(
        ids=np.zeros(0, np.uint32),
        flagged=np.zeros(0, np.uint32),
        group=np.zeros(0, np.int8),
        pos=np.zeros((0, 3), np.float64),
        vel=np.zeros((0, 3), np.float64),
        pinned=np.zeros(0, np.uint8),
        indptr=np.zeros(1, np.int64),
        indices=np.zeros(0, np.int64),
        weights=np.zeros(0, np.float64),
        revision=-1,
        version=-1,
        heat=np.zeros(0, np.float64),
    )


def _mix(x: int) -> int:
    """splitmix64: a deterministic hash for seeding (no global RNG state)."""
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFF_FFFF_FFFF_FFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFF_FFFF_FFFF_FFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFF_FFFF_FFFF_FFFF
    return x ^ (x >> 31)


def _unit_vector(raw_id: int) -> tuple[float, float, float]:
    """A deterministic direction on the unit sphere for a node id."""
    h = _mix(raw_id)
    u = (h & 0xFFFFFFFF) / 2.0**32
    v = (h >> 32) / 2.0**32
    z = 2.0 * u - 1.0
    r = math.sqrt(max(0.0, 1.0 - z * z))
    phi = 2.0 * math.pi * v
    return (r * math.cos(phi), r * math.sin(phi), z)


class GraphStore:
    """Nodes, edges and the dense physics arrays; thread-safe (one re-entrant lock).

    Edits are synchronous and cheap (O(size of the edit)); call them from the event loop.
    ``sync()`` is for the physics thread (or anyone while no engine runs).
    """

    def __init__(self, *, max_nodes: int = 2_000_000, max_edges: int = 20_000_000) -> None:
        self.max_nodes = max_nodes
        self.max_edges = max_edges
        self.lock = threading.RLock()
        self._next_id = 1
        # Saved ids of nodes not back yet, by key (bounded by the layout file; restore_ids).
        self._reserved: dict[NodeKey, int] = {}
        self._nodes: dict[int, Node] = {}
        self._by_key: dict[NodeKey, int] = {}
        self._edges: dict[tuple[int, int], float] = {}
        # Metadata of the edges that have some (from imports): a subset of ``_edges``' keys.
        self._edge_meta: dict[tuple[int, int], dict[str, Any]] = {}
        self._adj: dict[int, set[int]] = {}
        self.revision = 0  # topology: nodes and edges
        self._version = 0  # see ``version``
        self._structure_dirty = True
        self._pins_dirty = False  # every node's pin flag must be re-read (after a rebuild)
        # Nodes whose pin flag changed since the last sync: a drag touches a few nodes, and
        # re-reading all of them per drag message cost O(graph) under the lock (bounded by the
        # node count).
        self._pin_changes: set[int] = set()
        # Bounded by the node count: at most one pending position per live node.
        self._pending_pos: dict[int, tuple[float, float, float]] = {}
        # Heat for sync() to give (raw id -> level, spread to two hops), nodes placed where
        # they must stay (a restored layout, imported positions: cold), and a level every node
        # is warmed to (new parameters). Bounded by the node count.
        self._pending_heat: dict[int, float] = {}
        self._pending_cold: set[int] = set()
        self._heat_all = 0.0
        # Pins, drags, releases and new parameters' heat from the event loop that found the
        # lock taken (an import, a rebuild, an export hold it for seconds at 100k nodes) wait
        # here instead of the loop: the latest request per node (so bounded by the node count)
        # and the highest heat. ``_queue_lock`` is only held for a dict update; the next sync
        # or pin call applies them. ``_queued`` counts requests, for ``version``.
        self._queue_lock = threading.Lock()
        self._queued_pins: dict[int, PinRequest] = {}
        self._queued_heat_all = 0.0
        self._queued = 0
        self._dense = _empty_dense()

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._nodes)

    @property
    def version(self) -> int:
        """Bumped by every change (pins and positions included) and every queued drag."""
        return self._version + self._queued

    @property
    def edge_count(self) -> int:
        return len(self._edges)

    def node(self, node_id: int) -> Node | None:
        return self._nodes.get(node_id & ID_MASK)

    def node_by_key(self, kind: NodeKind, external_id: str) -> Node | None:
        raw = self._by_key.get(NodeKey(kind, external_id))
        # .get: read without the lock, the node may go between the two lookups
        return None if raw is None else self._nodes.get(raw)

    def nodes(self) -> list[Node]:
        with self.lock:
            return list(self._nodes.values())

    def edges(self) -> list[Edge]:
        with self.lock:
            return [Edge(s, t, w) for (s, t), w in self._edges.items()]

    # ------------------------------------------------------------------ edits

    def _bump(self, topology: bool = True) -> None:
        self._version += 1
        if topology:
            self.revision += 1
            self._structure_dirty = True

    def _require(self, node_id: int, path: str) -> int:
        raw = node_id & ID_MASK
        if raw not in self._nodes:
            raise GraphError("unknown_node", f"no node with id {node_id}", path)
        return raw

    def _new_node(self, key: NodeKey, label: str, group: str, metadata: dict[str, Any]) -> Node:
        if len(self._nodes) >= self.max_nodes:
            raise GraphError("too_many_nodes", f"the graph is full ({self.max_nodes} nodes)", "")
        raw = self._reserved.pop(key, None)  # back after a restart: the same id as before
        if raw is None or raw in self._nodes:
            if self._next_id > ID_MASK:
                raise GraphError("ids_exhausted", "no node ids left in this process", "")
            raw = self._next_id
            self._next_id += 1
        node = Node(raw, key, label, group, metadata)
        self._nodes[node.id] = node
        self._by_key[key] = node.id
        self._adj[node.id] = set()
        return node

    def add_node(
        self,
        kind: NodeKind,
        external_id: str,
        *,
        label: str = "",
        group: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> int:
        """Add a node; GraphError ``duplicate_id`` if (kind, external_id) exists. Returns raw id."""
        with self.lock:
            key = NodeKey(kind, external_id)
            if key in self._by_key:
                raise GraphError("duplicate_id", f"node {external_id!r} already exists", "id")
            node = self._new_node(key, label, group, dict(metadata or {}))
            self._bump()
            return node.id

    def upsert_node(
        self,
        kind: NodeKind,
        external_id: str,
        *,
        label: str | None = None,
        group: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> int:
        """Add the node or update the given fields of the existing one; return its raw id."""
        with self.lock:
            key = NodeKey(kind, external_id)
            raw = self._by_key.get(key)
            if raw is None:
                node = self._new_node(key, label or "", group or "", dict(metadata or {}))
                self._bump()
                return node.id
            node = self._nodes[raw]
            relabelled = (label is not None and label != node.label) or (
                group is not None and group != node.group
            )
            if label is not None:
                node.label = label
            if group is not None:
                node.group = group
            if metadata is not None:
                node.metadata = dict(metadata)
            if relabelled:  # viewers refetch labels on graph_changed; the arrays stay as they are
                self.revision += 1
            self._bump(topology=False)
            return raw

    def _warm(self, raw: int, level: float) -> None:
        if level > self._pending_heat.get(raw, 0.0):
            self._pending_heat[raw] = level

    def heat_all(self, level: float) -> None:
        """Warm every node to at least ``level`` at the next sync (new layout parameters).
        Never waits for the lock: queued like a drag."""
        with self._queue_lock:
            self._queued_heat_all = max(self._queued_heat_all, level)
            self._queued += 1

    def _drop_node(self, raw: int) -> None:
        node = self._nodes.pop(raw)
        del self._by_key[node.key]
        for other in self._adj.pop(raw):
            self._edges.pop((raw, other), None)
            self._edges.pop((other, raw), None)
            self._edge_meta.pop((raw, other), None)
            self._edge_meta.pop((other, raw), None)
            if other != raw:
                self._adj[other].discard(raw)
                self._warm(other, CHANGE_HEAT)
        self._pending_pos.pop(raw, None)
        self._pending_heat.pop(raw, None)
        self._pending_cold.discard(raw)

    def remove_node(self, node_id: int) -> None:
        with self.lock:
            raw = self._require(node_id, "id")
            self._drop_node(raw)
            self._bump()

    def _link(self, s: int, t: int, w: float) -> None:
        if self._edges.get((s, t)) != w:
            self._warm(s, CHANGE_HEAT)
            self._warm(t, CHANGE_HEAT)
        self._edges[(s, t)] = w
        self._adj[s].add(t)
        self._adj[t].add(s)

    def set_edge(self, source: int, target: int, weight: float = 1.0) -> None:
        """Add the edge or change its weight (one edge per ordered pair)."""
        with self.lock:
            s = self._require(source, "source")
            t = self._require(target, "target")
            w = check_weight(weight, "weight")
            if (s, t) not in self._edges and len(self._edges) >= self.max_edges:
                raise GraphError("too_many_edges", f"the graph is full ({self.max_edges} edges)")
            self._link(s, t, w)
            self._bump()

    def remove_edge(self, source: int, target: int) -> None:
        with self.lock:
            s = self._require(source, "source")
            t = self._require(target, "target")
            if self._edges.pop((s, t), None) is None:
                raise GraphError("unknown_edge", f"no edge {source} -> {target}", "")
            self._edge_meta.pop((s, t), None)
            if (t, s) not in self._edges:
                self._adj[s].discard(t)
                self._adj[t].discard(s)
            self._warm(s, CHANGE_HEAT)
            self._warm(t, CHANGE_HEAT)
            self._bump()

    def import_document(
        self, doc: object, mode: ImportMode = "merge", *, scope: str | None = None
    ) -> ImportResult:
        """Apply a docs/protocol.md section 7 document (knowledge nodes) whole, or raise GraphError.

        ``doc`` is a :class:`~visionflow.graph.document.GraphDocument` or a decoded JSON value
        (validated by :func:`~visionflow.graph.document.parse`).

        ``merge`` adds new nodes, updates the given fields of known ones (matched by id, so
        their u32 ids and positions stay) and adds/updates edges.  ``replace`` makes the
        knowledge graph exactly the document: other knowledge nodes and knowledge-knowledge
        edges go; agent nodes and their edges stay. ``scope`` (an id prefix, e.g. ``"note:"``)
        narrows that to the knowledge nodes whose ids start with it, and to the edges between
        two of them: a notes vault replaces its own pages and leaves imported nodes alone. Every
        node of a scoped document must be in the scope.
        """
        if mode not in ("replace", "merge"):
            raise GraphError("invalid_mode", "mode must be 'replace' or 'merge'", "mode")
        document = parse(doc)
        doc_nodes = document.nodes
        # The document's own edge objects, no per-edge tuple or path string: every temporary
        # object of a large import is one more the allocator interleaves with what lives on
        # (visionflow/memory.py); a refusal names its edge from the index.
        doc_edges = document.edges
        edge_meta = [
            (e.source, e.target, e.metadata) for e in document.edges if e.metadata is not None
        ]
        kind = NodeKind.KNOWLEDGE
        if scope is not None:
            for i, n in enumerate(doc_nodes):
                if not n.id.startswith(scope):
                    raise GraphError(
                        "invalid_node", f"id {n.id!r} is not in scope {scope!r}", f"nodes[{i}].id"
                    )

        def scoped(raw: int) -> bool:
            key = self._nodes[raw].key
            return key.kind is kind and (scope is None or key.external_id.startswith(scope))

        with self.lock:
            in_doc = {n.id for n in doc_nodes}
            existing = {
                key.external_id: raw
                for key, raw in self._by_key.items()
                if key.kind is kind and (scope is None or key.external_id.startswith(scope))
            }
            known = in_doc if mode == "replace" else in_doc | existing.keys()
            for i, e in enumerate(doc_edges):
                if e.source not in known:
                    raise GraphError("unknown_node", f"no node {e.source!r}", f"edges[{i}].source")
                if e.target not in known:
                    raise GraphError("unknown_node", f"no node {e.target!r}", f"edges[{i}].target")
            removed_ids = (
                [raw for ext, raw in existing.items() if ext not in in_doc]
                if mode == "replace"
                else []
            )
            new_count = sum(1 for n in doc_nodes if n.id not in existing)
            if len(self._nodes) - len(removed_ids) + new_count > self.max_nodes:
                raise GraphError(
                    "too_many_nodes", f"the graph would exceed {self.max_nodes} nodes", "nodes"
                )
            if self._next_id + new_count - 1 > ID_MASK:
                raise GraphError("ids_exhausted", "no node ids left in this process", "nodes")
            removed_set = set(removed_ids)
            kept_edges = len(self._edges)
            if mode == "replace":
                kept_edges = sum(
                    1
                    for (s, t) in self._edges
                    if s not in removed_set
                    and t not in removed_set
                    and not (scoped(s) and scoped(t))
                )
            pairs = {(e.source, e.target) for e in doc_edges}  # later ones win
            distinct = len(pairs)
            if mode == "merge":  # restating an edge the store holds adds nothing
                pairs = {
                    (src, dst)
                    for src, dst in pairs
                    if (existing.get(src), existing.get(dst)) not in self._edges
                }
            if kept_edges + len(pairs) > self.max_edges:
                raise GraphError(
                    "too_many_edges", f"the graph would exceed {self.max_edges} edges", "edges"
                )
            del pairs
            # validated: from here on nothing can fail
            for raw in removed_ids:
                self._drop_node(raw)
            if mode == "replace":
                for s, t in [(s, t) for (s, t) in self._edges if scoped(s) and scoped(t)]:
                    del self._edges[(s, t)]
                    self._edge_meta.pop((s, t), None)
                    if (t, s) not in self._edges:
                        self._adj[s].discard(t)
                        self._adj[t].discard(s)
            added = updated = 0
            for dn in doc_nodes:
                key = NodeKey(kind, dn.id)
                raw_or_none = self._by_key.get(key)
                if raw_or_none is None:
                    meta = dict(dn.metadata or {})  # a copy: the caller's dict stays theirs
                    node = self._new_node(key, dn.label or "", dn.group or "", meta)
                    added += 1
                    if dn.position is not None:
                        self._pending_pos[node.id] = dn.position
                        self._pending_cold.add(node.id)
                    continue
                node = self._nodes[raw_or_none]
                if dn.position is not None:
                    self._pending_pos[node.id] = dn.position
                    self._pending_cold.add(node.id)
                # What did not change keeps its objects: re-importing a graph then frees the
                # whole document at once, where swapping equal strings and dicts mixed old and
                # new objects in the allocator's arenas (+25 % RSS, kept, at 300k nodes).
                if dn.label is not None and dn.label != node.label:
                    node.label = dn.label
                if dn.group is not None and dn.group != node.group:
                    node.group = dn.group
                if dn.metadata is not None and dn.metadata != node.metadata:
                    node.metadata = dict(dn.metadata)
                updated += 1
            by_key = self._by_key
            for e in doc_edges:
                s, t = by_key[NodeKey(kind, e.source)], by_key[NodeKey(kind, e.target)]
                # not given: a merge keeps the edge's weight (a replace removed it above)
                w = e.weight
                self._link(
                    s, t, self._edges.get((s, t), 1.0) if isinstance(w, msgspec.UnsetType) else w
                )
            for src, dst, meta in edge_meta:  # given: replaced (emptied by {}); absent: kept
                pair = (self._by_key[NodeKey(kind, src)], self._by_key[NodeKey(kind, dst)])
                if meta:
                    self._edge_meta[pair] = dict(meta)
                else:
                    self._edge_meta.pop(pair, None)
            self._bump()
            return ImportResult(added, updated, len(removed_ids), distinct, self.revision)

    # ------------------------------------------------------------------ pins and positions

    def pin(self, node_id: int, position: Iterable[float] | None = None) -> None:
        """Pin a node (optionally moving it first); position must be finite. Never waits for
        the lock (see ``_queued_pins``)."""
        pos = check_position(position) if position is not None else None
        self._pin_requests([node_id & ID_MASK], [(True, pos)], path="id", shown=[node_id])

    def pin_many(
        self, raw_ids: npt.NDArray[np.uint32], positions: npt.NDArray[np.floating]
    ) -> None:
        """Pin many nodes at ``positions`` (rows), all or nothing, with one revision bump.

        GraphError names the first record (``records[k]``) with an unknown id or a position
        that is not finite or past MAX_COORD; checks are vectorised, a drag may hold thousands.
        Never waits for the lock (the event loop calls it): see ``_queued_pins``.
        """
        pos = np.asarray(positions, np.float64).reshape(-1, 3)
        ok = np.all(np.isfinite(pos) & (np.abs(pos) <= MAX_COORD), axis=1)
        if not ok.all():
            k = int(np.argmin(ok))
            check_position(pos[k].tolist(), f"records[{k}]")  # raises with the reason
        rows: list[PinRequest] = [(True, (p[0], p[1], p[2])) for p in pos.tolist()]
        self._pin_requests(raw_ids.tolist(), rows)

    def unpin(self, node_id: int) -> None:
        self._pin_requests([node_id & ID_MASK], [(False, None)], path="id", shown=[node_id])

    def unpin_many(self, raw_ids: Iterable[int]) -> int:
        """Release the nodes of ``raw_ids`` that exist (others are skipped), with one version
        bump; how many were released (or queued: never waits for the lock either)."""
        raws = list(raw_ids)
        return self._pin_requests(raws, [(False, None)] * len(raws), strict=False)

    def _pin_requests(
        self,
        raws: list[int],
        rows: list[PinRequest],
        *,
        strict: bool = True,
        path: str | None = None,
        shown: list[int] | None = None,
    ) -> int:
        """Apply each request to its node now if the lock is free, else queue them all.

        ``strict``: an unknown id raises GraphError (at ``path``, else ``records[k]``, naming
        the id as in ``shown``) and nothing is done; else it is skipped. Without the lock the
        ids are checked against the live dict (one lookup each is atomic); a node removed
        before the queue is applied is skipped then.
        """
        locked = self.lock.acquire(blocking=False)
        try:
            known = [raw in self._nodes for raw in raws]
            if strict and not all(known):
                k = known.index(False)
                name = (shown or raws)[k]
                raise GraphError("unknown_node", f"no node with id {name}", path or f"records[{k}]")
            wanted = [(r, p) for r, p, ok in zip(raws, rows, known, strict=True) if ok]
            if not locked:
                with self._queue_lock:
                    self._queued_pins.update(wanted)
                    self._queued += 1
                return len(wanted)
            self._apply_queued()
            for raw, p in wanted:
                self._apply_pin(raw, p)
            if wanted:
                self._bump(topology=False)
            return len(wanted)
        finally:
            if locked:
                self.lock.release()

    def _apply_pin(self, raw: int, request: PinRequest) -> bool:
        node = self._nodes.get(raw)
        if node is None:
            return False
        node.pinned, position = request
        if position is not None:
            self._pending_pos[raw] = position
        self._warm(raw, DRAG_HEAT)
        self._pin_changes.add(raw)
        return True

    def _apply_queued(self) -> None:
        """Apply the queued requests (the lock is held)."""
        with self._queue_lock:
            queued, self._queued_pins = self._queued_pins, {}
            heat, self._queued_heat_all = self._queued_heat_all, 0.0
        self._heat_all = max(self._heat_all, heat)
        if any([self._apply_pin(raw, p) for raw, p in queued.items()]) or heat > 0.0:
            self._bump(topology=False)

    def set_positions(self, positions: Mapping[int, Iterable[float]]) -> int:
        """Queue positions for existing nodes (e.g. a restored layout); unknown ids are skipped.

        Non-finite positions raise GraphError before anything is queued.  Returns how many.
        """
        with self.lock:
            checked = {
                raw & ID_MASK: check_position(p, f"positions[{raw}]")
                for raw, p in positions.items()
            }
            count = 0
            for raw, p in checked.items():
                if raw in self._nodes:
                    self._pending_pos[raw] = p
                    self._pending_cold.add(raw)
                    count += 1
            if count:
                self._bump(topology=False)
            return count

    # ------------------------------------------------------------------ dense side

    def sync(self) -> DenseState:
        """Fold pending edits into the dense arrays and return them (physics thread only)."""
        with self.lock:
            self._apply_queued()
            d = self._dense
            new = np.zeros(0, np.int64)
            if self._structure_dirty:
                d, new = self._rebuild(d)
                self._structure_dirty = False
                self._pins_dirty = True
            if self._pins_dirty:
                d.pinned[:] = [1 if self._nodes[int(i)].pinned else 0 for i in d.ids]
                self._pins_dirty = False
            elif self._pin_changes:
                changed = [r for r in self._pin_changes if r in self._nodes]
                where = d.index_of(np.asarray(changed, np.uint32))
                flags = np.fromiter(
                    (self._nodes[r].pinned for r in changed), np.uint8, len(changed)
                )
                d.pinned[where[where >= 0]] = flags[where >= 0]
            self._pin_changes.clear()
            if self._pending_pos:
                raws = np.fromiter(self._pending_pos.keys(), np.uint32, len(self._pending_pos))
                idx = d.index_of(raws)
                vals = np.array(list(self._pending_pos.values()), np.float64).reshape(-1, 3)
                ok = idx >= 0
                d.pos[idx[ok]] = vals[ok]
                d.vel[idx[ok]] = 0.0
                self._pending_pos.clear()
            self._apply_heat(d, new)
            d.revision = self.revision
            d.version = self.version
            self._dense = d
            return d

    def _apply_heat(self, d: DenseState, new: I64) -> None:
        """Give the pending heat: ``new`` nodes (dense indices) and warmed ones with their
        neighbourhoods, then cool the nodes placed where they must stay."""
        if self._heat_all > 0.0:
            np.maximum(d.heat, self._heat_all, out=d.heat)
            self._heat_all = 0.0
        cold = d.index_of(np.fromiter(self._pending_cold, np.uint32, len(self._pending_cold)))
        cold = cold[cold >= 0]
        if new.size or self._pending_heat:
            warm = d.index_of(np.fromiter(self._pending_heat, np.uint32, len(self._pending_heat)))
            levels = np.fromiter(self._pending_heat.values(), np.float64, len(self._pending_heat))
            seeds = np.concatenate([new, warm[warm >= 0]])
            levels = np.concatenate([np.full(new.size, NEW_HEAT), levels[warm >= 0]])
            if cold.size:  # a placed node stays put, and so does a restored neighbourhood
                keep = ~np.isin(seeds, cold)
                seeds, levels = seeds[keep], levels[keep]
            spread_heat(d.heat, d.indptr, d.indices, seeds, levels)
        d.heat[cold] = 0.0
        if new.size:
            d.fresh = new[~np.isin(new, cold)] if cold.size else new
        self._pending_heat.clear()
        self._pending_cold.clear()

    def _rebuild(self, old: DenseState) -> tuple[DenseState, I64]:
        ids = np.fromiter(sorted(self._nodes), np.uint32, len(self._nodes))
        n = ids.shape[0]
        kinds = np.fromiter((int(self._nodes[int(i)].key.kind) for i in ids), np.int8, n)
        flagged = ids | np.where(kinds == NodeKind.AGENT, AGENT_FLAG, KNOWLEDGE_FLAG).astype(
            np.uint32
        )
        pos = np.zeros((n, 3), np.float64)
        vel = np.zeros((n, 3), np.float64)
        heat = np.zeros(n, np.float64)
        placed = np.zeros(n, bool)
        if old.n and n:
            src = old.index_of(ids)
            keep = src >= 0
            pos[keep] = old.pos[src[keep]]
            vel[keep] = old.vel[src[keep]]
            heat[keep] = old.heat[src[keep]]
            placed[keep] = True
        state = DenseState(
            ids=ids,
            flagged=flagged,
            group=kinds,
            pos=pos,
            vel=vel,
            pinned=np.zeros(n, np.uint8),
            indptr=np.zeros(n + 1, np.int64),
            indices=np.zeros(0, np.int64),
            weights=np.zeros(0, np.float64),
            revision=self.revision,
            version=self.version,
            heat=heat,
        )
        new = np.flatnonzero(~placed)
        self._seed(state, placed)
        self._build_csr(state)
        return state, new

    def _seed(self, d: DenseState, placed: npt.NDArray[np.bool_]) -> None:
        """Place new nodes, in id order: near placed neighbours' mean, else on a sphere."""
        todo = np.flatnonzero(~placed)
        if todo.size == 0:
            return
        radius = SPHERE_SCALE * max(1.0, d.n ** (1.0 / 3.0))
        index = {int(r): i for i, r in enumerate(d.ids)} if todo.size > 64 else None
        for i in todo.tolist():
            raw = int(d.ids[i])
            acc = [0.0, 0.0, 0.0]
            k = 0
            for other in self._adj[raw]:
                j = index[other] if index is not None else int(d.index_of([other])[0])
                if j >= 0 and placed[j]:
                    acc[0] += d.pos[j, 0]
                    acc[1] += d.pos[j, 1]
                    acc[2] += d.pos[j, 2]
                    k += 1
            u = _unit_vector(raw)
            if k:
                d.pos[i] = [acc[c] / k + SEED_SPREAD * u[c] for c in range(3)]
            else:
                shell = 0.5 + 0.5 * ((_mix(raw ^ 0x5EED) & 0xFFFF) / 65535.0)
                d.pos[i] = [radius * shell * u[c] for c in range(3)]
            placed[i] = True

    def _build_csr(self, d: DenseState) -> None:
        m = len(self._edges)
        src_raw = np.fromiter((s for s, _ in self._edges), np.uint32, m)
        dst_raw = np.fromiter((t for _, t in self._edges), np.uint32, m)
        w = np.fromiter(self._edges.values(), np.float64, m)
        d.indptr, d.indices, d.weights = csr_from_edges(
            d.n, d.index_of(src_raw), d.index_of(dst_raw), w
        )

    # ------------------------------------------------------------------ export

    def export(
        self,
        positions: Mapping[int, tuple[float, float, float]] | None = None,
        *,
        include_agents: bool = False,
    ) -> ExportedDocument:
        """The knowledge graph as a section 7 document, each node with its ``position``.

        ``positions`` maps raw or flagged ids to xyz (e.g. from the engine's latest snapshot);
        without it the last synced dense positions are used.
        """
        with self.lock:
            pos_of: dict[int, tuple[float, float, float]] = {}
            if positions is not None:
                pos_of = {k & ID_MASK: v for k, v in positions.items()}
            else:
                d = self._dense
                pos_of = {
                    int(r): (float(p[0]), float(p[1]), float(p[2]))
                    for r, p in zip(d.ids, d.pos, strict=True)
                }
            keep = {
                raw
                for raw, node in self._nodes.items()
                if include_agents or node.key.kind is NodeKind.KNOWLEDGE
            }
            nodes = []
            for raw in sorted(keep):
                node = self._nodes[raw]
                where = pos_of.get(raw)
                nodes.append(
                    ExportedNode(
                        id=node.key.external_id,
                        label=node.label,
                        group=node.group,
                        metadata=node.metadata,
                        kind=node.key.kind.name.lower() if include_agents else msgspec.UNSET,
                        position=(
                            msgspec.UNSET
                            if where is None
                            else [float(where[0]), float(where[1]), float(where[2])]
                        ),
                    )
                )
            meta = self._edge_meta
            edges = [
                ExportedEdge(
                    self._nodes[s].key.external_id,
                    self._nodes[t].key.external_id,
                    w,
                    meta.get((s, t), msgspec.UNSET),
                )
                for (s, t), w in self._edges.items()
                if s in keep and t in keep
            ]
            return ExportedDocument(nodes, edges, self.revision)

    def export_document(
        self,
        positions: Mapping[int, tuple[float, float, float]] | None = None,
        *,
        include_agents: bool = False,
    ) -> dict[str, Any]:
        """:meth:`export` as JSON-ready builtins (dicts and lists)."""
        result: dict[str, Any] = msgspec.to_builtins(
            self.export(positions, include_agents=include_agents)
        )
        return result

    def page(self, offset: int, limit: int) -> tuple[list[Node], list[tuple[int, int, float]], int]:
        """Nodes ``[offset, offset+limit)``, edges in the same window, and the revision.

        Edges come as (source, target, weight) with wire (flagged) ids. Insertion order is
        stable, so consecutive pages of an unchanged revision tile the graph.
        """
        end = offset + limit
        with self.lock:
            nodes = list(itertools.islice(self._nodes.values(), offset, end))
            by_id = self._nodes
            edges = [
                (by_id[s].flagged_id, by_id[t].flagged_id, w)
                for (s, t), w in itertools.islice(self._edges.items(), offset, end)
            ]
            return nodes, edges, self.revision

    def edges_from(
        self, sources: Sequence[int], among: Collection[int], cap: int
    ) -> tuple[list[tuple[int, int, float]], bool]:
        """Edges from a node of ``sources`` to a node of ``among`` (raw ids), at most ``cap``,
        as (source, target, weight) with wire ids, by source in the order given; and whether
        there were more.

        The lock is held for about ``QUERY_HOLD_S`` at a time (a hub's neighbours are looked at
        ``QUERY_BATCH`` at a time), never for the whole query: a caller that needs one revision
        compares ``revision`` before and after. Edges of a node gone meanwhile are left out.
        """
        found: list[tuple[int, int, float]] = []
        more = False
        i = j = s = 0
        todo: list[int] = []  # what sources[i - 1]'s targets may be, looked at from j on
        other: Collection[int] = ()  # ... and what each must be in, too
        while (i < len(sources) or j < len(todo)) and not more:
            with self.lock:
                until = time.perf_counter() + QUERY_HOLD_S
                edges = self._edges
                while not more:
                    if j == len(todo):
                        if i == len(sources):
                            break
                        s, j = sources[i], 0
                        i += 1
                        near: Collection[int] = self._adj.get(s, ())
                        # the smaller side: a hub among a few nodes, or a few neighbours of many
                        todo, other = (
                            (list(near), among) if len(near) <= len(among) else (list(among), near)
                        )
                    for t in todo[j : j + QUERY_BATCH]:
                        w = edges.get((s, t)) if t in other else None
                        if w is not None:  # None: not in both, or only the edge t -> s
                            if len(found) == cap:
                                more = True
                                break
                            found.append((s, t, w))
                    j = min(j + QUERY_BATCH, len(todo))
                    if time.perf_counter() >= until:
                        break
        # wire ids after the lock: one dict lookup each is atomic
        nodes = self._nodes
        out = []
        for s, t, w in found:
            a, b = nodes.get(s), nodes.get(t)
            if a is not None and b is not None:
                out.append((a.flagged_id, b.flagged_id, w))
        return out, more

    def neighbourhood(self, node_id: int, depth: int, cap: int) -> tuple[list[int], bool]:
        """Raw ids of a node (first) and of its neighbours up to ``depth`` hops, either edge
        direction: one hop before two, each ring by ascending id; at most ``cap`` (>= 1) ids,
        and whether there were more.

        GraphError ``unknown_node`` (path ``id``) for no such node. The lock is held for
        ``QUERY_HOLD_S`` at a time (see :meth:`edges_from`).
        """
        with self.lock:
            raw = self._require(node_id, "id")
            ring = set(self._adj[raw])
        out, seen = [raw], {raw}
        for hop in range(depth):
            ring -= seen
            room = cap - len(out)
            if len(ring) > room:  # a hub: the lowest ids of this ring fill the rest
                out += heapq.nsmallest(room, ring)
                return out, True
            ordered = sorted(ring)
            out += ordered
            seen |= ring
            if hop + 1 == depth:
                break
            ring = set()
            i = 0
            while i < len(ordered):
                with self.lock:
                    until = time.perf_counter() + QUERY_HOLD_S
                    while i < len(ordered):
                        ring.update(self._adj.get(ordered[i], ()))
                        i += 1
                        if time.perf_counter() >= until:
                            break
        return out, False

    def keys(self) -> dict[int, NodeKey]:
        """Raw id -> stable key, for layout persistence."""
        with self.lock:
            return {raw: node.key for raw, node in self._nodes.items()}

    def id_state(self) -> IdState:
        """The revision, the id counter and unclaimed saved ids, for layout persistence."""
        with self.lock:
            return IdState(self.revision, self._next_id, dict(self._reserved))

    def restore_ids(self, ids: Mapping[NodeKey, int], next_id: int, revision: int) -> None:
        """At start-up, before the saved graph is loaded: nodes that come back (now or when
        their server answers) get their saved ids, new ones ids past every saved one.

        The revision continues one past the saved one: this graph may differ from the saved
        one (agents not back yet), so a viewer's baseline from the last run must not match.
        """
        with self.lock:
            taken = set(self._nodes)
            self._reserved = {
                key: raw & ID_MASK
                for key, raw in ids.items()
                if key not in self._by_key and raw & ID_MASK not in taken
            }
            top = max(self._reserved.values(), default=0)
            self._next_id = max(self._next_id, next_id, top + 1)
            self.revision = max(self.revision, revision + 1)
            self._version += 1
