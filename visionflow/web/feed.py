"""The physics engine as the hub sees it: protocol snapshots and viewer pins.

The engine publishes its own snapshots (tick, flagged ids, float32 arrays, already scrubbed of
non-finite values); this adapter turns each into the protocol's validated, frozen
:class:`~visionflow.protocol.snapshot.Snapshot` once per tick, and routes viewers' drags to the
engine's pins, remembering which connection pinned what so a closed connection lets go.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from visionflow.physics.engine import PhysicsEngine
from visionflow.physics.engine import Snapshot as EngineSnapshot
from visionflow.protocol.snapshot import Snapshot
from visionflow.protocol.wire import ID_MASK


class EngineFeed:
    """Implements the hub's ``SnapshotSource`` and ``PinSink`` over a PhysicsEngine."""

    def __init__(self, engine: PhysicsEngine) -> None:
        self.engine = engine
        self._converted: tuple[EngineSnapshot, Snapshot] | None = None
        self._owner_of: dict[int, int] = {}  # raw node id -> connection that pinned it

    def _convert(self, snap: EngineSnapshot) -> Snapshot:
        cached = self._converted
        if cached is not None and cached[0] is snap:
            return cached[1]
        converted = Snapshot.create(snap.tick, snap.ids, snap.positions, snap.velocities)
        self._converted = (snap, converted)
        return converted

    @property
    def latest(self) -> Snapshot | None:
        snap = self.engine.latest
        return None if snap is None else self._convert(snap)

    @property
    def settled(self) -> bool:
        return self.engine.settled

    async def wait_snapshot(self, after: int) -> Snapshot:
        return self._convert(await self.engine.wait_snapshot(after))

    def refresh(self) -> None:
        self.engine.wake()  # one step at least, so a new tick

    # -- pins ---------------------------------------------------------------------------------

    def pin(self, node_ids: NDArray[np.uint32], positions: NDArray[np.float32], owner: int) -> None:
        """All or nothing: every id and position is checked before any node is pinned."""
        raw_ids = node_ids & np.uint32(ID_MASK)
        self.engine.store.pin_many(raw_ids, positions)
        for raw in raw_ids.tolist():
            self._owner_of[raw] = owner
        self.engine.wake()

    def release(self, node_ids: NDArray[np.uint32], owner: int) -> None:
        store = self.engine.store
        with store.lock:
            for node_id in node_ids:
                raw = int(node_id) & ID_MASK
                if self._owner_of.get(raw) == owner:
                    del self._owner_of[raw]
                    if store.node(raw) is not None:
                        store.unpin(raw)
        self.engine.wake()

    def release_all(self, owner: int) -> None:
        mine = [raw for raw, who in self._owner_of.items() if who == owner]
        if mine:
            self.release(np.asarray(mine, np.uint32), owner)
