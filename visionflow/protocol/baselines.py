"""Baselines: what a group of connections was last sent, kept in a bounded LRU.

A baseline is the per-node "position last sent" state that PROTOCOL.md's deadband is measured
against. Connections that were sent exactly the same frames since their last keyframe are in the
same state, so they share one baseline (and therefore one encoded delta per tick). A connection
holds only the baseline's integer token, never the object: the store alone decides what stays in
memory, so memory is bounded by ``capacity`` whatever the viewers do. A connection whose
baseline was evicted simply gets a keyframe next, which also merges it with every other
connection getting that tick's keyframe.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass

from visionflow.protocol.frames import F32Array, U32Array
from visionflow.protocol.snapshot import NodeFilter

__all__ = ["Baseline", "BaselineStore"]


@dataclass(frozen=True, slots=True, eq=False)
class Baseline:
    """Node ``ids[i]`` was last sent at ``positions[i]``; the last frame had ``sequence``."""

    token: int
    node_filter: NodeFilter
    sequence: int
    ids: U32Array
    positions: F32Array


class BaselineStore:
    """At most ``capacity`` baselines, least recently used evicted first. Not thread-safe."""

    def __init__(self, capacity: int = 16) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[int, Baseline] = OrderedDict()
        self._tokens = itertools.count(1)

    def add(
        self, node_filter: NodeFilter, sequence: int, ids: U32Array, positions: F32Array
    ) -> Baseline:
        """Store a new baseline (the arrays are kept, not copied) and return it."""
        baseline = Baseline(next(self._tokens), node_filter, sequence, ids, positions)
        self._items[baseline.token] = baseline
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return baseline

    def get(self, token: int) -> Baseline | None:
        """The baseline, marked as recently used, or None if it was evicted."""
        baseline = self._items.get(token)
        if baseline is not None:
            self._items.move_to_end(token)
        return baseline

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, token: object) -> bool:
        return token in self._items
