"""GraphChanges: every source's change ends the same way (positions, wake, viewers)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from visionflow.changes import GraphChanges
from visionflow.graph.agents import AgentGraph
from visionflow.graph.store import GraphStore, NodeKey, NodeKind
from visionflow.mcp.claudeflow import Agent
from visionflow.protocol.messages import AgentsChanged, GraphChanged, ServerMessage
from visionflow.state import PendingLayout


@dataclass
class FakeEngine:
    calls: list[str] = field(default_factory=list)

    def wake(self) -> None:
        self.calls.append("wake")

    def restart_warmup(self) -> None:
        self.calls.append("restart_warmup")


@dataclass
class FakeViewers:
    sent: list[ServerMessage] = field(default_factory=list)

    def publish(self, message: ServerMessage) -> None:
        self.sent.append(message)


def _changes() -> tuple[GraphChanges, GraphStore, FakeEngine, FakeViewers]:
    store = GraphStore()
    engine, viewers = FakeEngine(), FakeViewers()
    return GraphChanges(store, AgentGraph(store), engine, viewers), store, engine, viewers


@pytest.mark.anyio
async def test_agents_restore_saved_places_wake_the_engine_and_tell_viewers() -> None:
    changes, store, engine, viewers = _changes()
    saved = NodeKey(NodeKind.AGENT, "sim/agent/a1")
    gone = NodeKey(NodeKind.AGENT, "sim/agent/old")
    changes.pending = PendingLayout({saved: (1.0, 2.0, 3.0), gone: (4.0, 5.0, 6.0)})
    await changes.agents_reported("sim", [Agent(id="a1")], live=True)
    node = store.node_by_key(NodeKind.AGENT, "sim/agent/a1")
    assert node is not None
    d = store.sync()
    assert d.pos[d.index_of([node.id])].tolist() == [[1.0, 2.0, 3.0]]
    assert changes.carried() == {}  # "old" was not listed: gone for good
    assert engine.calls == ["wake"]
    assert [type(m) for m in viewers.sent] == [GraphChanged, AgentsChanged]
    # The same report again: nothing a viewer sees changed, nothing is said.
    await changes.agents_reported("sim", [Agent(id="a1")], live=True)
    assert engine.calls == ["wake"] and len(viewers.sent) == 2


def test_an_import_wakes_the_engine_and_announces_each_revision_once() -> None:
    changes, store, engine, viewers = _changes()
    store.import_document({"nodes": [{"id": "a"}]})
    changes.knowledge_changed(replaced=True)
    changes.knowledge_changed()  # same revision: not announced again
    assert engine.calls == ["restart_warmup", "wake", "wake"]
    assert viewers.sent == [GraphChanged(revision=store.revision)]
