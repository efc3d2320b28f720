"""MCP agents into the graph store: one agent node per (endpoint, agent id), real edges only.

Node ids come from the store and are stable: an agent keeps its node while its server
is unreachable (marked ``live: false``, never shown as working), and only an agent that the
server itself stops listing is removed. Edges come from what the server reported: an agent to
its swarm's hub node, and parent/coordinator links named in its metadata. Nothing is invented:
a field the server did not report stays ``None``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from visionflow.errors import GraphError
from visionflow.graph.store import GraphStore, NodeKind
from visionflow.mcp.claudeflow import Agent

# Metadata keys that name another agent this one reports to (claude-flow and compatible).
_PARENT_KEYS = ("parentId", "parent_id", "parent", "coordinatorId", "coordinator_id")
# Metadata keys that name the task an agent is working on (a reported assignment).
_TASK_KEYS = ("currentTask", "current_task", "taskId", "task_id", "assignedTask")


def agent_key(endpoint: str, agent_id: str) -> str:
    return f"{endpoint}/agent/{agent_id}"


def hub_key(endpoint: str, kind: str, ident: str) -> str:
    """A swarm's or a task's hub node: ``kind`` is "swarm" or "task"."""
    return f"{endpoint}/{kind}/{ident}"


def agent_json(endpoint: str, agent: Agent, node_id: int | None, live: bool) -> dict[str, Any]:
    """The agent object of ``GET /api/bots/data`` and of the ``agents`` message."""
    return {
        "id": node_id,
        "endpoint": endpoint,
        "agent_id": agent.id,
        "name": agent.name,
        "type": agent.type,
        "kind": agent.kind,
        "colour": agent.colour,
        "status": agent.status,
        "health": agent.health,
        "task_count": agent.task_count,
        "capabilities": None if agent.capabilities is None else list(agent.capabilities),
        "swarm_id": agent.swarm_id,
        "created_at": agent.created_at,
        "last_active": agent.last_active,
        "domain": agent.domain,
        "metadata": agent.metadata,
        "live": live,
    }


def _relations(
    endpoint: str, agents: dict[str, Agent]
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """Hub nodes and edges (as store keys) from what the agents report, nothing else.

    A swarm's or a task's hub exists while an agent names it; edges go from an agent to its
    hubs and to the agent it reports to.
    """
    hub_refs: set[tuple[str, str]] = set()
    edges: set[tuple[str, str]] = set()
    for agent in agents.values():
        refs = {("swarm", agent.swarm_id)} if agent.swarm_id else set()
        for key in _TASK_KEYS:
            task = agent.metadata.get(key)
            if isinstance(task, str | int) and not isinstance(task, bool) and str(task):
                refs.add(("task", str(task)))
        hub_refs |= refs
        me = agent_key(endpoint, agent.id)
        edges.update((me, hub_key(endpoint, kind, ident)) for kind, ident in refs)
        for key in _PARENT_KEYS:
            parent = agent.metadata.get(key)
            if isinstance(parent, str) and parent in agents and parent != agent.id:
                edges.add((me, agent_key(endpoint, parent)))
    return hub_refs, edges


class AgentsDelta(NamedTuple):
    """What one report changed for viewers: the ``agents_changed`` message's fields."""

    endpoint: str
    revision: int  # the endpoint's agents revision after this change (one more than before)
    live: bool
    changed: list[dict[str, Any]]  # agent objects added or changed (all of them when live flips)
    removed: list[str]  # agent ids no longer listed
    total: int  # the endpoint's agents after the change


class AgentGraph:
    """Keeps the store's agent nodes in step with what each endpoint reports.

    ``update`` may run in a worker thread (one at a time) while readers on the event loop call
    ``agents_json``: what readers see is replaced whole (copy on write), never changed in place.
    """

    def __init__(self, store: GraphStore) -> None:
        self.store = store
        self._agents: dict[str, dict[str, Agent]] = {}  # endpoint -> agent id -> agent
        self._live: dict[str, bool] = {}
        self._revisions: dict[str, int] = {}  # endpoint -> agents revision (agents_changed)
        # endpoint -> (hub kind, id) -> raw node id
        self._hubs: dict[str, dict[tuple[str, str], int]] = {}
        self._edges: dict[str, set[tuple[int, int]]] = {}  # endpoint -> edges we made
        self._updating = threading.Lock()

    def update(
        self,
        endpoint: str,
        agents: list[Agent],
        live: bool,
        *,
        wait: float | None = 0.0,
        then: Callable[[], object] | None = None,
    ) -> AgentsDelta | None:
        """Apply one poll (``live``) or mark the endpoint unreachable (``live=False``, agents
        ignored). Returns what a viewer sees change, or None when nothing did.

        ``then`` runs after the update under the same hold of the store's lock, so the physics
        thread never sees the new nodes without what it adds (the service restores agents'
        saved places there).

        All or nothing: GraphError ``graph_full`` when the nodes or edges it would add do not
        fit under the store's limits, and ``graph_busy`` when the store's lock stays taken for
        ``wait`` seconds (an import or an export holds it for seconds; on the event loop, which
        must not wait for it, ``wait`` is 0; None waits as long as it takes), with nothing
        changed either way (the next poll tries again).
        """
        with self._updating:
            if wait is None:
                acquired = self.store.lock.acquire()
            elif wait > 0:
                acquired = self.store.lock.acquire(timeout=wait)
            else:
                acquired = self.store.lock.acquire(blocking=False)
            if not acquired:
                raise GraphError(
                    "graph_busy", "the graph is being changed; applied at the next poll"
                )
            try:
                delta = self._update(endpoint, agents, live)
                if then is not None:
                    then()
                return delta
            finally:
                self.store.lock.release()

    def _update(self, endpoint: str, agents: list[Agent], live: bool) -> AgentsDelta | None:
        known = self._agents.get(endpoint, {})
        was_live = self._live.get(endpoint)
        if not live:
            if was_live is False:
                return None
            for agent in known.values():
                self._upsert(endpoint, agent, live=False)
            self._live = {**self._live, endpoint: False}
            if not known:
                return None
            return self._delta(endpoint, known, list(known.values()), [], live=False)
        current = {a.id: a for a in agents}
        hub_refs, edge_keys = _relations(endpoint, current)
        self._check_room(endpoint, current, hub_refs, edge_keys)
        removed = [agent_id for agent_id in known if agent_id not in current]
        for agent_id in removed:
            node = self.store.node_by_key(NodeKind.AGENT, agent_key(endpoint, agent_id))
            if node is not None:
                self.store.remove_node(node.id)
        changed = [
            agent
            for agent in current.values()
            if was_live is not True or known.get(agent.id) != agent
        ]
        for agent in changed:
            self._upsert(endpoint, agent, live=True)
        self._agents = {**self._agents, endpoint: current}
        self._live = {**self._live, endpoint: True}
        self._link(endpoint, hub_refs, edge_keys)
        if not changed and not removed and was_live is True:
            return None
        return self._delta(endpoint, current, changed, removed, live=True)

    def _delta(
        self,
        endpoint: str,
        agents: dict[str, Agent],
        changed: list[Agent],
        removed: list[str],
        *,
        live: bool,
    ) -> AgentsDelta:
        revision = self._revisions.get(endpoint, 0) + 1
        self._revisions = {**self._revisions, endpoint: revision}
        by_key = self.store.node_by_key
        objects = []
        for agent in changed:
            node = by_key(NodeKind.AGENT, agent_key(endpoint, agent.id))
            objects.append(
                agent_json(endpoint, agent, None if node is None else node.flagged_id, live)
            )
        return AgentsDelta(endpoint, revision, live, objects, removed, len(agents))

    def _check_room(
        self,
        endpoint: str,
        current: dict[str, Agent],
        hub_refs: set[tuple[str, str]],
        edge_keys: set[tuple[str, str]],
    ) -> None:
        """Raise GraphError before any change when the update would not fit the store."""
        store = self.store
        hubs = self._hubs.get(endpoint, {})
        gone = sum(
            1
            for agent_id in self._agents.get(endpoint, {}).keys() - current.keys()
            if store.node_by_key(NodeKind.AGENT, agent_key(endpoint, agent_id)) is not None
        ) + len(hubs.keys() - hub_refs)
        new_nodes = len(hub_refs - hubs.keys()) + sum(
            1 for a in current if store.node_by_key(NodeKind.AGENT, agent_key(endpoint, a)) is None
        )
        if len(store) - gone + new_nodes > store.max_nodes:
            raise GraphError(
                "graph_full",
                f"{new_nodes} agent node(s) do not fit: the graph holds {len(store)} of "
                f"physics.max_nodes = {store.max_nodes}",
                "",
            )
        made = self._edges.get(endpoint, set())
        new_edges = len(edge_keys - {self._key_pair(s, t) for s, t in made})
        if store.edge_count + new_edges > store.max_edges:
            raise GraphError(
                "graph_full",
                f"{new_edges} agent edge(s) do not fit: the graph holds {store.edge_count} of "
                f"physics.max_edges = {store.max_edges}",
                "",
            )

    def _key_pair(self, source: int, target: int) -> tuple[str, str] | None:
        s, t = self.store.node(source), self.store.node(target)
        return None if s is None or t is None else (s.key.external_id, t.key.external_id)

    def _upsert(self, endpoint: str, agent: Agent, *, live: bool) -> int:
        label = agent.name or agent.type or agent.id
        meta = agent_json(endpoint, agent, None, live)
        del meta["id"]
        return self.store.upsert_node(
            NodeKind.AGENT,
            agent_key(endpoint, agent.id),
            label=label,
            group=agent.kind,
            metadata=meta,
        )

    def _link(
        self, endpoint: str, hub_refs: set[tuple[str, str]], edge_keys: set[tuple[str, str]]
    ) -> None:
        """Make the store's hubs and edges for this endpoint those of ``_relations``.

        The hubs and edges this class made are remembered per endpoint, so a poll costs
        O(agents), not a scan of a store that may hold a large knowledge graph.
        """
        store = self.store
        hubs = self._hubs.setdefault(endpoint, {})
        for hub in set(hubs) - hub_refs:
            raw = hubs.pop(hub)
            if store.node(raw) is not None:
                store.remove_node(raw)
        for kind, ident in hub_refs - set(hubs):
            hubs[(kind, ident)] = store.upsert_node(
                NodeKind.AGENT,
                hub_key(endpoint, kind, ident),
                label=f"{kind} {ident}",
                group=kind,
                metadata={"endpoint": endpoint, "hub": kind, f"{kind}_id": ident},
            )
        wanted: set[tuple[int, int]] = set()
        for source_key, target_key in edge_keys:
            source = store.node_by_key(NodeKind.AGENT, source_key)
            target = store.node_by_key(NodeKind.AGENT, target_key)
            if source is not None and target is not None:
                wanted.add((source.id, target.id))
        made = self._edges.setdefault(endpoint, set())
        for source_id, target_id in made - wanted:
            # An edge goes with its node: only edges between surviving nodes need removing.
            if store.node(source_id) is not None and store.node(target_id) is not None:
                store.remove_edge(source_id, target_id)
        for source_id, target_id in wanted - made:
            store.set_edge(source_id, target_id, 1.0)
        self._edges[endpoint] = wanted

    def revisions(self) -> dict[str, int]:
        """Each endpoint's agents revision (the last ``agents_changed`` it sent)."""
        return self._revisions

    def agents_json(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        out = []
        lives = self._live  # the views of one moment: update replaces them, never edits
        for ep, agents in self._agents.items():
            if endpoint is not None and ep != endpoint:
                continue
            live = lives.get(ep, False)
            for agent in agents.values():
                node = self.store.node_by_key(NodeKind.AGENT, agent_key(ep, agent.id))
                out.append(agent_json(ep, agent, None if node is None else node.flagged_id, live))
        return out

    def data_json(self) -> dict[str, Any]:
        """``GET /api/bots/data``: agents, swarm and task hub nodes, and the edges among them."""
        store = self.store
        with store.lock:
            hubs = []
            for endpoint, endpoint_hubs in self._hubs.items():
                for (kind, ident), raw in endpoint_hubs.items():
                    node = store.node(raw)
                    if node is not None:
                        hubs.append(
                            {
                                "id": node.flagged_id,
                                "endpoint": endpoint,
                                "kind": kind,
                                "hub_id": ident,
                            }
                        )
            edges = []
            for made in self._edges.values():
                for source, target in sorted(made):
                    s_node, t_node = store.node(source), store.node(target)
                    if s_node is not None and t_node is not None:
                        edges.append(
                            {
                                "source": s_node.flagged_id,
                                "target": t_node.flagged_id,
                                "weight": 1.0,
                            }
                        )
            return {
                "agents": self.agents_json(),
                "hubs": hubs,
                "edges": edges,
                "revisions": self.revisions(),
            }
