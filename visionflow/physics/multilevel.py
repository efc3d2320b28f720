"""Multilevel starting positions for a large new graph (the idea of sfdp and FM3).

A force layout started from scattered points untangles a graph's large-scale shape slowly,
and some shapes never: a grid started from a random cloud stays folded. Laying out a coarse
version of the graph first fixes the large-scale shape when it is cheap to move, and each finer
level only has to settle locally:

1. coarsen: pair every node with the unpaired neighbour it shares the most edges with per
   unit of size (a heavy-edge matching: a coarse edge's weight counts the edges it stands
   for, a coarse node's size the nodes), then let each node left over join its smallest
   neighbouring pair (so a hub and its leaves collapse together, where a matching alone would
   take a level per leaf), and isolated nodes pair with each other; repeat while the graph
   shrinks by at least ``MIN_SHRINK``, down to ``COARSEST`` nodes. The coarse levels are laid
   out with those weights on their springs;
2. lay out the coarsest graph with the layout's own step (``cpu.step``: same model, same
   parameters) from its classical MDS embedding (graph distances, top three eigenvectors; a
   random ball above ``MDS_MAX`` nodes, where the dense MDS would cost n^3):
   from a random ball the force layout of even 46 nodes can settle squashed (a coarse grid
   came out with an aspect ratio of 0.6, and the finer levels inherited it);
3. level by level, place each node at its cluster's position, spread by the growth of the node
   count, plus a small deterministic offset, and relax it with the same step, the nodes
   starting at ``LEVEL_HEAT``; every level but the finest, which is the engine's.

The result is only a placement: the engine then runs its usual cooling schedule from it, which
relaxes the finest level (so that is not done twice: at 100k nodes the finest level's 40 steps
were 40% of the placement's time). It runs in the physics thread
(``PhysicsEngine.step_blocking``), off the event loop.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import numpy.typing as npt

from visionflow.graph.dense import csr_from_edges
from visionflow.physics import cpu
from visionflow.physics.jit import CACHE, hash01
from visionflow.physics.params import REST_LENGTH, ParamTable
from visionflow.physics.step import StepInput

__all__ = ["ANCHORED", "MIN_NODES", "Level", "coarsen", "mds", "place"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

# An import gets a multilevel placement from this many new nodes (below it the store's seeding
# next to placed neighbours is as good), when at most ANCHORED of their edges lead to nodes
# already placed (else they are mostly additions to the existing layout, placed next to it).
MIN_NODES = 50
ANCHORED = 0.1
COARSEST = 48  # stop coarsening under this many nodes
MIN_SHRINK = 0.75  # a level must keep at most this share of the nodes, else stop
MAX_LEVELS = 40
COARSEST_STEPS = 300
# The coarsest level starts from a classical MDS (dense: n x n matrices, n^3 time) only up to
# this many nodes; a larger one (a graph that stopped coarsening: many small parts) starts from
# a seeded random ball instead and gets the steps of a level of its size.
MDS_MAX = 256
# Steps per level: LEVEL_WORK / (level's nodes), within [LEVEL_STEPS, COARSEST_STEPS]: the
# coarse levels, where the large-scale shape forms, are cheap, so they get the long relaxations.
LEVEL_STEPS = 40
LEVEL_WORK = 200_000
# Each level's nodes start at full heat: at 0.5 the grid's sheet came out thicker (third
# singular value 0.06 of the first, 0.03 at 1.0) and BA 10k's edge ratio 0.355 (0.354).
LEVEL_HEAT = 1.0
# A level is spread by (fine nodes / coarse nodes) ** GROWTH: 1/2 is how a sheet grows, 1/3 how
# a ball does. Too small a spread leaves the finer level compressed, and the cooling schedule
# has no time to expand it again (a grid's edge ratio 0.0203 with 0.45, 0.0197 with 0.5, 0.019
# with 0.55, as a perfect square lattice scores), while one spread too far contracts quickly.
GROWTH = 0.55


@numba.njit(nogil=True, cache=CACHE)
def _cluster(indptr, indices, weights, size, order, salt, cluster):  # type: ignore[no-untyped-def]
    """Fill ``cluster`` (one coarse node per entry) and return the coarse node count.

    Nodes are visited in ``order`` (a shuffle): in id order a grid would pair along its rows
    only, and its coarse version would come out squashed to half its width.
    """
    n = indptr.shape[0] - 1
    members = np.zeros(n, np.int64)
    for u in range(n):
        cluster[u] = -1
    nc = 0
    # Isolated nodes pair with each other: they have no neighbour to join, and a graph of
    # mostly isolated nodes stopped shrinking at once, leaving all of them to the coarsest
    # level's dense MDS (10k edgeless nodes: 1.8 GB and half an hour).
    lonely = -1
    for u in order:  # pass 1: a heavy-edge matching
        if cluster[u] >= 0:
            continue
        best = -1
        best_heavy = -1.0
        best_key = np.inf
        for e in range(indptr[u], indptr[u + 1]):
            v = indices[e]
            if v == u or cluster[v] >= 0:
                continue
            # Shared edge weight per unit of size: on a grid's second level two side-by-side
            # pairs (joined by two edges) merge into a square; with any neighbour alike, the
            # coarse grids drifted from square and the sheet came out 0.93 as wide as long
            # (0.976 with this). Ties go to the least degree, then at random: in CSR order a
            # grid paired along one axis only.
            heavy = weights[e] / (size[u] * size[v])
            key = (indptr[v + 1] - indptr[v]) + 0.5 + 0.49 * hash01(v, salt)
            if heavy > best_heavy or (heavy == best_heavy and key < best_key):
                best = v
                best_heavy = heavy
                best_key = key
        if best >= 0:
            cluster[u] = nc
            cluster[best] = nc
            members[nc] = 2
            nc += 1
    for u in order:  # pass 2: leftovers join their smallest neighbouring cluster
        if cluster[u] >= 0:
            continue
        best = -1
        best_key = np.inf
        for e in range(indptr[u], indptr[u + 1]):
            v = indices[e]
            c = cluster[v]
            if v == u or c < 0:
                continue
            # Ties at random too: taken in CSR order, a grid's leftovers joined the pair above
            # them (v - side comes first), so three joins in five ran down the columns, the
            # coarse grids had 14 % fewer hops down than across, and the sheet came out 0.94-0.96
            # as wide as long (0.99 with this; Spearman 0.9779 -> 0.9785, five hierarchies).
            key = members[c] + 0.49 * hash01(c, salt + 1)
            if key < best_key:
                best = c
                best_key = key
        if best < 0:  # isolated (or only self-loops): paired with the last isolated one
            if lonely >= 0 and members[lonely] == 1:
                best = lonely
            else:
                best = nc
                lonely = nc
                nc += 1
        cluster[u] = best
        members[best] += 1
    return nc


class Level(NamedTuple):
    """One graph of the hierarchy: CSR, spring weights (edges stood for), node sizes, groups."""

    indptr: I64
    indices: I64
    weights: F64
    size: F64
    group: npt.NDArray[np.int8]


def coarsen(level: Level, seed: int = 0) -> tuple[I64, Level]:
    """One level down: (the coarse node of each node, the coarse level).

    A coarse edge weighs the sum of the edges it stands for, a coarse node the sum of its
    members' sizes, and takes one of its members' groups.
    """
    indptr, indices = level.indptr, level.indices
    n = indptr.shape[0] - 1
    cluster = np.empty(n, np.int64)
    order = np.random.default_rng(seed).permutation(n)  # deterministic: seeded
    nc = int(_cluster(indptr, indices, level.weights, level.size, order, seed + 17, cluster))
    src = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    cs, ct = cluster[src], cluster[indices]
    keep = cs < ct  # each undirected coarse edge once, no self-loops
    pairs, inverse = np.unique(cs[keep] * nc + ct[keep], return_inverse=True)
    # float64 already (weighted counts); asarray only tells the type checker
    summed = np.asarray(
        np.bincount(inverse, weights=level.weights[keep], minlength=pairs.shape[0]), np.float64
    )
    cptr, cidx, cw = csr_from_edges(nc, pairs // nc, pairs % nc, summed)
    size = np.asarray(np.bincount(cluster, weights=level.size, minlength=nc), np.float64)
    group = np.zeros(nc, np.int8)
    group[cluster] = level.group
    return cluster, Level(cptr, cidx, cw, size, group)


def mds(indptr: I64, indices: I64, scale: float) -> F64:
    """Classical MDS of a small graph's hop distances into 3-D, ``scale`` per hop.

    Floyd-Warshall on a dense matrix: for the coarsest level only (under ``COARSEST`` nodes).
    Unreachable pairs count as one hop more than the longest finite distance, so separate
    parts sit side by side.
    """
    n = indptr.shape[0] - 1
    d = np.full((n, n), np.inf)
    src = np.repeat(np.arange(n), np.diff(indptr))
    d[src, indices] = 1.0
    np.fill_diagonal(d, 0.0)
    for k in range(n):
        np.minimum(d, d[:, k : k + 1] + d[k : k + 1, :], out=d)
    finite = np.isfinite(d)
    d[~finite] = (d[finite].max() + 1.0) if finite.any() else 1.0
    j = np.eye(n) - 1.0 / n
    b = -0.5 * j @ (d * d) @ j
    values, vectors = np.linalg.eigh(b)
    top = np.argsort(values)[::-1][:3]
    pos = np.zeros((n, 3))
    k = min(3, n)
    pos[:, :k] = vectors[:, top[:k]] * np.sqrt(np.maximum(values[top[:k]], 0.0))
    pos += 1e-3 * scale * np.random.default_rng(0).standard_normal((n, 3))  # no exact ties
    return pos * scale


def _relax(
    ws: cpu.CpuWorkspace, pos: F64, level: Level, params: ParamTable, heat: float, steps: int
) -> None:
    n = pos.shape[0]
    inp = StepInput(
        pos,
        np.zeros((n, 3)),
        level.group,
        np.zeros(n, np.uint8),
        level.indptr,
        level.indices,
        level.weights,
        params,
        1 << 30,  # past any warm-up ramp
        np.full(n, heat),
    )
    for _ in range(steps):
        if cpu.step(ws, inp).warm == 0:
            break


def _steps(n: int) -> int:
    """Relaxation steps of a level of ``n`` nodes (see ``LEVEL_WORK``)."""
    return min(COARSEST_STEPS, max(LEVEL_STEPS, LEVEL_WORK // n))


def _ball(n: int, scale: float) -> F64:
    """``n`` seeded random points in a ball about as wide as ``n`` nodes ``scale`` apart."""
    rng = np.random.default_rng(0)
    direction = rng.standard_normal((n, 3))
    direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-12)
    radius = scale * np.cbrt(n) * np.cbrt(rng.random((n, 1)))
    out: F64 = direction * radius
    return out


@numba.njit(nogil=True, cache=CACHE)
def _prolong(coarse, cluster, scale, jitter, out):  # type: ignore[no-untyped-def]
    for i in range(cluster.shape[0]):
        c = cluster[i]
        for k in range(3):
            out[i, k] = coarse[c, k] * scale + jitter * hash01(i, k + 11)


def place(
    ws: cpu.CpuWorkspace, indptr: I64, indices: I64, group: npt.NDArray[np.int8], params: ParamTable
) -> F64:
    """Positions (n, 3) for the graph of CSR ``indptr``/``indices``, centred on the origin."""
    n = indptr.shape[0] - 1
    # (coarse node of each node, the finer level), finest first
    levels: list[tuple[I64, Level]] = []
    level = Level(indptr, indices, np.ones(indices.shape[0]), np.ones(n), group)
    while level.indptr.shape[0] - 1 > COARSEST and len(levels) < MAX_LEVELS:
        cluster, coarse = coarsen(level, seed=len(levels))
        if coarse.indptr.shape[0] - 1 > MIN_SHRINK * (level.indptr.shape[0] - 1):
            break
        levels.append((cluster, level))
        level = coarse
    rest = float(np.min(params[:, REST_LENGTH]))
    nc = level.indptr.shape[0] - 1
    if nc <= MDS_MAX:
        pos = mds(level.indptr, level.indices, rest)
        _relax(ws, pos, level, params, 1.0, COARSEST_STEPS)
    else:
        pos = _ball(nc, rest)
        _relax(ws, pos, level, params, 1.0, _steps(nc))
    for cluster, fine_level in reversed(levels):
        nf = fine_level.indptr.shape[0] - 1
        fine = np.empty((nf, 3))
        pos -= pos.mean(axis=0)
        _prolong(pos, cluster, (nf / pos.shape[0]) ** GROWTH, 0.1 * rest, fine)
        if nf < n:
            _relax(ws, fine, fine_level, params, LEVEL_HEAT, _steps(nf))
        pos = fine
    assert pos.shape[0] == n
    pos -= pos.mean(axis=0)
    return pos
