""":func:`~visionflow.notes.build.build_graph` kept current note by note (pure).

Rebuilding the document of a 10k-note vault takes about half a second (resolving some 75k links),
too slow for every saved note. :class:`IncrementalGraph` holds the notes and what was derived from
them, and on :meth:`~IncrementalGraph.update` redoes only what the changed notes can reach:

- the names each note answers to, and per name the note that owns it (best rank, then shortest
  path, then first path: the rules of ``resolve_index``);
- each note's id (by its title when it owns its title, else by its path);
- each note's links and tags resolved (``note_targets``), with the names it looked up. A note is
  resolved again when it changed, when its id changed, or when a name it looked up got another
  owner or its owner another id;
- the edges' link counts and the placeholders' spellings, per note, so that taking a note's
  contribution back is exact.

The result is a :class:`GraphDelta`: the nodes and edges that differ from before, which a store
applies as it is (nothing else changes, so nothing else is reheated), and :meth:`document` is
always ``build_graph`` of the notes held, node for node and edge for edge (a test holds the two
equal over random edits).

Only when an id could collide (a title or link name whose compared form ends in ``.md``, such as
``x.md.md``: it could equal a note's path, and build_graph then numbers ids in path order) is the
whole document built again with ``build_graph``, until no such name is left.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from visionflow.notes.build import (
    ID_PREFIX,
    MAX_EDGE_WEIGHT,
    build_graph,
    note_names,
    note_targets,
    placeholder_keys,
)
from visionflow.notes.parse import Note, normalise_name

__all__ = ["GraphDelta", "IncrementalGraph", "Pair"]

Pair = tuple[str, str]
NodeDoc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class GraphDelta:
    """What changed in the document: ``nodes`` and ``edges`` added or changed (whole, in the
    document's form), ``removed_nodes`` (ids) and ``removed_edges`` ((source, target), as the
    document orders them). Empty (false) when nothing changed."""

    nodes: tuple[NodeDoc, ...] = ()
    edges: tuple[dict[str, Any], ...] = ()
    removed_nodes: tuple[str, ...] = ()
    removed_edges: tuple[Pair, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.nodes or self.edges or self.removed_nodes or self.removed_edges)

    def summary(self) -> str:
        """``2 nodes, 3 edges changed; 1 node, 0 edges removed``, for a log line."""
        return (
            f"{len(self.nodes)} nodes, {len(self.edges)} edges added or changed; "
            f"{len(self.removed_nodes)} nodes, {len(self.removed_edges)} edges removed"
        )


def _edge(pair: Pair, weight: float) -> dict[str, Any]:
    return {"source": pair[0], "target": pair[1], "weight": weight}


def _odd(note: Note) -> bool:
    """Whether an id made from one of ``note``'s names could equal a note's path (which ends in
    ``.md``): its title's or a placeholder's compared form ends in ``.md``."""
    if normalise_name(note.title).endswith(".md"):
        return True
    return any(key.endswith(".md") for key in placeholder_keys(note))


class IncrementalGraph:
    """The graph document of a set of notes, kept current by :meth:`update` (see the module
    docstring). ``nodes`` (id -> node) and ``edges`` ((source, target) -> weight) are the
    document as it stands; read them, never change them."""

    def __init__(self) -> None:
        self.notes: dict[str, Note] = {}
        self.nodes: dict[str, NodeDoc] = {}
        self.edges: dict[Pair, float] = {}
        self._odd: set[str] = set()  # paths of notes with a name that could collide
        self._exact = True  # the derived state below matches self.notes
        self._reset_derived()

    def _reset_derived(self) -> None:
        # names: key -> {path: best rank of that path's claims}; key -> owning path
        self._offers: dict[str, dict[str, int]] = {}
        self._owner: dict[str, str] = {}
        self._claims: dict[str, set[str]] = {}  # path -> keys it claims
        self._titled: dict[str, set[str]] = {}  # title key -> paths with that title
        self._id: dict[str, str] = {}  # path -> id
        self._page: dict[str, str] = {}  # id -> path
        # links: path -> keys looked up; key -> paths that looked it up
        self._deps: dict[str, set[str]] = {}
        self._readers: dict[str, set[str]] = {}
        self._out: dict[str, Counter[Pair]] = {}  # path -> links per pair it adds
        self._spelt: dict[str, dict[str, str]] = {}  # path -> placeholder id -> its spelling
        self._counts: Counter[Pair] = Counter()
        self._refs: dict[str, dict[str, str]] = {}  # placeholder id -> path -> spelling

    # -- reading ------------------------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        """The document, as build_graph of the notes held gives it."""
        return {
            "nodes": [self.nodes[node_id] for node_id in sorted(self.nodes)],
            "edges": [_edge(pair, w) for pair, w in sorted(self.edges.items())],
        }

    # -- changing -----------------------------------------------------------------------------

    def update(self, changed: Mapping[str, Note | None]) -> GraphDelta:
        """Apply ``changed`` (path -> the note now at that path, or None: gone; each note's
        ``path`` must be its key) and return what changed in the document."""
        for path, note in changed.items():
            if note is not None and note.path != path:
                raise ValueError(f"note {note.path!r} given as {path!r}")
        if not changed:
            return GraphDelta()
        old_notes = {path: self.notes.get(path) for path in changed}
        for path, note in changed.items():
            if note is None:
                self.notes.pop(path, None)
                self._odd.discard(path)
            else:
                self.notes[path] = note
                if _odd(note):
                    self._odd.add(path)
                else:
                    self._odd.discard(path)
        if self._odd:  # ids may collide: build_graph numbers them (rare; see the docstring)
            self._exact = False
            doc = build_graph(self.notes.values())
            nodes = {str(n["id"]): n for n in doc["nodes"]}
            edges = {(str(e["source"]), str(e["target"])): float(e["weight"]) for e in doc["edges"]}
            return self._replace_output(nodes, edges)
        if not self._exact:  # back from the above: derive everything again
            self._exact = True
            self._reset_derived()
            touched_ids: set[str] = set()
            touched_pairs: set[Pair] = set()
            self._apply(dict.fromkeys(self.notes), touched_ids, touched_pairs)
            nodes = {i: n for i in touched_ids if (n := self._node(i)) is not None}
            edges = {p: w for p in touched_pairs if (w := self._weight(p)) is not None}
            return self._replace_output(nodes, edges)
        touched_ids = set()
        touched_pairs = set()
        self._apply(old_notes, touched_ids, touched_pairs)
        return self._emit(touched_ids, touched_pairs)

    def _apply(
        self, old_notes: Mapping[str, Note | None], touched_ids: set[str], touched_pairs: set[Pair]
    ) -> None:
        """Bring the derived state in line with ``self.notes`` for the paths of ``old_notes``
        (path -> the note there before), recording the ids and pairs whose output may differ."""
        changed = set(old_notes)
        # 1. names: what each changed note claims now; owners before and after
        new_claims: dict[str, dict[str, int]] = {}
        for path in changed:
            note = self.notes.get(path)
            claims: dict[str, int] = {}
            if note is not None:
                for key, rank in note_names(note):
                    if rank < claims.get(key, rank + 1):
                        claims[key] = rank
            new_claims[path] = claims
        keys = {k for path in changed for k in self._claims.get(path, ())}
        keys.update(k for claims in new_claims.values() for k in claims)
        owners_before = {k: self._owner.get(k) for k in keys}
        for path in changed:
            for key in self._claims.pop(path, ()):
                held = self._offers[key]
                del held[path]
                if not held:
                    del self._offers[key]
            old = old_notes[path]
            if old is not None:
                self._titled_discard(normalise_name(old.title), path)
            note = self.notes.get(path)
            claims = new_claims[path]
            if note is not None:
                self._claims[path] = set(claims)
                for key, rank in claims.items():
                    self._offers.setdefault(key, {})[path] = rank
                self._titled.setdefault(normalise_name(note.title), set()).add(path)
        moved: set[str] = set()  # keys with another owner now
        for key in keys:
            owner = self._best(self._offers.get(key))
            if owner is None:
                self._owner.pop(key, None)
            else:
                self._owner[key] = owner
            if owner != owners_before[key]:
                moved.add(key)
        # 2. ids: of the changed notes and of the notes whose title got another owner
        recheck = set(changed)
        for key in moved:
            recheck.update(self._titled.get(key, ()))
        renamed: set[str] = set()  # paths whose id changed
        for path in recheck:
            old_id = self._id.get(path)
            new_id = self._note_id(path) if path in self.notes else None
            if old_id is not None:
                touched_ids.add(old_id)
            if new_id is not None:
                touched_ids.add(new_id)
            if old_id == new_id:
                continue
            renamed.add(path)
            if old_id is not None and self._page.get(old_id) == path:
                del self._page[old_id]
            if new_id is None:
                del self._id[path]
            else:
                self._id[path] = new_id
                self._page[new_id] = path
        # 3. links: the changed and renamed notes, and whoever looked up a name that now leads
        # elsewhere (another owner, or an owner with another id)
        stale = set(moved)
        for path in renamed:
            stale.update(k for k in self._claims.get(path, ()) if self._owner.get(k) == path)
        redo = changed | renamed
        for key in stale:
            redo.update(self._readers.get(key, ()))
        for path in redo:
            self._retract(path, touched_ids, touched_pairs)
        for path in redo:
            if path in self.notes:
                self._resolve(path, touched_ids, touched_pairs)

    @staticmethod
    def _best(offers: dict[str, int] | None) -> str | None:
        """The path that owns a name: best rank, then shortest path, then first in order."""
        if not offers:
            return None
        return min(offers, key=lambda p: (offers[p], len(p), p))

    def _note_id(self, path: str) -> str:
        key = normalise_name(self.notes[path].title)
        if key and self._owner.get(key) == path:
            return ID_PREFIX + key
        # another note answers to this title (two "index.md"): named by its path
        return ID_PREFIX + path

    def _titled_discard(self, key: str, path: str) -> None:
        paths = self._titled.get(key)
        if paths is not None:
            paths.discard(path)
            if not paths:
                del self._titled[key]

    def _retract(self, path: str, touched_ids: set[str], touched_pairs: set[Pair]) -> None:
        for key in self._deps.pop(path, ()):
            readers = self._readers[key]
            readers.discard(path)
            if not readers:
                del self._readers[key]
        out = self._out.pop(path, None)
        if out:
            self._counts.subtract(out)
            for pair in out:
                if self._counts[pair] <= 0:
                    del self._counts[pair]
            touched_pairs.update(out)
        for node_id in self._spelt.pop(path, {}):
            refs = self._refs[node_id]
            del refs[path]
            if not refs:
                del self._refs[node_id]
            touched_ids.add(node_id)

    def _resolve(self, path: str, touched_ids: set[str], touched_pairs: set[Pair]) -> None:
        note = self.notes[path]
        source = self._id[path]
        deps: set[str] = set()

        def lookup(key: str) -> str | None:
            deps.add(key)
            owner = self._owner.get(key)
            return self._id[owner] if owner is not None else None

        out: Counter[Pair] = Counter()
        spelt: dict[str, str] = {}
        for target, label in note_targets(note, lookup):
            if label is not None:
                spelt.setdefault(target, label)
            if target != source:
                out[(source, target) if source < target else (target, source)] += 1
        self._deps[path] = deps
        for key in deps:
            self._readers.setdefault(key, set()).add(path)
        if out:
            self._out[path] = out
            self._counts.update(out)
            touched_pairs.update(out)
        if spelt:
            self._spelt[path] = spelt
            for node_id, label in spelt.items():
                self._refs.setdefault(node_id, {})[path] = label
            touched_ids.update(spelt)

    # -- output -------------------------------------------------------------------------------

    def _node(self, node_id: str) -> NodeDoc | None:
        path = self._page.get(node_id)
        if path is not None:
            note = self.notes[path]
            return {
                "id": node_id,
                "label": note.title,
                "group": "note",
                "metadata": {
                    "path": note.path,
                    "aliases": list(note.aliases),
                    "tags": list(note.tags),
                },
            }
        refs = self._refs.get(node_id)
        if refs:  # spelt as the first note in path order spells it
            return {
                "id": node_id,
                "label": refs[min(refs)],
                "group": "placeholder",
                "metadata": {"placeholder": True},
            }
        return None

    def _weight(self, pair: Pair) -> float | None:
        count = self._counts.get(pair, 0)
        return float(min(count, MAX_EDGE_WEIGHT)) if count > 0 else None

    def _emit(self, touched_ids: Iterable[str], touched_pairs: Iterable[Pair]) -> GraphDelta:
        nodes: list[NodeDoc] = []
        removed_nodes: list[str] = []
        for node_id in sorted(touched_ids):
            node = self._node(node_id)
            if node is None:
                if self.nodes.pop(node_id, None) is not None:
                    removed_nodes.append(node_id)
            elif self.nodes.get(node_id) != node:
                self.nodes[node_id] = node
                nodes.append(node)
        edges: list[dict[str, Any]] = []
        removed_edges: list[Pair] = []
        for pair in sorted(touched_pairs):
            weight = self._weight(pair)
            if weight is None:
                if self.edges.pop(pair, None) is not None:
                    removed_edges.append(pair)
            elif self.edges.get(pair) != weight:
                self.edges[pair] = weight
                edges.append(_edge(pair, weight))
        return GraphDelta(tuple(nodes), tuple(edges), tuple(removed_nodes), tuple(removed_edges))

    def _replace_output(self, nodes: dict[str, NodeDoc], edges: dict[Pair, float]) -> GraphDelta:
        """Make ``nodes`` and ``edges`` the output and return how they differ from before."""
        delta = GraphDelta(
            tuple(nodes[i] for i in sorted(nodes) if self.nodes.get(i) != nodes[i]),
            tuple(_edge(p, w) for p, w in sorted(edges.items()) if self.edges.get(p) != w),
            tuple(sorted(i for i in self.nodes if i not in nodes)),
            tuple(sorted(p for p in self.edges if p not in edges)),
        )
        self.nodes, self.edges = nodes, edges
        return delta
