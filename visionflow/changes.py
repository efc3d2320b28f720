"""The one place where changes to the graph are handled, whatever their source.

A source edits the graph store (an MCP endpoint's agents through :class:`AgentGraph`, an import
or the saved graph through the store's document import, a notes vault through
:meth:`GraphChanges.load_notes` and :meth:`GraphChanges.update_notes`) and then reports here.
:class:`GraphChanges` does the rest, in one order for every source: saved positions go to the
nodes that just appeared, the physics engine is woken, and viewers are told (``graph_changed``
once per revision, ``agents_changed`` with what changed of an endpoint's agents).

The service owns it (it is built with the engine and the hub, before anything runs); request
handlers reach it through the context.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Protocol

import anyio

from visionflow import state
from visionflow.errors import GraphError
from visionflow.graph.agents import AgentGraph, AgentsDelta
from visionflow.graph.store import GraphStore, NodeKey, NodeKind
from visionflow.mcp.claudeflow import Agent
from visionflow.notes.build import ID_PREFIX
from visionflow.notes.incremental import GraphDelta
from visionflow.notes.live import LiveVault, VaultRead
from visionflow.protocol.messages import AgentsChanged, GraphChanged, ServerMessage

#: Seconds a poll's agents wait for the graph's lock (in a worker thread) before the poll is
#: left to the next one (graph_busy).
AGENTS_LOCK_WAIT_S = 1.0


class Viewers(Protocol):
    """Where control messages go (the hub)."""

    def publish(self, message: ServerMessage) -> None: ...


class Layout(Protocol):
    """What a graph change asks of the physics engine."""

    def wake(self) -> None: ...

    def restart_warmup(self) -> None: ...


class GraphChanges:
    """Applies what follows a change of the graph store; see the module docstring.

    Runs on the event loop, except :meth:`restore` (a worker thread, before any child starts)
    and the restore of agents' saved places (in the agents' update, a worker thread holding the
    store's lock).
    """

    def __init__(
        self, store: GraphStore, agents: AgentGraph, engine: Layout, viewers: Viewers
    ) -> None:
        self.store = store
        self.agents = agents
        self.engine = engine
        self.viewers = viewers
        # Saved positions still waiting for their node: empty until the start-up restore.
        self.pending = state.PendingLayout()
        self._announced_revision = -1
        # whether the store holds the vault's document as last read (else the next read is
        # applied whole, not as a delta)
        self._notes_in_store = False
        self._notes_revision = -1  # the store's revision right after the notes were applied
        # the vault whose pages the graph shows (GET /api/notes reads there), and whether it is
        # the example that ships with the package (it makes way for the first import)
        self.notes_root: Path | None = None
        self.example_shown = False

    # -- sources ------------------------------------------------------------------------------

    def restore(self, state_dir: str, endpoints: Iterable[str]) -> None:
        """Blocking (a worker thread), at start-up: saved ids, the saved graph, saved positions.

        ``endpoints`` are the configured MCP endpoints, whose agents may still come back.
        """
        self.pending = state.restore(self.store, state_dir, endpoints)

    async def agents_reported(self, endpoint: str, agents: list[Agent], live: bool) -> None:
        """An endpoint watcher's report (``live=False``: its server is unreachable).

        The update runs in a worker thread: it is O(agents) of Python (10k agents took
        130-200 ms) and may wait for the graph's lock, which an import holds for seconds. A
        poll waits at most ``AGENTS_LOCK_WAIT_S`` for it; GraphError ``graph_full`` or
        ``graph_busy`` then propagates with nothing changed (the watcher retries at its next
        poll). Unreachable is applied however long it takes, as no next poll would.
        """
        wait = AGENTS_LOCK_WAIT_S if live else None
        restore = partial(self._restore_agents, endpoint, live)
        update = partial(self.agents.update, endpoint, agents, live, wait=wait, then=restore)
        self._agents_applied(await anyio.to_thread.run_sync(update))

    def _restore_agents(self, endpoint: str, live: bool) -> None:
        """Agents back after a restart get their saved places, in the same hold of the store's
        lock that added them: applied later (the lock being busy), the physics thread would
        first place and move them elsewhere, and a viewer would see them jump."""
        self.pending.apply(self.store)
        if live:
            self.pending.endpoint_answered(endpoint)

    def _agents_applied(self, delta: AgentsDelta | None) -> None:
        if delta is None:
            return
        self.engine.wake()
        self._announce_graph_changed()
        # only what changed: a list of thousands of agents is not resent for one status change
        self.viewers.publish(AgentsChanged(*delta))

    def load_notes(self, vault: LiveVault) -> VaultRead:
        """Blocking (a worker thread): read the whole vault and make the graph's notes exactly
        its pages (``note:`` ids; other knowledge nodes and agents stay). Then call
        :meth:`knowledge_changed` on the event loop. NoteError when the vault cannot be read;
        GraphError when the pages do not fit ``physics.max_nodes``/``max_edges``."""
        return self._apply_notes(vault, vault.read_all())

    def update_notes(self, vault: LiveVault, paths: Iterable[str] | None) -> VaultRead | None:
        """Blocking (a worker thread): read again what is at ``paths`` (absolute, as a watcher
        saw them change; None: the whole vault) and apply the difference to the graph as one
        change; None when nothing the graph or the vault's problems hold changed. Then call
        :meth:`knowledge_changed` on the event loop if the delta is not empty. Only what changed
        is touched, so only the nodes around it are reheated, and every other note keeps its
        id and place. Errors as :meth:`load_notes` (a GraphError leaves the graph as it was and
        the next read is applied whole)."""
        read = vault.read_all() if paths is None else vault.update(paths)
        return None if read is None else self._apply_notes(vault, read)

    def _apply_notes(self, vault: LiveVault, read: VaultRead) -> VaultRead:
        store = self.store
        with store.lock:  # one change: the physics thread syncs before or after all of it
            in_store = self._notes_in_store and (
                store.revision == self._notes_revision  # nothing else changed the graph since
                or self._holds_unchanged(vault, read.delta)
            )
            self._notes_in_store = False
            if in_store:
                _apply_delta(store, read.delta)
            else:  # the first read, after a failure, or when an import replaced the notes
                store.import_document(vault.graph.document(), "replace", scope=ID_PREFIX)
            self._notes_in_store = True
            self._notes_revision = store.revision
        return read

    def holds_imported_knowledge(self) -> bool:
        """Blocking: whether the graph has knowledge nodes that no notes vault made (an import,
        now or restored), which the example vault must not be shown beside."""
        kind = NodeKind.KNOWLEDGE
        return any(
            key.kind is kind and not key.external_id.startswith(ID_PREFIX)
            for key in self.store.keys().values()
        )

    def drop_notes(self) -> int:
        """Blocking (a worker thread): remove every note (``note:`` ids) from the graph, when no
        vault is read this run or the example vault makes way for an import; returns how many
        nodes went. Then call :meth:`knowledge_changed` on the event loop if any did."""
        store = self.store
        with store.lock:
            result = store.import_document({"nodes": [], "edges": []}, "replace", scope=ID_PREFIX)
            self._notes_in_store = False
        return result.removed

    def drop_example(self) -> int:
        """Blocking (a worker thread, one import at a time): after an import, the example
        vault's notes go (a user's own graph is not shown mixed with ours); 0 when it is not
        shown."""
        if not self.example_shown:
            return 0
        self.example_shown = False
        self.notes_root = None
        return self.drop_notes()

    def _holds_unchanged(self, vault: LiveVault, delta: GraphDelta) -> bool:
        """Whether the store holds every node of the vault's graph that ``delta`` does not
        add (an import with ``mode=replace`` may have removed them)."""
        added = {str(node["id"]) for node in delta.nodes}
        store = self.store
        kind = NodeKind.KNOWLEDGE
        return all(
            node_id in added or store.node_by_key(kind, node_id) is not None
            for node_id in vault.graph.nodes
        )

    def knowledge_changed(self, *, replaced: bool = False) -> None:
        """Knowledge nodes were added, changed or removed (an import; ``replaced``: the whole
        graph was replaced, so the layout ramps its forces up again from zero)."""
        self.pending.apply(self.store, wait=False)
        if replaced:
            self.engine.restart_warmup()
        self.engine.wake()
        self._announce_graph_changed()

    # -- for the layout saver -----------------------------------------------------------------

    def carried(self) -> dict[NodeKey, tuple[float, float, float]]:
        """Saved positions of nodes not back yet, for the layout saver to write back."""
        return self.pending.carried()

    # -- viewers ------------------------------------------------------------------------------

    def _announce_graph_changed(self) -> None:
        """Tell viewers the topology changed (once per revision)."""
        revision = self.store.revision
        if revision == self._announced_revision:
            return
        self._announced_revision = revision
        self.viewers.publish(GraphChanged(revision=revision))


def _apply_delta(store: GraphStore, delta: GraphDelta) -> None:
    """Apply a notes graph's delta to ``store`` (its lock held): nodes and edges added or
    changed in one merge (which refuses a graph that would be too big before it changes
    anything), then the edges and nodes removed."""
    if delta.nodes or delta.edges:
        doc = {"nodes": list(delta.nodes), "edges": list(delta.edges)}
        store.import_document(doc, "merge", scope=ID_PREFIX)
    kind = NodeKind.KNOWLEDGE
    removed = set(delta.removed_nodes)
    for source, target in delta.removed_edges:
        if source in removed or target in removed:
            continue  # goes with its node
        s = store.node_by_key(kind, source)
        t = store.node_by_key(kind, target)
        if s is not None and t is not None:
            with contextlib.suppress(GraphError):  # unknown_edge: someone removed it already
                store.remove_edge(s.id, t.id)
    for node_id in delta.removed_nodes:
        node = store.node_by_key(kind, node_id)
        if node is not None:
            store.remove_node(node.id)
