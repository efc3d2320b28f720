"""What survives a restart: the imported knowledge graph and the layout, under ``state.dir``.

The graph is saved (atomically) after every import (``state/graphfile.py`` holds its format and
versions), the layout by the :class:`LayoutSaver` (``state/layout.py``, which also holds the
layout file format). ``state/backup.py`` makes one backup file of all of it and restores one.
At start (``restore``) the layout file is read first: the node ids, id counter and revision it
keeps go to the store, so the graph loaded next and agents that come back later get their old
ids. Then the saved positions are applied to the nodes that exist; positions of nodes that are
not back yet (agents of a server that has not answered) are kept and applied when those nodes
appear. A corrupt or unreadable file is reported and ignored, never fatal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from loguru import logger

from visionflow.errors import GraphError
from visionflow.fileio import STATE_FILE_MAX, read_bounded, remove_orphans, write_atomic
from visionflow.graph.store import GraphStore, NodeKey, NodeKind
from visionflow.state.graphfile import GRAPH_FILE, decode_graph, encode_graph
from visionflow.state.layout import LayoutSaver, layout_path, load_layout

__all__ = ["LayoutSaver", "PendingLayout", "load_graph", "restore", "save_graph"]

log = logger.bind(subsystem="state")


def graph_path(state_dir: str) -> Path:
    return Path(state_dir) / GRAPH_FILE


def save_graph(store: GraphStore, state_dir: str) -> None:
    """Blocking: call from a worker thread."""
    exported = store.export({})  # no positions: they live in the layout file
    write_atomic(graph_path(state_dir), encode_graph(exported))


def load_graph(store: GraphStore, state_dir: str) -> str | None:
    """Blocking. Import the saved knowledge graph; returns an error description or None."""
    path = graph_path(state_dir)
    try:
        data = read_bounded(path, STATE_FILE_MAX)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    try:
        _version, doc = decode_graph(data)  # version 1 reads as it is; the next save writes 2
        result = store.import_document(doc, "replace")
    except (ValueError, GraphError) as exc:
        return f"ignoring {path}: {exc}"
    log.info(
        "restored {} knowledge node(s) and {} edge(s) from {}", result.added, result.edges, path
    )
    return None


class PendingLayout:
    """Saved positions not yet applied, keyed by stable node key (bounded by the file).

    Agents of a server that has not answered yet keep their saved positions, and the layout
    saver writes them back (``carried``), so a server that stays down for a whole run does not
    lose its agents' places. Entries that can no longer match are dropped: knowledge nodes
    missing after the start-up restore (deleted), agents of an endpoint no longer configured,
    and agents a server did not list once it answered.

    Changed only while holding the store's lock (``apply``, and ``endpoint_answered`` from
    the agents' update in a worker thread) or before the service runs (``keep_agents_of``);
    ``carried`` copies the dict in one step.
    """

    def __init__(self, positions: Mapping[NodeKey, tuple[float, float, float]] | None = None):
        # Empty until the start-up restore builds the real one (restore()).
        self._pending: dict[NodeKey, tuple[float, float, float]] = dict(positions or {})

    def __len__(self) -> int:
        return len(self._pending)

    def apply(self, store: GraphStore, *, wait: bool = True) -> int:
        """Queue the positions of pending nodes that now exist; returns how many.

        ``wait=False`` (the event loop): if the store's lock is taken, do nothing now; the
        next call (the next poll or import) applies them.
        """
        if not self._pending:
            return 0
        if not store.lock.acquire(blocking=wait):
            return 0
        try:
            found: dict[NodeKey, int] = {}
            for key in self._pending:
                node = store.node_by_key(key.kind, key.external_id)
                if node is not None:
                    found[key] = node.id
            if not found:
                return 0
            count = store.set_positions({raw: self._pending[k] for k, raw in found.items()})
            for key in found:
                del self._pending[key]
        finally:
            store.lock.release()
        return count

    def keep_agents_of(self, endpoints: Iterable[str]) -> None:
        """After the start-up restore: only agents of configured endpoints can still appear."""
        prefixes = tuple(f"{name}/" for name in endpoints)
        self._pending = {
            key: pos
            for key, pos in self._pending.items()
            if key.kind is NodeKind.AGENT and prefixes and key.external_id.startswith(prefixes)
        }

    def endpoint_answered(self, endpoint: str) -> None:
        """The endpoint listed its agents: those still pending are gone for good."""
        prefix = f"{endpoint}/"
        self._pending = {
            key: pos for key, pos in self._pending.items() if not key.external_id.startswith(prefix)
        }

    def carried(self) -> dict[NodeKey, tuple[float, float, float]]:
        """A copy of what is still pending, for the layout saver to write back."""
        return dict(self._pending)


def restore(store: GraphStore, state_dir: str, endpoints: Iterable[str] = ()) -> PendingLayout:
    """Blocking (a worker thread), at start-up: saved ids, the saved graph, saved positions.

    ``endpoints`` are the configured MCP endpoints, whose agents may still come back.
    """
    files, size = remove_orphans(Path(state_dir))
    if files:
        log.info("removed {} temp file(s) ({} bytes) left by an interrupted save", files, size)
    report = load_layout(layout_path(state_dir))
    pending = PendingLayout(report.positions)
    if report.error is not None:
        log.warning("layout not restored: {}", report.error)
    elif not report.missing:
        store.restore_ids(report.ids, report.next_id, report.revision)
    error = load_graph(store, state_dir)
    if error is not None:
        log.warning(error)
    restored = pending.apply(store)
    if restored:
        log.info("restored the positions of {} node(s)", restored)
    pending.keep_agents_of(endpoints)
    return pending
