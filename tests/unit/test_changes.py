"""GraphChanges: every source's change ends the same way (positions, wake, viewers)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

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


@pytest.mark.anyio
async def test_an_agent_back_has_its_saved_place_even_when_the_lock_is_taken_at_once() -> None:
    # The physics thread may take the store's lock the moment the update lets it go: the
    # saved place must already be queued with the new node, or the engine places the agent
    # elsewhere first and a viewer sees it jump at the next poll.
    changes, store, _, _ = _changes()
    saved = NodeKey(NodeKind.AGENT, "sim/agent/a1")
    changes.pending = PendingLayout({saved: (1.0, 2.0, 3.0)})
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.lock:
            taken.set()
            release.wait(30)

    real = changes.agents.update

    def update_then_contend(*args: Any, **kwargs: Any) -> Any:
        delta = real(*args, **kwargs)
        threading.Thread(target=hold, daemon=True).start()
        assert taken.wait(30)  # another thread holds the lock as the update returns
        return delta

    changes.agents.update = update_then_contend  # type: ignore[method-assign]
    try:
        await changes.agents_reported("sim", [Agent(id="a1")], live=True)
    finally:
        release.set()
    node = store.node_by_key(NodeKind.AGENT, "sim/agent/a1")
    assert node is not None
    d = store.sync()  # what the physics thread sees first
    assert d.pos[d.index_of([node.id])].tolist() == [[1.0, 2.0, 3.0]]
    assert changes.carried() == {}


def test_an_import_wakes_the_engine_and_announces_each_revision_once() -> None:
    changes, store, engine, viewers = _changes()
    store.import_document({"nodes": [{"id": "a"}]})
    changes.knowledge_changed(replaced=True)
    changes.knowledge_changed()  # same revision: not announced again
    assert engine.calls == ["restart_warmup", "wake", "wake"]
    assert viewers.sent == [GraphChanged(revision=store.revision)]
