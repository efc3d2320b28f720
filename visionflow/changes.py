"""The one place where changes to the graph are handled, whatever their source.

A source edits the graph store (an MCP endpoint's agents through :class:`AgentGraph`, an import
or the saved graph through the store's document import, a notes vault through
:meth:`GraphChanges.load_notes`) and then reports here. :class:`GraphChanges` does the rest, in
one order for every source: saved positions go to the nodes that just appeared, the physics
engine is woken, and viewers are told (``graph_changed`` once per revision, ``agents`` with the
endpoint's list).

The service owns it (it is built with the engine and the hub, before anything runs); request
handlers reach it through the context.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from visionflow import state
from visionflow.graph.agents import AgentGraph
from visionflow.graph.store import GraphStore, NodeKey
from visionflow.mcp.claudeflow import Agent
from visionflow.notes.build import ID_PREFIX, build_graph
from visionflow.notes.vault import Problem, scan_vault
from visionflow.protocol.messages import Agents, GraphChanged, ServerMessage


class Viewers(Protocol):
    """Where control messages go (the hub)."""

    def publish(self, message: ServerMessage) -> None: ...


class Layout(Protocol):
    """What a graph change asks of the physics engine."""

    def wake(self) -> None: ...

    def restart_warmup(self) -> None: ...


@dataclass(frozen=True, slots=True)
class VaultLoad:
    """What loading a notes vault gave: pages, graph nodes and edges made of them (placeholders
    included), the first problems (files skipped, and why) and how many there were."""

    notes: int
    nodes: int
    edges: int
    problems: tuple[Problem, ...]
    problem_count: int
    complete: bool
    seconds: float


class GraphChanges:
    """Applies what follows a change of the graph store; see the module docstring.

    Runs on the event loop, except :meth:`restore` (a worker thread, before any child starts).
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

    # -- sources ------------------------------------------------------------------------------

    def restore(self, state_dir: str, endpoints: Iterable[str]) -> None:
        """Blocking (a worker thread), at start-up: saved ids, the saved graph, saved positions.

        ``endpoints`` are the configured MCP endpoints, whose agents may still come back.
        """
        self.pending = state.restore(self.store, state_dir, endpoints)

    def agents_reported(self, endpoint: str, agents: list[Agent], live: bool) -> None:
        """An endpoint watcher's report (``live=False``: its server is unreachable).

        GraphError ``graph_full`` propagates with nothing changed (the watcher retries).
        """
        changed = self.agents.update(endpoint, agents, live)
        self.pending.apply(self.store)  # agents back after a restart get their old places
        if live:
            self.pending.endpoint_answered(endpoint)
        if not changed:
            return
        self.engine.wake()
        self._announce_graph_changed()
        self.viewers.publish(Agents(agents=self.agents.agents_json(endpoint)))

    def load_notes(self, root: str, *, max_file_bytes: int, max_notes: int) -> VaultLoad:
        """Blocking (a worker thread): read the vault at ``root`` and make the graph's notes
        exactly its pages (``note:`` ids; other knowledge nodes and agents stay). Then call
        :meth:`knowledge_changed` on the event loop. NoteError when ``root`` cannot be read;
        GraphError when the pages do not fit ``physics.max_nodes``/``max_edges``."""
        t0 = time.perf_counter()
        scan = scan_vault(Path(root), max_file_bytes=max_file_bytes, max_notes=max_notes)
        doc = build_graph(scan.notes)
        self.store.import_document(doc, "replace", scope=ID_PREFIX)
        return VaultLoad(
            notes=len(scan.notes),
            nodes=len(doc["nodes"]),
            edges=len(doc["edges"]),
            problems=scan.problems,
            problem_count=scan.problem_count,
            complete=scan.complete,
            seconds=time.perf_counter() - t0,
        )

    def knowledge_changed(self, *, replaced: bool = False) -> None:
        """Knowledge nodes were added, changed or removed (an import; ``replaced``: the whole
        graph was replaced, so the layout ramps its forces up again from zero)."""
        self.pending.apply(self.store)
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
