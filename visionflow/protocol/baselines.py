"""Baselines: what a group of connections was last sent, kept in a bounded LRU.

A baseline is the per-node "position last sent" state the docs/protocol.md deadband is measured
against. Connections that were sent exactly the same frames since their last keyframe are in the
same state, so they share one baseline (and therefore one encoded delta per tick). A connection
holds only the baseline's integer token, never the object, and tells the store which token it
holds (:meth:`BaselineStore.hold` / :meth:`BaselineStore.release`): a baseline no connection
holds any more is dropped at once, so the store keeps what viewers can still use rather than
what was made last. Memory stays bounded by ``capacity`` whatever the viewers do: past it the
least recently used baseline goes (unheld ones first), and a connection whose baseline was
evicted simply gets a keyframe next, which also merges it with every other connection getting
that tick's keyframe.
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
        self._holders: dict[int, int] = {}  # token -> connections holding it (absent: none)
        self._tokens = itertools.count(1)

    def add(
        self, node_filter: NodeFilter, sequence: int, ids: U32Array, positions: F32Array
    ) -> Baseline:
        """Store a new baseline (the arrays are kept, not copied) and return it."""
        baseline = Baseline(next(self._tokens), node_filter, sequence, ids, positions)
        self._items[baseline.token] = baseline
        if len(self._items) > self.capacity:
            unheld = next((t for t in self._items if t not in self._holders), None)
            victim = unheld if unheld is not None else next(iter(self._items))
            del self._items[victim]
            self._holders.pop(victim, None)
        return baseline

    def get(self, token: int) -> Baseline | None:
        """The baseline, marked as recently used, or None if it was evicted."""
        baseline = self._items.get(token)
        if baseline is not None:
            self._items.move_to_end(token)
        return baseline

    def hold(self, token: int) -> None:
        """A connection now holds ``token`` (no-op if it was evicted)."""
        if token in self._items:
            self._holders[token] = self._holders.get(token, 0) + 1

    def release(self, token: int) -> None:
        """A connection let go of ``token``; the last one to do so drops the baseline."""
        held = self._holders.get(token)
        if held is None:
            return
        if held > 1:
            self._holders[token] = held - 1
        else:
            del self._holders[token]
            self._items.pop(token, None)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, token: object) -> bool:
        return token in self._items
