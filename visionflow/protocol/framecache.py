"""Per-tick frame cache: every frame kind is computed and encoded once per tick, not per viewer.

The hub builds one :class:`FrameCache` per snapshot and asks it for bytes on behalf of each
connection (through :class:`~visionflow.protocol.stream.ViewerStream`). Results are memoised:

- keyframes by ``(format, filter)``: one encode per tick however many viewers need one; every
  connection sent it joins one shared keyframe baseline for ``(filter, tick)``;
- deltas by ``(format, baseline token)``: connections in the same state (same baseline) get the
  very same ``bytes`` object, and all move to the same new baseline. The delta plan (which rows
  moved, the new baseline) is format-independent and computed once per baseline; the legacy
  encoding is the protocol-2 one minus its header, so the second format costs a memcpy.

The cache holds at most one entry per filter for keyframes and one per live baseline for deltas
(baselines live in a bounded :class:`BaselineStore`), and is dropped after its tick.
Not thread-safe: use it from one thread (or task) at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

import numpy as np

from visionflow.protocol.baselines import Baseline, BaselineStore
from visionflow.protocol.frames import (
    HEADER_SIZE,
    F32Array,
    FrameKind,
    RowIndex,
    WireFormat,
    encode_frame,
)
from visionflow.protocol.snapshot import NodeFilter, NodeSet, Snapshot

__all__ = ["DEFAULT_DEADBAND", "DeltaOutcome", "Encoded", "FrameCache"]

#: ``websocket.deadband`` default (docs/protocol.md section 2), in layout units.
DEFAULT_DEADBAND: Final = 0.01


class DeltaOutcome(Enum):
    """Why :meth:`FrameCache.delta` returned no frame."""

    NOTHING_MOVED = "nothing moved"
    NEEDS_KEYFRAME = "a node was removed: a delta cannot say so"


@dataclass(frozen=True, slots=True, eq=False)
class Encoded:
    """A frame ready to send, and the baseline a connection is in once it has been sent."""

    data: bytes
    kind: FrameKind
    sequence: int
    count: int
    baseline: Baseline


@dataclass(frozen=True, slots=True, eq=False)
class _Plan:
    rows: RowIndex
    nodes: NodeSet
    baseline: Baseline


class FrameCache:
    """Frames for one snapshot. See the module docstring."""

    def __init__(
        self, snapshot: Snapshot, baselines: BaselineStore, *, deadband: float = DEFAULT_DEADBAND
    ) -> None:
        if not deadband >= 0:
            raise ValueError(f"deadband must be >= 0, got {deadband}")
        self.snapshot = snapshot
        self.baselines = baselines
        self.deadband = float(deadband)
        self._selected: dict[NodeFilter, NodeSet] = {}
        self._key_baselines: dict[NodeFilter, Baseline] = {}
        self._plans: dict[int, _Plan | DeltaOutcome] = {}
        # Both keyed by (format, filter | baseline token); values are encoded frames.
        self._keyframes: dict[tuple[WireFormat, NodeFilter], Encoded] = {}
        self._deltas: dict[tuple[WireFormat, int], Encoded] = {}

    @property
    def sequence(self) -> int:
        return self.snapshot.sequence

    def select(self, node_filter: NodeFilter) -> NodeSet:
        nodes = self._selected.get(node_filter)
        if nodes is None:
            nodes = self._selected[node_filter] = self.snapshot.select(node_filter)
        return nodes

    # ------------------------------------------------------------------ keyframes

    def keyframe(self, fmt: WireFormat, node_filter: NodeFilter) -> Encoded:
        """Every node ``node_filter`` selects, encoded in ``fmt``; memoised for this tick."""
        key = (fmt, node_filter)
        cached = self._keyframes.get(key)
        if cached is not None:
            return cached
        nodes = self.select(node_filter)
        baseline = self._key_baselines.get(node_filter)
        if baseline is None or baseline.token not in self.baselines:
            # The snapshot is frozen, so the baseline can keep its arrays without a copy.
            baseline = self.baselines.add(node_filter, self.sequence, nodes.ids, nodes.positions)
            self._key_baselines[node_filter] = baseline
        other = self._keyframes.get((WireFormat.PROTOCOL2, node_filter)) if _derived(fmt) else None
        data = (
            _strip_header(other.data)
            if other is not None
            else encode_frame(
                fmt, FrameKind.KEYFRAME, nodes.ids, nodes.positions, nodes.velocities, self.sequence
            )
        )
        encoded = Encoded(data, FrameKind.KEYFRAME, self.sequence, len(nodes), baseline)
        self._keyframes[key] = encoded
        return encoded

    # ------------------------------------------------------------------ deltas

    def delta(self, fmt: WireFormat, baseline: Baseline) -> Encoded | DeltaOutcome:
        """What connections in state ``baseline`` need this tick, encoded in ``fmt``.

        Returns :attr:`DeltaOutcome.NOTHING_MOVED` (send nothing, stay at ``baseline``) or
        :attr:`DeltaOutcome.NEEDS_KEYFRAME` (a node of the baseline is gone).
        """
        if baseline.sequence >= self.sequence:
            raise ValueError(
                f"baseline {baseline.token} is from tick {baseline.sequence}, "
                f"not before this tick {self.sequence}"
            )
        key = (fmt, baseline.token)
        cached = self._deltas.get(key)
        if cached is not None:
            return cached
        plan = self._plans.get(baseline.token)
        if plan is None:
            plan = self._plans[baseline.token] = self._plan(baseline)
        if isinstance(plan, DeltaOutcome):
            return plan
        other = self._deltas.get((WireFormat.PROTOCOL2, baseline.token)) if _derived(fmt) else None
        nodes = plan.nodes
        data = (
            _strip_header(other.data)
            if other is not None
            else encode_frame(
                fmt,
                FrameKind.DELTA,
                nodes.ids,
                nodes.positions,
                nodes.velocities,
                self.sequence,
                rows=plan.rows,
            )
        )
        encoded = Encoded(data, FrameKind.DELTA, self.sequence, len(plan.rows), plan.baseline)
        self._deltas[key] = encoded
        return encoded

    def _plan(self, baseline: Baseline) -> _Plan | DeltaOutcome:
        nodes = self.select(baseline.node_filter)
        last_sent, is_new = _align(baseline, nodes)
        if last_sent is None:
            return DeltaOutcome.NEEDS_KEYFRAME
        step = nodes.positions - last_sent
        moved = np.einsum("ij,ij->i", step, step) > np.float32(self.deadband) ** 2
        if is_new is not None:
            moved |= is_new
        rows = np.flatnonzero(moved)
        if rows.size == 0:
            return DeltaOutcome.NOTHING_MOVED
        sent = last_sent.copy() if last_sent is baseline.positions else last_sent
        sent[rows] = nodes.positions[rows]
        sent.flags.writeable = False
        new = self.baselines.add(baseline.node_filter, self.sequence, nodes.ids, sent)
        return _Plan(rows, nodes, new)


def _derived(fmt: WireFormat) -> bool:
    """Legacy frames are protocol-2 frames without the header, so they can be cut from them."""
    return fmt is WireFormat.LEGACY


def _strip_header(data: bytes) -> bytes:
    return memoryview(data)[HEADER_SIZE:].tobytes()


def _align(baseline: Baseline, nodes: NodeSet) -> tuple[F32Array | None, np.ndarray | None]:
    """Last-sent positions in the snapshot's row order, and which rows are new to the baseline.

    Returns ``(None, None)`` when a baseline node is missing from the snapshot (removed).
    """
    if baseline.ids is nodes.ids or np.array_equal(baseline.ids, nodes.ids):
        return baseline.positions, None
    n = len(nodes)
    if baseline.ids.shape[0] > n:
        return None, None
    order = np.argsort(nodes.ids, kind="stable")
    sorted_ids = nodes.ids[order]
    at = np.searchsorted(sorted_ids, baseline.ids)
    if baseline.ids.size:
        at_clipped = np.minimum(at, n - 1)
        if n == 0 or not np.array_equal(sorted_ids[at_clipped], baseline.ids):
            return None, None
        at = at_clipped
    rows = order[at]
    last_sent = np.empty_like(nodes.positions)
    last_sent[rows] = baseline.positions
    is_new = np.ones(n, dtype=bool)
    is_new[rows] = False
    last_sent[is_new] = nodes.positions[is_new]  # keep the subtraction finite for new rows
    return last_sent, is_new
