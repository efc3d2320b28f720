"""EnginePins: viewers' drags become pins, all or nothing, owned by their connection."""

from __future__ import annotations

import numpy as np
import pytest

from visionflow.errors import GraphError
from visionflow.graph.store import GraphStore
from visionflow.physics.engine import PhysicsEngine
from visionflow.settings import PhysicsSettings
from visionflow.web.pins import EnginePins


def _pins() -> tuple[EnginePins, GraphStore, list[int]]:
    store = GraphStore()
    store.import_document({"nodes": [{"id": "a"}, {"id": "b"}]})
    ids = sorted(n.id for n in store.nodes())
    return EnginePins(PhysicsEngine(store, PhysicsSettings(backend="cpu"))), store, ids


@pytest.mark.parametrize(
    ("where", "bad"),
    [
        ([[1.0, 2.0, 3.0], [4e7, 0.0, 0.0]], "invalid_position"),  # finite float32, too far
        ([[1.0, 2.0, 3.0], [3e38, 0.0, 0.0]], "invalid_position"),
    ],
)
def test_a_drag_out_of_range_is_refused_whole(where: list[list[float]], bad: str) -> None:
    feed, store, ids = _pins()
    with pytest.raises(GraphError) as info:
        feed.pin(np.asarray(ids, np.uint32), np.asarray(where, np.float32), owner=1)
    assert info.value.code == bad and info.value.path == "records[1]"
    assert not any(n.pinned for n in store.nodes())


def test_pins_belong_to_their_connection() -> None:
    feed, store, ids = _pins()
    feed.pin(np.asarray(ids, np.uint32), np.asarray([[1, 2, 3], [4, 5, 6]], np.float32), owner=1)
    feed.release(np.asarray(ids[:1], np.uint32), owner=2)  # not its pin: ignored
    assert [n.pinned for n in store.nodes()] == [True, True]
    feed.release_all(owner=1)
    assert [n.pinned for n in store.nodes()] == [False, False]
    d = store.sync()
    assert d.pos.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_an_unknown_id_refuses_the_whole_drag() -> None:
    feed, store, ids = _pins()
    with pytest.raises(GraphError) as info:
        feed.pin(np.asarray([ids[0], 99], np.uint32), np.zeros((2, 3), np.float32), owner=1)
    assert (info.value.code, info.value.path) == ("unknown_node", "records[1]")
    assert not any(n.pinned for n in store.nodes())
