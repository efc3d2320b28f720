"""Viewers' drags as engine pins, each owned by the connection that made it.

The hub reads the engine's snapshots directly (``PhysicsEngine`` is its ``SnapshotSource``);
what it cannot do alone is remember who pinned what, so that a closed connection lets go of
its nodes and one viewer cannot release another's. That is this :class:`EnginePins`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from visionflow.physics.engine import PhysicsEngine
from visionflow.protocol.wire import ID_MASK


class EnginePins:
    """Implements the hub's ``PinSink`` over a PhysicsEngine's store."""

    def __init__(self, engine: PhysicsEngine) -> None:
        self.engine = engine
        self._owner_of: dict[int, int] = {}  # raw node id -> connection that pinned it

    def pin(self, node_ids: NDArray[np.uint32], positions: NDArray[np.float32], owner: int) -> None:
        """All or nothing: every id and position is checked before any node is pinned."""
        raw_ids = node_ids & np.uint32(ID_MASK)
        self.engine.store.pin_many(raw_ids, positions)
        for raw in raw_ids.tolist():
            self._owner_of[raw] = owner
        self.engine.wake()

    def release(self, node_ids: NDArray[np.uint32], owner: int) -> None:
        """Unpin the nodes of ``node_ids`` that ``owner`` pinned, with one store change."""
        raws = (node_ids & np.uint32(ID_MASK)).tolist()
        mine = [raw for raw in raws if self._owner_of.get(raw) == owner]
        for raw in mine:
            del self._owner_of[raw]
        if mine:
            self.engine.store.unpin_many(mine)
        self.engine.wake()

    def release_all(self, owner: int) -> None:
        mine = [raw for raw, who in self._owner_of.items() if who == owner]
        if mine:
            self.release(np.asarray(mine, np.uint32), owner)
