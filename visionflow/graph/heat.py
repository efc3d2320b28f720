"""Spreading a change's heat over the CSR: the nodes it touches, half to their neighbours, a
quarter to the nodes two hops out (``GraphStore.sync``).

Compiled with ``nogil``: the numpy version (``np.maximum.at`` and ``np.repeat`` per hop) held
the GIL for seconds after a 300k-node import, and the event loop, which needs the GIL for every
request, stalled with it (``/healthz`` 1.7 s, benchmarks/loop_stall.py). Here each node is
expanded once per hop at its highest level, so the cost is O(seeds + edges) where the numpy
version repeated a hub's neighbourhood once per neighbour.

Not cached on disk (``cache=False``): the kernel cache directory is chosen when
``visionflow.physics`` is imported, which this package must not do. It compiles in well under a
second; the engine warms it (``warm_up``) with its own kernels, off the event loop.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

__all__ = ["spread_heat", "warm_up"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@numba.njit(nogil=True, cache=False)
def _spread(heat, indptr, indices, seeds, levels):  # type: ignore[no-untyped-def]
    n = heat.shape[0]
    top = np.zeros(n)  # the highest level a node is expanded from at the current hop
    frontier = np.empty(seeds.shape[0], np.int64)
    count = 0
    for i in range(seeds.shape[0]):
        s = seeds[i]
        level = levels[i]
        if level > heat[s]:
            heat[s] = level
        if top[s] == 0.0:
            frontier[count] = s
            count += 1
        if level > top[s]:
            top[s] = level
    for _hop in range(2):
        nxt_top = np.zeros(n)
        nxt = np.empty(n, np.int64)  # each node joins a frontier once
        nxt_count = 0
        for i in range(count):
            s = frontier[i]
            level = 0.5 * top[s]
            for e in range(indptr[s], indptr[s + 1]):
                j = indices[e]
                if level > heat[j]:
                    heat[j] = level
                if nxt_top[j] == 0.0:
                    nxt[nxt_count] = j
                    nxt_count += 1
                if level > nxt_top[j]:
                    nxt_top[j] = level
        top = nxt_top
        frontier = nxt
        count = nxt_count


def spread_heat(heat: F64, indptr: I64, indices: I64, seeds: I64, levels: F64) -> None:
    """Raise ``heat`` of ``seeds`` to ``levels``, of their neighbours to half of it and of the
    nodes two hops away to a quarter, never lowering a heat (in place)."""
    if seeds.shape[0]:
        _spread(heat, indptr, indices, seeds.astype(np.int64), levels.astype(np.float64))


def warm_up() -> None:
    """Compile now (the first sync after an import would otherwise)."""
    spread_heat(np.zeros(2), np.array([0, 1, 2]), np.array([1, 0]), np.array([0]), np.ones(1))
