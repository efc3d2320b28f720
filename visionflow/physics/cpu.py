"""One force-layout step on the CPU: numba kernels plus a reusable scratch workspace.

Model (both groups in one simulation, each node reads its own group's row of the param table):

- repulsion ``q_i * q_j / (d^2 + softening_i)`` along the separating direction, over the full
  range: exact all-pairs below ``EXACT_MAX_NODES`` nodes, a 3-D Barnes-Hut octree above it.
  ``q = sqrt(repel_k)`` of the node's group, so a same-group pair feels exactly ``repel_k`` and a
  mixed agent/note pair the geometric mean of the two; the pair force stays symmetric (momentum
  is conserved) and a Barnes-Hut cell is just a sum of charges.  Softening and theta are the
  receiver's.
- springs ``spring_k * (d - rest_length) * w`` along each edge; a mixed edge uses the mean of the
  two groups' spring_k and rest_length (again symmetric).  Self-loops are ignored.
- centre pull ``-center_gravity_k * p``; clamp ``|F|`` to max_force; quadratic warm-up
  ``min(1, ((iteration + 1) / warmup_iterations)^2)``.
- ``v = (v + F dt) * damping``, clamp ``|v|`` to max_velocity, ``p += v dt``; reflecting bounds
  (position clamped to the cube, that velocity component reversed and scaled by
  boundary_damping).  Pinned nodes and nodes of a disabled group keep their position, velocity 0.
- Non-finite repair before and after the step: a node with a NaN/inf position or velocity is
  re-seeded next to a finite graph neighbour (or near the origin) with velocity 0, and counted.

The octree is built from integer Morton codes sorted by an integer radix sort (no float sort,
so no NaN can break an ordering) into a pre-order node array walked without a stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt
from numba import prange

from visionflow.physics import KERNEL_CACHE
from visionflow.physics.params import (
    BOUNDARY_DAMPING,
    BOUNDS_SIZE,
    CENTER_GRAVITY_K,
    DAMPING,
    DT,
    ENABLE_BOUNDS,
    ENABLED,
    MAX_COORD,
    MAX_FORCE,
    MAX_VELOCITY,
    REPEL_K,
    REST_LENGTH,
    SOFTENING,
    SPRING_K,
    THETA,
    WARMUP_ITERATIONS,
    ParamTable,
)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# Below this node count exact all-pairs repulsion is used (it is also exact).  Measured on this
# 2-core machine, random Gaussian layouts, min ms per repulsion pass over 40 runs (Barnes-Hut with
# LEAF_SIZE 64 and theta 0.8 / exact): 500 0.15/0.05, 1000 0.22/0.20, 1500 0.30/0.44,
# 2000 0.45/0.76, 4000 1.13/3.08.  The bucketed tree walk below is cheap, so the crossover is
# ~1.1k nodes, well under the 5-8k of a per-body walk.
EXACT_MAX_NODES = 1024

# Below this many nodes a step runs on one thread: waking the pool costs more than it saves, and
# on a busy machine every parallel region may wait a scheduler slice for its second thread (40
# nodes: 0.015 ms per step on one thread, 0.2-2 ms on two while other processes ran).
PARALLEL_MIN_NODES = 4096

# Bodies per octree leaf (bucket).  Small buckets cost tree walks, big ones direct pair sums;
# single-thread ms at 10k / 100k nodes: 16 -> 8.0 / 124, 32 -> 6.1 / 78, 64 -> 5.4 / 68.
LEAF_SIZE = 64
MORTON_BITS = 21  # per axis; 63 bits in all, fits an int64
_STACK = 512  # explicit build stack: <= 8 entries per level and 21 levels
LIST_CAP = 2048  # interaction-list entries per thread (32 KiB of float32); a full one is flushed

_thread_id = numba.get_thread_id  # type: ignore[attr-defined]
_MAX_THREADS = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]

# fastmath without 'nnan'/'ninf' so isfinite checks and NaN propagation stay honest.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
# False only when no directory at all is writable (visionflow.physics.kernel_cache)
CACHE = KERNEL_CACHE.enabled


# --------------------------------------------------------------------------- helpers


@numba.njit(inline="always", nogil=True, cache=CACHE)
def _hash01(i, k):  # type: ignore[no-untyped-def]
    """Deterministic pseudo-random number in [-1, 1) from two integers (no global RNG state)."""
    s = math.sin(float(i) * 12.9898 + float(k) * 78.233) * 43758.5453
    return 2.0 * (s - math.floor(s)) - 1.0


@numba.njit(inline="always", nogil=True, cache=CACHE)
def _spread3(v):  # type: ignore[no-untyped-def]
    """Spread the low 21 bits of v so that two zero bits separate each (Morton interleave)."""
    x = v & 0x1FFFFF
    x = (x | (x << 32)) & 0x1F00000000FFFF
    x = (x | (x << 16)) & 0x1F0000FF0000FF
    x = (x | (x << 8)) & 0x100F00F00F00F00F
    x = (x | (x << 4)) & 0x10C30C30C30C30C3
    x = (x | (x << 2)) & 0x1249249249249249
    return x


# --------------------------------------------------------------------------- non-finite repair


@numba.njit(parallel=True, nogil=True, cache=CACHE)
def _mark_nonfinite(pos, vel, bad):  # type: ignore[no-untyped-def]
    """Flag nodes with a non-finite coordinate; return (count, kinetic energy sum and max)."""
    n = pos.shape[0]
    count = 0
    ke = 0.0
    peak = 0.0
    for i in prange(n):
        ok = True
        for k in range(3):
            if not (math.isfinite(pos[i, k]) and math.isfinite(vel[i, k])):
                ok = False
        if ok:
            bad[i] = 0
            e = 0.5 * (vel[i, 0] ** 2 + vel[i, 1] ** 2 + vel[i, 2] ** 2)
            ke += e
            peak = max(peak, e)
        else:
            bad[i] = 1
            count += 1
    return count, ke, peak


@numba.njit(nogil=True, cache=CACHE)
def _reseed_bad(pos, vel, bad, indptr, indices, spread):  # type: ignore[no-untyped-def]
    """Re-seed flagged nodes next to a finite neighbour, else near the origin (rare, serial)."""
    n = pos.shape[0]
    for i in range(n):
        if bad[i] == 0:
            continue
        anchor = -1
        for e in range(indptr[i], indptr[i + 1]):
            j = indices[e]
            if j != i and bad[j] == 0:
                anchor = j
                break
        scale = spread if anchor >= 0 else 1e-3
        for k in range(3):
            base = pos[anchor, k] if anchor >= 0 else 0.0
            pos[i, k] = base + scale * _hash01(i, k + 1)
            vel[i, k] = 0.0
    # a second sweep: a node re-seeded above is finite now, nothing else can be non-finite
    for i in range(n):
        bad[i] = 0


def repair_nonfinite(
    pos: F64, vel: F64, indptr: I64, indices: I64, bad: npt.NDArray[np.uint8], spread: float
) -> tuple[int, float, float]:
    """Re-seed non-finite nodes in place; return (how many, kinetic energy sum, largest
    per-node kinetic energy) afterwards."""
    count, ke, peak = _mark_nonfinite(pos, vel, bad)
    if count:
        _reseed_bad(pos, vel, bad, indptr, indices, spread)
        count2, ke, peak = _mark_nonfinite(pos, vel, bad)
        assert count2 == 0
    return int(count), float(ke), float(peak)


# --------------------------------------------------------------------------- exact repulsion


@numba.njit(parallel=True, nogil=True, cache=CACHE)
def _charges(group, params, q):  # type: ignore[no-untyped-def]
    for i in prange(group.shape[0]):
        q[i] = math.sqrt(params[group[i], REPEL_K])


@numba.njit(parallel=True, nogil=True, cache=CACHE, fastmath=FASTMATH)
def _exact_forces(x, y, z, q, group, params, forces):  # type: ignore[no-untyped-def]
    """All-pairs repulsion into ``forces`` (overwritten).  O(n^2), exact.

    The inner loop is branch-free so it vectorises: the self term has d = 0 and contributes
    0 * finite.  The charge of coincident nodes (itself included) is summed instead, and a node
    that has coincident others gets a push along its own pseudo-random direction, of
    q_i * (their charge) / softening, so the pile can come apart.
    """
    n = x.shape[0]
    for i in prange(n):
        xi = x[i]
        yi = y[i]
        zi = z[i]
        eps = params[group[i], SOFTENING]
        fx = 0.0
        fy = 0.0
        fz = 0.0
        here = 0.0  # charge at exactly this position, its own included
        for j in range(n):
            dx = xi - x[j]
            dy = yi - y[j]
            dz = zi - z[j]
            d2 = dx * dx + dy * dy + dz * dz
            s = q[j] / ((d2 + eps) * math.sqrt(d2 + 1e-300))
            fx += dx * s
            fy += dy * s
            fz += dz * s
            here += q[j] if d2 == 0.0 else 0.0
        qi = q[i]
        if here > qi:  # exact: a lone node sums to 0.0 + qi
            push = (here - qi) / eps  # times qi below
            fx += push * _hash01(i, 1)
            fy += push * _hash01(i, 2)
            fz += push * _hash01(i, 3)
        forces[i, 0] = qi * fx
        forces[i, 1] = qi * fy
        forces[i, 2] = qi * fz


@numba.njit(parallel=True, nogil=True, cache=CACHE)
def _split_xyz(pos, x, y, z):  # type: ignore[no-untyped-def]
    for i in prange(pos.shape[0]):
        x[i] = pos[i, 0]
        y[i] = pos[i, 1]
        z[i] = pos[i, 2]


# --------------------------------------------------------------------------- Barnes-Hut


@numba.njit(parallel=True, nogil=True, cache=CACHE)
def _bounds(pos):  # type: ignore[no-untyped-def]
    n = pos.shape[0]
    x0 = np.inf
    y0 = np.inf
    z0 = np.inf
    x1 = -np.inf
    y1 = -np.inf
    z1 = -np.inf
    for i in prange(n):
        x0 = min(x0, pos[i, 0])
        y0 = min(y0, pos[i, 1])
        z0 = min(z0, pos[i, 2])
        x1 = max(x1, pos[i, 0])
        y1 = max(y1, pos[i, 1])
        z1 = max(z1, pos[i, 2])
    return x0, y0, z0, max(x1 - x0, y1 - y0, z1 - z0)


@numba.njit(parallel=True, nogil=True, cache=CACHE)
def _morton(pos, x0, y0, z0, extent, codes, order):  # type: ignore[no-untyped-def]
    n = pos.shape[0]
    top = (1 << MORTON_BITS) - 1
    scale = top / extent
    for i in prange(n):
        c = 0
        for k in range(3):
            origin = x0 if k == 0 else (y0 if k == 1 else z0)
            t = (pos[i, k] - origin) * scale
            # written so that NaN (fails both tests) lands in the top cell, not an undefined int
            v = int(t) if t >= 0.0 else 0
            v = v if t <= top else top
            c |= _spread3(v) << (2 - k)
        codes[i] = c
        order[i] = i


@numba.njit(nogil=True, cache=CACHE)
def _radix_sort(codes, order, tmp_codes, tmp_order, counts):  # type: ignore[no-untyped-def]
    """Stable LSD radix sort of non-negative int64 keys (16-bit digits) carrying ``order``.

    Passes whose digit is the same for every key are skipped.  Result ends in codes/order.
    """
    n = codes.shape[0]
    src_c = codes
    src_o = order
    dst_c = tmp_codes
    dst_o = tmp_order
    swapped = False
    for shift in range(0, 64, 16):
        counts[:] = 0
        for i in range(n):
            counts[(src_c[i] >> shift) & 0xFFFF] += 1
        if counts[(src_c[0] >> shift) & 0xFFFF] == n:
            continue
        total = 0
        for d in range(65536):
            c = counts[d]
            counts[d] = total
            total += c
        for i in range(n):
            d = (src_c[i] >> shift) & 0xFFFF
            p = counts[d]
            counts[d] = p + 1
            dst_c[p] = src_c[i]
            dst_o[p] = src_o[i]
        src_c, dst_c = dst_c, src_c
        src_o, dst_o = dst_o, src_o
        swapped = not swapped
    if swapped:
        codes[:] = src_c
        order[:] = src_o


@numba.njit(inline="always", nogil=True, cache=CACHE)
def _lower_bound_digit(codes, lo, hi, shift, digit):  # type: ignore[no-untyped-def]
    """First index in [lo, hi) whose 3-bit digit at ``shift`` is >= digit (digits ascend)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if ((codes[mid] >> shift) & 7) < digit:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(nogil=True, cache=CACHE)
def _build_tree(codes, extent, nlo, nhi, nchild, side, leaves):  # type: ignore[no-untyped-def]
    """Pre-order octree over sorted Morton codes; return (node count, leaf count).

    A node splits on the highest 3-bit digit where its first and last codes differ, so every
    internal node has at least two children and there are at most 2n - 1 nodes.
    """
    n = codes.shape[0]
    stack_lo = np.empty(_STACK, np.int64)
    stack_hi = np.empty(_STACK, np.int64)
    stack_side = np.empty(_STACK, np.float64)
    bounds = np.empty(9, np.int64)
    stack_lo[0] = 0
    stack_hi[0] = n
    stack_side[0] = extent
    sp = 1
    count = 0
    nleaves = 0
    while sp > 0:
        sp -= 1
        lo = stack_lo[sp]
        hi = stack_hi[sp]
        node = count
        count += 1
        nlo[node] = lo
        nhi[node] = hi
        a = codes[lo]
        b = codes[hi - 1]
        if hi - lo <= LEAF_SIZE or a == b:
            nchild[node] = 0
            side[node] = stack_side[sp]
            leaves[nleaves] = node
            nleaves += 1
            continue
        x = a ^ b
        hb = 0
        while (x >> (hb + 1)) != 0:
            hb += 1
        g = hb // 3
        shift = 3 * g
        side[node] = extent * (2.0 ** (g + 1 - MORTON_BITS))
        child_side = side[node] * 0.5
        # children pushed in reverse so the first child is popped (and numbered) next
        bounds[0] = lo
        for d in range(1, 8):
            bounds[d] = _lower_bound_digit(codes, bounds[d - 1], hi, shift, d)
        bounds[8] = hi
        k = 0
        for d in range(7, -1, -1):
            if bounds[d + 1] > bounds[d]:
                stack_lo[sp] = bounds[d]
                stack_hi[sp] = bounds[d + 1]
                stack_side[sp] = child_side
                sp += 1
                k += 1
        nchild[node] = k
    return count, nleaves


@numba.njit(parallel=True, nogil=True, cache=CACHE)
def _gather_sorted(pos, q, order, sx, sy, sz, sq):  # type: ignore[no-untyped-def]
    for s in prange(order.shape[0]):
        b = order[s]
        sx[s] = pos[b, 0]
        sy[s] = pos[b, 1]
        sz[s] = pos[b, 2]
        sq[s] = q[b]


# Columns of the packed tree: one 64-byte row per node, so the walk touches one cache line.
T_CX, T_CY, T_CZ, T_Q, T_SIDE, T_SUB, T_LO, T_HI = range(8)


@numba.njit(nogil=True, cache=CACHE)
def _summarize(count, nlo, nhi, nchild, side, sx, sy, sz, sq, tree):  # type: ignore[no-untyped-def]
    """Reverse pre-order pass filling ``tree``: charge centre, charge, side, subtree size, range.

    A leaf whose bodies all share one position gets side 0 and that position as its centre.

    Subtree size is 1 exactly for leaves (an internal node has at least two children).
    """
    for node in range(count - 1, -1, -1):
        tq = 0.0
        tx = 0.0
        ty = 0.0
        tz = 0.0
        point = False
        if nchild[node] == 0:
            lo = nlo[node]
            point = True
            for s in range(lo, nhi[node]):
                w = sq[s]
                tq += w
                tx += w * sx[s]
                ty += w * sy[s]
                tz += w * sz[s]
                if sx[s] != sx[lo] or sy[s] != sy[lo] or sz[s] != sz[lo]:
                    point = False
            size = 1
        else:
            size = 1
            c = node + 1
            for _ in range(nchild[node]):
                w = tree[c, T_Q]
                tq += w
                tx += w * tree[c, T_CX]
                ty += w * tree[c, T_CY]
                tz += w * tree[c, T_CZ]
                sc = int(tree[c, T_SUB])
                size += sc
                c += sc
        if tq > 0.0 and not point:
            tree[node, T_CX] = tx / tq
            tree[node, T_CY] = ty / tq
            tree[node, T_CZ] = tz / tq
        else:  # a point: its exact position (a weighted mean may be an ulp off)
            tree[node, T_CX] = sx[nlo[node]]
            tree[node, T_CY] = sy[nlo[node]]
            tree[node, T_CZ] = sz[nlo[node]]
        tree[node, T_Q] = tq
        # side 0 marks a leaf whose bodies all sit on one point: exact as a single charge
        tree[node, T_SIDE] = 0.0 if point else side[node]
        tree[node, T_SUB] = size
        tree[node, T_LO] = nlo[node]
        tree[node, T_HI] = nhi[node]


@numba.njit(inline="always", nogil=True, cache=CACHE, fastmath=FASTMATH)
def _apply_list(lst, nl, lo, m, sx, sy, sz, ox, oy, oz, eps, forces, order, same):  # type: ignore[no-untyped-def]
    """Add the interaction list (x, y, z, charge rows) to every body of a bucket.

    float32, coordinates relative to the bucket's centre (ox, oy, oz) so that differences stay
    accurate: 8 lanes per vector and cheap divisions, the bulk of the Barnes-Hut time.
    Branch-free so it vectorises: a self term has d = 0 and contributes 0 * finite; the
    charge of coincident entries (the body's own included) is added to ``same`` instead.
    """
    lx = lst[0]
    ly = lst[1]
    lz = lst[2]
    lq = lst[3]
    tiny = np.float32(1e-30)
    zero = np.float32(0.0)
    for a in range(m):
        s = lo + a
        px = np.float32(sx[s] - ox)
        py = np.float32(sy[s] - oy)
        pz = np.float32(sz[s] - oz)
        e = np.float32(eps[a])
        fx = zero
        fy = zero
        fz = zero
        k = zero
        for j in range(nl):
            dx = px - lx[j]
            dy = py - ly[j]
            dz = pz - lz[j]
            d2 = dx * dx + dy * dy + dz * dz
            f = lq[j] / ((d2 + e) * math.sqrt(d2 + tiny))
            fx += dx * f
            fy += dy * f
            fz += dz * f
            k += lq[j] if d2 == zero else zero
        b = order[s]
        forces[b, 0] += fx
        forces[b, 1] += fy
        forces[b, 2] += fz
        same[s] += k


@numba.njit(parallel=True, nogil=True, cache=CACHE, fastmath=FASTMATH)
def _bh_forces(  # type: ignore[no-untyped-def]
    count,
    nleaves,
    leaves,
    tree,
    sx,
    sy,
    sz,
    sq,
    order,
    group,
    params,
    lists,
    same,
    forces,
):
    """Walk the tree once per leaf bucket into an interaction list, then apply it to the bucket.

    A cell is accepted when ``side < theta * distance`` from the cell's charge centre to the
    bucket's bounding box (i.e. to its nearest body): stricter than the per-body test, so the
    error is lower, while the walk costs one per bucket.  Theta is the smaller of the two groups'.
    The walk is stackless: skip a subtree by adding its size.  ``lists`` is one (4, CAP)
    scratch list per thread; a full list is applied and restarted.
    """
    th = min(params[0, THETA], params[1, THETA])
    theta2 = th * th
    cap = lists.shape[2]
    for li in prange(nleaves):
        lst = lists[_thread_id()]
        leaf = leaves[li]
        lo = int(tree[leaf, T_LO])
        hi = int(tree[leaf, T_HI])
        m = hi - lo
        eps = np.empty(m)
        bx0 = np.inf
        by0 = np.inf
        bz0 = np.inf
        bx1 = -np.inf
        by1 = -np.inf
        bz1 = -np.inf
        for t in range(lo, hi):
            eps[t - lo] = params[group[order[t]], SOFTENING]
            same[t] = 0.0
            b = order[t]
            forces[b, 0] = 0.0
            forces[b, 1] = 0.0
            forces[b, 2] = 0.0
            bx0 = min(bx0, sx[t])
            by0 = min(by0, sy[t])
            bz0 = min(bz0, sz[t])
            bx1 = max(bx1, sx[t])
            by1 = max(by1, sy[t])
            bz1 = max(bz1, sz[t])
        ox = 0.5 * (bx0 + bx1)
        oy = 0.5 * (by0 + by1)
        oz = 0.5 * (bz0 + bz1)
        nl = 0
        node = 0
        while node < count:
            row = tree[node]
            nsub = int(row[T_SUB])
            if node != leaf:
                if row[T_LO] <= lo < row[T_HI]:
                    node += 1  # an ancestor of this bucket: always open
                    continue
                c0 = row[T_CX]
                c1 = row[T_CY]
                c2 = row[T_CZ]
                ex = max(0.0, bx0 - c0, c0 - bx1)
                ey = max(0.0, by0 - c1, c1 - by1)
                ez = max(0.0, bz0 - c2, c2 - bz1)
                sd = row[T_SIDE]
                if sd * sd < theta2 * (ex * ex + ey * ey + ez * ez):
                    if nl == cap:
                        _apply_list(
                            lst, nl, lo, m, sx, sy, sz, ox, oy, oz, eps, forces, order, same
                        )
                        nl = 0
                    lst[0, nl] = c0 - ox
                    lst[1, nl] = c1 - oy
                    lst[2, nl] = c2 - oz
                    lst[3, nl] = row[T_Q]
                    nl += 1
                    node += nsub
                    continue
                if nsub != 1:
                    node += 1
                    continue
            # a leaf near the bucket (or the bucket itself): its bodies go in one by one, or
            # as one entry when they all sit on one point (side 0): a pile of m coincident
            # bodies would otherwise cost m^2 every step
            if row[T_SIDE] == 0.0:
                if nl == cap:
                    _apply_list(lst, nl, lo, m, sx, sy, sz, ox, oy, oz, eps, forces, order, same)
                    nl = 0
                lst[0, nl] = row[T_CX] - ox
                lst[1, nl] = row[T_CY] - oy
                lst[2, nl] = row[T_CZ] - oz
                lst[3, nl] = row[T_Q]
                nl += 1
                node += nsub
                continue
            for t in range(int(row[T_LO]), int(row[T_HI])):
                if nl == cap:
                    _apply_list(lst, nl, lo, m, sx, sy, sz, ox, oy, oz, eps, forces, order, same)
                    nl = 0
                lst[0, nl] = sx[t] - ox
                lst[1, nl] = sy[t] - oy
                lst[2, nl] = sz[t] - oz
                lst[3, nl] = sq[t]
                nl += 1
            node += nsub
        _apply_list(lst, nl, lo, m, sx, sy, sz, ox, oy, oz, eps, forces, order, same)
        for a in range(m):
            s = lo + a
            b = order[s]
            qb = sq[s]
            fx = forces[b, 0]
            fy = forces[b, 1]
            fz = forces[b, 2]
            # charge of coincident others (float32 sums: a lone body's is exactly its own)
            others = same[s] - np.float32(qb)
            if others > 0.0:  # push apart, each along its own direction
                push = others / eps[a]
                fx += push * _hash01(b, 1)
                fy += push * _hash01(b, 2)
                fz += push * _hash01(b, 3)
            forces[b, 0] = qb * fx
            forces[b, 1] = qb * fy
            forces[b, 2] = qb * fz


# --------------------------------------------------------------------------- integration


def integrate_node(  # type: ignore[no-untyped-def]
    i, pos, vel, forces, group, pinned, indptr, indices, weights, params, iteration, newpos
):
    """One node's update: springs, centre pull, clamps, warm-up, damping, bounds.

    Plain Python, compiled twice: inlined into the CPU kernel below and, as a CUDA device
    function, into ``cuda._integrate_kernel``, so both backends run the same rule. It lives in
    this module because numba's on-disk cache of ``_integrate`` only notices edits to its own
    file. Positions go to ``newpos`` because springs read the neighbours' old ones.
    """
    g = group[i]
    if pinned[i] != 0 or params[g, ENABLED] == 0.0:
        for k in range(3):
            newpos[i, k] = pos[i, k]
            vel[i, k] = 0.0
        return
    xi = pos[i, 0]
    yi = pos[i, 1]
    zi = pos[i, 2]
    fx = forces[i, 0]
    fy = forces[i, 1]
    fz = forces[i, 2]
    sk_i = params[g, SPRING_K]
    rl_i = params[g, REST_LENGTH]
    for e in range(indptr[i], indptr[i + 1]):
        j = indices[e]
        if j == i:
            continue
        dx = pos[j, 0] - xi
        dy = pos[j, 1] - yi
        dz = pos[j, 2] - zi
        d = math.sqrt(dx * dx + dy * dy + dz * dz)
        if d > 0.0:
            gj = group[j]
            k_s = 0.5 * (sk_i + params[gj, SPRING_K])
            rest = 0.5 * (rl_i + params[gj, REST_LENGTH])
            f = k_s * (d - rest) * weights[e] / d
            fx += dx * f
            fy += dy * f
            fz += dz * f
    cg = params[g, CENTER_GRAVITY_K]
    fx -= cg * xi
    fy -= cg * yi
    fz -= cg * zi
    fmax = params[g, MAX_FORCE]
    fm2 = fx * fx + fy * fy + fz * fz
    if fm2 > fmax * fmax:
        r = fmax / math.sqrt(fm2)
        fx *= r
        fy *= r
        fz *= r
    warm = params[g, WARMUP_ITERATIONS]
    if warm > 0.0:
        ramp = min(1.0, (iteration + 1.0) / warm)
        ramp *= ramp
        fx *= ramp
        fy *= ramp
        fz *= ramp
    dt = params[g, DT]
    damp = params[g, DAMPING]
    vx = (vel[i, 0] + fx * dt) * damp
    vy = (vel[i, 1] + fy * dt) * damp
    vz = (vel[i, 2] + fz * dt) * damp
    vmax = params[g, MAX_VELOCITY]
    vm2 = vx * vx + vy * vy + vz * vz
    if vm2 > vmax * vmax:
        r = vmax / math.sqrt(vm2)
        vx *= r
        vy *= r
        vz *= r
    nx = xi + vx * dt
    ny = yi + vy * dt
    nz = zi + vz * dt
    if params[g, ENABLE_BOUNDS] != 0.0:
        bnd = params[g, BOUNDS_SIZE]
        bd = params[g, BOUNDARY_DAMPING]
        if nx > bnd:
            nx = bnd
            vx = -vx * bd
        elif nx < -bnd:
            nx = -bnd
            vx = -vx * bd
        if ny > bnd:
            ny = bnd
            vy = -vy * bd
        elif ny < -bnd:
            ny = -bnd
            vy = -vy * bd
        if nz > bnd:
            nz = bnd
            vz = -vz * bd
        elif nz < -bnd:
            nz = -bnd
            vz = -vz * bd
    # Hard wall at MAX_COORD whatever the bounds setting: beyond it float32 math overflows.
    if abs(nx) > MAX_COORD:
        nx = math.copysign(MAX_COORD, nx)
        vx = 0.0
    if abs(ny) > MAX_COORD:
        ny = math.copysign(MAX_COORD, ny)
        vy = 0.0
    if abs(nz) > MAX_COORD:
        nz = math.copysign(MAX_COORD, nz)
        vz = 0.0
    newpos[i, 0] = nx
    newpos[i, 1] = ny
    newpos[i, 2] = nz
    vel[i, 0] = vx
    vel[i, 1] = vy
    vel[i, 2] = vz


_integrate_node = numba.njit(inline="always", nogil=True, cache=CACHE, fastmath=FASTMATH)(
    integrate_node
)


@numba.njit(parallel=True, nogil=True, cache=CACHE, fastmath=FASTMATH)
def _integrate(  # type: ignore[no-untyped-def]
    pos, vel, forces, group, pinned, indptr, indices, weights, params, iteration, newpos
):
    """Every node's update (``integrate_node``) into ``newpos`` and ``vel``."""
    for i in prange(pos.shape[0]):
        _integrate_node(
            i, pos, vel, forces, group, pinned, indptr, indices, weights, params, iteration, newpos
        )


@numba.njit(parallel=True, nogil=True, cache=CACHE)
def _copy_rows(src, dst):  # type: ignore[no-untyped-def]
    for i in prange(src.shape[0]):
        dst[i, 0] = src[i, 0]
        dst[i, 1] = src[i, 1]
        dst[i, 2] = src[i, 2]


# --------------------------------------------------------------------------- workspace


class CpuWorkspace:
    """Scratch buffers for ``step``: grown by 1.5x when needed, shrunk when n falls below 1/4.

    Not thread-safe: one workspace per stepping thread.
    """

    def __init__(self) -> None:
        self.capacity = 0
        self.lists = np.zeros((0, 4, LIST_CAP), np.float32)  # per-thread interaction lists
        self._alloc(0)

    def _alloc(self, cap: int) -> None:
        self.capacity = cap
        m = 2 * cap + 1
        self.forces = np.zeros((cap, 3), np.float64)
        self.newpos = np.zeros((cap, 3), np.float64)
        self.q = np.zeros(cap, np.float64)
        self.bad = np.zeros(cap, np.uint8)
        self.codes = np.zeros(cap, np.int64)
        self.order = np.zeros(cap, np.int64)
        self.tmp_codes = np.zeros(cap, np.int64)
        self.tmp_order = np.zeros(cap, np.int64)
        self.counts = np.zeros(65536, np.int64)
        self.sorted4 = np.zeros((4, cap), np.float64)
        self.nlo = np.zeros(m, np.int64)
        self.nhi = np.zeros(m, np.int64)
        self.nchild = np.zeros(m, np.int64)
        self.leaves = np.zeros(m, np.int64)
        self.same = np.zeros(cap, np.float64)  # charge coincident with each body
        if self.lists.shape[0] < _MAX_THREADS:
            self.lists = np.zeros((_MAX_THREADS, 4, LIST_CAP), np.float32)
        self.side = np.zeros(m, np.float64)
        self.tree = np.zeros((m, 8), np.float64)

    def ensure(self, n: int) -> None:
        if n > self.capacity or (self.capacity > 256 and n < self.capacity // 4):
            self._alloc(max(64, n + n // 2))

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in vars(self).values() if isinstance(a, np.ndarray))


@dataclass(frozen=True, slots=True)
class StepResult:
    nonfinite_resets: int
    kinetic_energy: float  # mean 0.5 |v|^2 per node after the step (unit mass)
    peak_kinetic_energy: float = 0.0  # the largest per-node 0.5 |v|^2 after the step


def repulsion(
    ws: CpuWorkspace,
    pos: F64,
    group: npt.NDArray[np.int8],
    params: ParamTable,
    *,
    exact: bool | None = None,
) -> F64:
    """Repulsive forces for all nodes (a view into the workspace, valid until the next call)."""
    n = pos.shape[0]
    ws.ensure(n)
    forces = ws.forces[:n]
    q = ws.q[:n]
    _charges(group, params, q)
    use_exact = n <= EXACT_MAX_NODES if exact is None else exact
    if use_exact:
        x, y, z = (ws.sorted4[k, :n] for k in range(3))
        _split_xyz(pos, x, y, z)
        _exact_forces(x, y, z, q, group, params, forces)
        return forces
    x0, y0, z0, extent = _bounds(pos)
    extent = max(float(extent), 1e-9) * (1.0 + 1e-9)
    codes = ws.codes[:n]
    order = ws.order[:n]
    _morton(pos, x0, y0, z0, extent, codes, order)
    _radix_sort(codes, order, ws.tmp_codes[:n], ws.tmp_order[:n], ws.counts)
    count, nleaves = _build_tree(codes, extent, ws.nlo, ws.nhi, ws.nchild, ws.side, ws.leaves)
    sx, sy, sz, sq = (ws.sorted4[k, :n] for k in range(4))
    _gather_sorted(pos, q, order, sx, sy, sz, sq)
    _summarize(count, ws.nlo, ws.nhi, ws.nchild, ws.side, sx, sy, sz, sq, ws.tree)
    # small chunks: bucket costs vary a lot between dense and sparse regions
    old_chunk = numba.set_parallel_chunksize(16)
    try:
        _bh_forces(
            count,
            nleaves,
            ws.leaves,
            ws.tree,
            sx,
            sy,
            sz,
            sq,
            order,
            group,
            params,
            ws.lists,
            ws.same[:n],
            forces,
        )
    finally:
        numba.set_parallel_chunksize(old_chunk)
    return forces


def step(
    ws: CpuWorkspace,
    pos: F64,
    vel: F64,
    group: npt.NDArray[np.int8],
    pinned: npt.NDArray[np.uint8],
    indptr: I64,
    indices: I64,
    weights: F64,
    params: ParamTable,
    iteration: int,
) -> StepResult:
    """Advance ``pos``/``vel`` (float64, (n, 3), C order) by one step in place.

    ``indptr``/``indices``/``weights`` are a CSR adjacency holding every edge in both
    directions; ``group`` is 0 (knowledge) or 1 (agent); ``pinned`` is 0/1.
    """
    n = pos.shape[0]
    if n == 0:
        return StepResult(0, 0.0)
    if n < PARALLEL_MIN_NODES:
        threads = numba.get_num_threads()
        numba.set_num_threads(1)  # thread-local: only this stepping thread is affected
        try:
            return _step(ws, pos, vel, group, pinned, indptr, indices, weights, params, iteration)
        finally:
            numba.set_num_threads(threads)
    return _step(ws, pos, vel, group, pinned, indptr, indices, weights, params, iteration)


def _step(
    ws: CpuWorkspace,
    pos: F64,
    vel: F64,
    group: npt.NDArray[np.int8],
    pinned: npt.NDArray[np.uint8],
    indptr: I64,
    indices: I64,
    weights: F64,
    params: ParamTable,
    iteration: int,
) -> StepResult:
    n = pos.shape[0]
    ws.ensure(n)
    bad = ws.bad[:n]
    spread = float(np.min(params[:, REST_LENGTH])) * 0.1
    resets, _, _ = repair_nonfinite(pos, vel, indptr, indices, bad, spread)
    forces = repulsion(ws, pos, group, params)
    newpos = ws.newpos[:n]
    _integrate(
        pos, vel, forces, group, pinned, indptr, indices, weights, params, float(iteration), newpos
    )
    _copy_rows(newpos, pos)
    after, ke, peak = repair_nonfinite(pos, vel, indptr, indices, bad, spread)
    return StepResult(resets + after, ke / n, peak)


def csr_from_edges(n: int, src: I64, dst: I64, weight: F64) -> tuple[I64, I64, F64]:
    """Both-direction CSR adjacency from dense-index edge arrays (integer sort only)."""
    both_src = np.concatenate([src, dst]).astype(np.int64, copy=False)
    both_dst = np.concatenate([dst, src]).astype(np.int64, copy=False)
    both_w = np.concatenate([weight, weight]).astype(np.float64, copy=False)
    order = np.argsort(both_src, kind="stable")
    indices = np.ascontiguousarray(both_dst[order])
    weights = np.ascontiguousarray(both_w[order])
    counts = np.bincount(both_src, minlength=n) if both_src.size else np.zeros(n, np.int64)
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, indices, weights
