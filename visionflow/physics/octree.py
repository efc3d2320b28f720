"""The Barnes-Hut octree of the CPU repulsion: build it, then walk it once per leaf bucket.

Build: integer Morton codes (21 bits per axis), sorted by an integer LSD radix sort (no float
sort, so no NaN can break an ordering), split into a pre-order node array with at most 2n - 1
nodes, then summarised bottom-up (charge, charge centre, side, subtree size) into one 64-byte
row per node. Walk: stackless (a subtree is skipped by adding its size), one interaction list
per leaf bucket, applied in float32 (``_apply_list``).  :func:`forces` runs the whole pipeline;
``cpu.repulsion`` calls it above ``cpu.EXACT_MAX_NODES`` nodes.

Every kernel here is called from Python (``forces``) or inlined from this same file, so
numba's on-disk cache of each follows this file's hash. The exception is ``jit.hash01``, see
there.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt
from numba import prange

from visionflow.physics.jit import CACHE, FASTMATH, hash01
from visionflow.physics.params import SOFTENING, THETA, ParamTable

__all__ = ["LEAF_SIZE", "LIST_CAP", "OctreeScratch", "forces"]

F64 = npt.NDArray[np.float64]

# Bodies per octree leaf (bucket).  Small buckets cost tree walks, big ones direct pair sums;
# single-thread ms at 10k / 100k nodes: 16 -> 8.0 / 124, 32 -> 6.1 / 78, 64 -> 5.4 / 68.
LEAF_SIZE = 64
MORTON_BITS = 21  # per axis; 63 bits in all, fits an int64
_STACK = 512  # explicit build stack: <= 8 entries per level and 21 levels
LIST_CAP = 2048  # interaction-list entries per thread (32 KiB of float32); a full one is flushed

_thread_id = numba.get_thread_id  # type: ignore[attr-defined]
_MAX_THREADS = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- build


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
                fx += push * hash01(b, 1)
                fy += push * hash01(b, 2)
                fz += push * hash01(b, 3)
            forces[b, 0] = qb * fx
            forces[b, 1] = qb * fy
            forces[b, 2] = qb * fz


# --------------------------------------------------------------------------- driver


class OctreeScratch:
    """The tree's buffers for up to ``capacity`` bodies (``alloc`` replaces them all).

    Not thread-safe: one per stepping thread (it lives in ``cpu.CpuWorkspace``).
    """

    def __init__(self) -> None:
        self.lists = np.zeros((0, 4, LIST_CAP), np.float32)  # per-thread interaction lists
        self.alloc(0)

    def alloc(self, cap: int) -> None:
        m = 2 * cap + 1
        self.codes = np.zeros(cap, np.int64)
        self.order = np.zeros(cap, np.int64)
        self.tmp_codes = np.zeros(cap, np.int64)
        self.tmp_order = np.zeros(cap, np.int64)
        self.counts = np.zeros(65536, np.int64)
        self.nlo = np.zeros(m, np.int64)
        self.nhi = np.zeros(m, np.int64)
        self.nchild = np.zeros(m, np.int64)
        self.leaves = np.zeros(m, np.int64)
        self.same = np.zeros(cap, np.float64)  # charge coincident with each body
        if self.lists.shape[0] < _MAX_THREADS:
            self.lists = np.zeros((_MAX_THREADS, 4, LIST_CAP), np.float32)
        self.side = np.zeros(m, np.float64)
        self.tree = np.zeros((m, 8), np.float64)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in vars(self).values() if isinstance(a, np.ndarray))


def forces(
    scratch: OctreeScratch,
    pos: F64,
    q: F64,
    group: npt.NDArray[np.int8],
    params: ParamTable,
    sorted4: F64,
    out: F64,
) -> None:
    """Barnes-Hut repulsion of charges ``q`` at ``pos`` into ``out`` (n, 3), overwritten.

    ``scratch`` must hold at least n bodies; ``sorted4`` is a (4, >= n) buffer for the bodies
    in Morton order (x, y, z, charge).
    """
    n = pos.shape[0]
    x0, y0, z0, extent = _bounds(pos)
    extent = max(float(extent), 1e-9) * (1.0 + 1e-9)
    codes = scratch.codes[:n]
    order = scratch.order[:n]
    _morton(pos, x0, y0, z0, extent, codes, order)
    _radix_sort(codes, order, scratch.tmp_codes[:n], scratch.tmp_order[:n], scratch.counts)
    count, nleaves = _build_tree(
        codes, extent, scratch.nlo, scratch.nhi, scratch.nchild, scratch.side, scratch.leaves
    )
    sx, sy, sz, sq = (sorted4[k, :n] for k in range(4))
    _gather_sorted(pos, q, order, sx, sy, sz, sq)
    _summarize(
        count, scratch.nlo, scratch.nhi, scratch.nchild, scratch.side, sx, sy, sz, sq, scratch.tree
    )
    # small chunks: bucket costs vary a lot between dense and sparse regions
    old_chunk = numba.set_parallel_chunksize(16)
    try:
        _bh_forces(
            count,
            nleaves,
            scratch.leaves,
            scratch.tree,
            sx,
            sy,
            sz,
            sq,
            order,
            group,
            params,
            scratch.lists,
            scratch.same[:n],
            out,
        )
    finally:
        numba.set_parallel_chunksize(old_chunk)
