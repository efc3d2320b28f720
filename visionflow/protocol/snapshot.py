"""An immutable position snapshot and the subscription filters that select from it.

The physics engine publishes one :class:`Snapshot` per tick, and the hub, the layout saver and
the HTTP handlers read that very object; everything the protocol layer derives from it (filtered
node sets, baselines) keeps references to its arrays instead of copying them, which is why they
are made read-only here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from visionflow.errors import LocalProtocolError
from visionflow.protocol.frames import (
    AGENT_FLAG,
    KNOWLEDGE_FLAG,
    F32Array,
    U32Array,
)

__all__ = ["NodeFilter", "NodeSet", "Snapshot"]


class NodeFilter(StrEnum):
    """The ``graph`` query parameter: which nodes a connection subscribes to."""

    ALL = "all"
    KNOWLEDGE = "knowledge"
    AGENTS = "agents"


@dataclass(frozen=True, slots=True, eq=False)
class NodeSet:
    """Parallel read-only arrays: the nodes of one snapshot that one filter selects."""

    ids: U32Array
    positions: F32Array
    velocities: F32Array

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def _frozen(arr: np.ndarray[tuple[int, ...], np.dtype[np.generic]]) -> None:
    arr.flags.writeable = False


@dataclass(frozen=True, slots=True, eq=False)
class Snapshot:
    """Positions of every node at physics tick ``sequence``.

    ``revision`` is the graph store's topology revision the positions belong to, ``settled``
    whether the layout was at rest after this tick (the hub announces changes of it).

    Build it with :meth:`create`, which validates and freezes the arrays. Node ids must be unique
    (the graph store guarantees it; checking costs a sort per tick, so it is not re-checked).
    """

    sequence: int
    nodes: NodeSet
    revision: int = 0
    settled: bool = False

    @classmethod
    def create(
        cls,
        sequence: int,
        ids: object,
        positions: object,
        velocities: object,
        *,
        revision: int = 0,
        settled: bool = False,
        check_finite: bool = True,
    ) -> Snapshot:
        """Validate and take ownership of the arrays (no copy when already u32 / f32 contiguous).

        The caller must not write to the arrays afterwards. Raises :class:`LocalProtocolError` on
        a wrong shape or dtype, or a non-finite position or velocity. ``check_finite=False`` is
        for a producer that has just scrubbed them itself (the physics engine, once per tick).
        """
        ids_a = np.asarray(ids)
        if ids_a.ndim != 1 or ids_a.dtype != np.uint32:
            raise LocalProtocolError(f"ids must be uint32 (N,), got {ids_a.dtype} {ids_a.shape}")
        n = ids_a.shape[0]
        pos = np.asarray(positions)
        vel = np.asarray(velocities)
        for name, arr in (("positions", pos), ("velocities", vel)):
            if arr.shape != (n, 3) or arr.dtype != np.float32:
                raise LocalProtocolError(
                    f"{name} must be float32 ({n}, 3), got {arr.dtype} {arr.shape}"
                )
        if check_finite and not (np.isfinite(pos).all() and np.isfinite(vel).all()):
            raise LocalProtocolError(f"snapshot {sequence} holds a non-finite float")
        if not 0 <= sequence < 2**64:
            raise LocalProtocolError(f"sequence {sequence} does not fit a u64")
        # Views, so freezing them does not freeze the caller's own arrays.
        ids_v = np.ascontiguousarray(ids_a).view()
        pos_v = np.ascontiguousarray(pos).view()
        vel_v = np.ascontiguousarray(vel).view()
        for arr in (ids_v, pos_v, vel_v):
            _frozen(arr)
        return cls(int(sequence), NodeSet(ids_v, pos_v, vel_v), int(revision), bool(settled))

    def select(self, node_filter: NodeFilter) -> NodeSet:
        """The nodes ``node_filter`` keeps (the same object for ``all``; a copy otherwise)."""
        if node_filter is NodeFilter.ALL:
            return self.nodes
        flag = AGENT_FLAG if node_filter is NodeFilter.AGENTS else KNOWLEDGE_FLAG
        keep = (self.nodes.ids & np.uint32(flag)) != 0
        ids = self.nodes.ids[keep]
        pos = self.nodes.positions[keep]
        vel = self.nodes.velocities[keep]
        for arr in (ids, pos, vel):
            _frozen(arr)
        return NodeSet(ids, pos, vel)
