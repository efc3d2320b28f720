"""Barnes-Hut repulsion on the GPU (numba-cuda): Morton codes, radix sort, LBVH, group walk.

Same model as ``cpu.repulsion``: charge ``q = sqrt(repel_k) * (1 + degree)`` (``repel_k`` of
the node's group, the degree from the CSR ``indptr``), pair force
``q_i q_j / (d^2 + softening_i)`` along the separating direction, a cell acts as its total charge
at its charge-weighted centre, theta is the smaller of the two groups'.  Pipeline per step, all
on the device, nothing copied back:

1. bounding box of the positions: a block reduction into per-block partials, then one block
   folds them (no float atomics, so no initialisation kernel and no NaN ordering questions);
2. 30-bit Morton codes (10 bits per axis) over that box, same quantisation as the CPU's 21-bit
   codes;
3. a stable LSD radix sort of (code, index): 4 passes of 8 bits, each a per-block digit
   histogram, one exclusive scan over the digit-major histogram table and a stable scatter
   (rank inside a block = how many earlier items of the block share the digit, read from
   shared memory: no warp intrinsics, so the simulator runs it too).  Equal codes keep index
   order, i.e. the result equals ``np.argsort(codes, kind="stable")``;
4. a Karras (2012) binary radix tree over the sorted codes: internal node i covers a range
   found from longest common prefixes of (code, index) keys, so duplicate codes are fine;
   internal nodes are 0..n-2 (root 0), leaf k is node n-1+k, every node has a parent pointer;
5. a bottom-up pass, one thread per leaf: a per-node atomic counter lets the second child to
   arrive combine both children (charge, charge-weighted centre, bounding box) and walk on
   up.  The sibling's data is read with atomic adds of 0 (served by L2, so never a stale L1
   line);
6. the walk: each warp takes GROUP = 32 consecutive bodies in Morton order and walks the tree
   once for all of them, like the CPU's bucket walk: a cell is accepted when its longest box
   edge is below theta times the gap between its box and the group's box, else opened.  A
   cell holding a body of the group overlaps the group's box and is always opened, so no body
   meets itself in a monopole.  The decisions depend only on the group's box and the node, so
   all lanes take the same path over a private stack: no divergence, no barriers, each node
   read is a broadcast.  A leaf is one body: the exact pair term; coincident bodies are
   counted and pushed apart the way the CPU kernels do.  This criterion is stricter than the
   per-body one (p99 error 2.4 % instead of 21 % at theta 0.8 on a 200-node Gaussian cloud,
   for about 3x the cell visits per body).

Import only when the CUDA backend is wanted (see ``visionflow.physics.cuda``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from visionflow.physics.numba_cuda import cuda
from visionflow.physics.params import REPEL_K, SOFTENING, THETA

MORTON_BITS = 10  # per axis: 30-bit codes in a uint32
RADIX_BITS = 8
RADIX = 1 << RADIX_BITS
SORT_PASSES = 4  # 4 x 8 bits covers the 30-bit codes
SORT_BLOCK = RADIX  # threads per sort block: one per digit when histograms are written out
SORT_ITEMS = 8  # items per thread per block: 2048-code tiles
SORT_TILE = SORT_BLOCK * SORT_ITEMS
SCAN_BLOCK = 256
BOX_BLOCK = 256
BOX_MAX_BLOCKS = 256
BUILD_BLOCK = 128
GROUP = 32  # bodies per tree walk: one warp
WALK_BLOCK = 128
STACK = 96  # walk stack entries: a Karras tree over 62-bit keys is at most ~62 deep

F64 = npt.NDArray[np.float64]


# --------------------------------------------------------------------------- device helpers


@cuda.jit(device=True, inline=True)
def _spread10(v):  # type: ignore[no-untyped-def]
    """Spread the low 10 bits of v so that two zero bits separate each (Morton interleave)."""
    x = v & 0x3FF
    x = (x | (x << 16)) & 0x030000FF
    x = (x | (x << 8)) & 0x0300F00F
    x = (x | (x << 4)) & 0x030C30C3
    x = (x | (x << 2)) & 0x09249249
    return x


@cuda.jit(device=True, inline=True)
def _clz32(x):  # type: ignore[no-untyped-def]
    # cast first: numba widens uint32 ^ uint32 to 64 bits, and clz counts the type's width
    return cuda.clz(np.uint32(x))


@cuda.jit(device=True, inline=True)
def _delta(codes, n, i, j):  # type: ignore[no-untyped-def]
    """Length of the common prefix of keys i and j, keys being (code, index); -1 off the ends."""
    if j < 0 or j >= n:
        return -1
    a = codes[i]
    b = codes[j]
    if a != b:
        return _clz32(a ^ b)
    return 32 + _clz32(i ^ j)


@cuda.jit(device=True, inline=True)
def _load(arr, i, k):  # type: ignore[no-untyped-def]
    """Coherent read of another thread's fresh write (an atomic is served by L2, not L1)."""
    return cuda.atomic.add(arr, (i, k), 0.0)


@cuda.jit(device=True, inline=True)
def hash01(i, k):  # type: ignore[no-untyped-def]
    """The CPU's ``_hash01``: a deterministic pseudo-random number in [-1, 1)."""
    s = math.sin(float(i) * 12.9898 + float(k) * 78.233) * 43758.5453
    return 2.0 * (s - math.floor(s)) - 1.0


@cuda.jit(device=True, inline=True)
def charge(params, group, indptr, i):  # type: ignore[no-untyped-def]
    """The CPU's ``_charges``: ``sqrt(repel_k) * mass`` of node i, mass = 1 + degree."""
    return math.sqrt(params[group[i], REPEL_K]) * (1.0 + indptr[i + 1] - indptr[i])


# --------------------------------------------------------------------------- box + Morton


@cuda.jit(cache=False)
def _box_partial_kernel(pos, partial):  # type: ignore[no-untyped-def]
    """Per-block min/max of each axis (grid-stride) into ``partial[block, 0:6]``."""
    n = pos.shape[0]
    tid = cuda.threadIdx.x
    sh = cuda.shared.array((6, BOX_BLOCK), np.float64)
    lo0 = math.inf
    lo1 = math.inf
    lo2 = math.inf
    hi0 = -math.inf
    hi1 = -math.inf
    hi2 = -math.inf
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < n:
        # NaN fails every comparison and is left out
        x = pos[i, 0]
        y = pos[i, 1]
        z = pos[i, 2]
        if x < lo0:
            lo0 = x
        if x > hi0:
            hi0 = x
        if y < lo1:
            lo1 = y
        if y > hi1:
            hi1 = y
        if z < lo2:
            lo2 = z
        if z > hi2:
            hi2 = z
        i += stride
    sh[0, tid] = lo0
    sh[1, tid] = lo1
    sh[2, tid] = lo2
    sh[3, tid] = hi0
    sh[4, tid] = hi1
    sh[5, tid] = hi2
    cuda.syncthreads()
    s = BOX_BLOCK // 2
    while s > 0:
        if tid < s:
            for k in range(3):
                sh[k, tid] = min(sh[k, tid], sh[k, tid + s])
                sh[k + 3, tid] = max(sh[k + 3, tid], sh[k + 3, tid + s])
        cuda.syncthreads()
        s //= 2
    if tid < 6:
        partial[cuda.blockIdx.x, tid] = sh[tid, 0]


@cuda.jit(cache=False)
def _box_final_kernel(partial, nparts, box):  # type: ignore[no-untyped-def]
    """One block: fold the partials into ``box = (x0, y0, z0, extent)`` like ``cpu._bounds``."""
    tid = cuda.threadIdx.x
    sh = cuda.shared.array((6, BOX_BLOCK), np.float64)
    for k in range(3):
        sh[k, tid] = math.inf
        sh[k + 3, tid] = -math.inf
    j = tid
    while j < nparts:
        for k in range(3):
            sh[k, tid] = min(sh[k, tid], partial[j, k])
            sh[k + 3, tid] = max(sh[k + 3, tid], partial[j, k + 3])
        j += BOX_BLOCK
    cuda.syncthreads()
    s = BOX_BLOCK // 2
    while s > 0:
        if tid < s:
            for k in range(3):
                sh[k, tid] = min(sh[k, tid], sh[k, tid + s])
                sh[k + 3, tid] = max(sh[k + 3, tid], sh[k + 3, tid + s])
        cuda.syncthreads()
        s //= 2
    if tid == 0:
        ext = max(sh[3, 0] - sh[0, 0], sh[4, 0] - sh[1, 0], sh[5, 0] - sh[2, 0])
        if not (ext > 1e-9):  # also catches an all-NaN box
            ext = 1e-9
        box[0] = sh[0, 0] if math.isfinite(sh[0, 0]) else 0.0
        box[1] = sh[1, 0] if math.isfinite(sh[1, 0]) else 0.0
        box[2] = sh[2, 0] if math.isfinite(sh[2, 0]) else 0.0
        box[3] = ext * (1.0 + 1e-9)


@cuda.jit(cache=False)
def _morton_kernel(pos, box, codes, index):  # type: ignore[no-untyped-def]
    i = cuda.grid(1)
    if i >= pos.shape[0]:
        return
    top = (1 << MORTON_BITS) - 1
    scale = top / box[3]
    c = 0
    for k in range(3):
        t = (pos[i, k] - box[k]) * scale
        # written so that NaN (fails both tests) lands in the top cell, as on the CPU
        v = int(t) if t >= 0.0 else 0
        v = v if t <= top else top
        c |= _spread10(v) << (2 - k)
    codes[i] = c
    index[i] = i


# --------------------------------------------------------------------------- radix sort


@cuda.jit(cache=False)
def _hist_kernel(keys, n, shift, hist, nblocks):  # type: ignore[no-untyped-def]
    """Digit counts of this block's tile into ``hist[digit * nblocks + block]``."""
    tid = cuda.threadIdx.x
    blk = cuda.blockIdx.x
    counts = cuda.shared.array(RADIX, np.int32)
    counts[tid] = 0
    cuda.syncthreads()
    base = blk * SORT_TILE
    for k in range(SORT_ITEMS):
        i = base + k * SORT_BLOCK + tid
        if i < n:
            cuda.atomic.add(counts, (keys[i] >> shift) & (RADIX - 1), 1)
    cuda.syncthreads()
    hist[tid * nblocks + blk] = counts[tid]


@cuda.jit(cache=False)
def _scan_kernel(data, m):  # type: ignore[no-untyped-def]
    """In-place exclusive prefix sum of ``data[:m]`` by one block, a chunk at a time."""
    tid = cuda.threadIdx.x
    sh = cuda.shared.array(SCAN_BLOCK, np.int32)
    carry = 0
    for base in range(0, m, SCAN_BLOCK):
        i = base + tid
        v = data[i] if i < m else 0
        sh[tid] = v
        cuda.syncthreads()
        off = 1
        while off < SCAN_BLOCK:  # Hillis-Steele inclusive scan
            t = sh[tid - off] if tid >= off else 0
            cuda.syncthreads()
            sh[tid] += t
            cuda.syncthreads()
            off *= 2
        if i < m:
            data[i] = carry + sh[tid] - v
        carry += sh[SCAN_BLOCK - 1]
        cuda.syncthreads()  # everyone has read sh before the next chunk overwrites it


@cuda.jit(cache=False)
def _scatter_kernel(keys, vals, n, shift, offsets, nblocks, out_keys, out_vals):  # type: ignore[no-untyped-def]
    """Stable scatter of this block's tile to the scanned digit offsets."""
    tid = cuda.threadIdx.x
    blk = cuda.blockIdx.x
    base_of = cuda.shared.array(RADIX, np.int32)
    digits = cuda.shared.array(SORT_BLOCK, np.int32)
    base_of[tid] = offsets[tid * nblocks + blk]
    base = blk * SORT_TILE
    for k in range(SORT_ITEMS):
        start = base + k * SORT_BLOCK
        if start >= n:  # uniform across the block
            break
        i = start + tid
        d = RADIX  # sentinel for the tail: matches no real digit
        if i < n:
            d = (keys[i] >> shift) & (RADIX - 1)
        digits[tid] = d
        cuda.syncthreads()
        if i < n:
            rank = 0
            for j in range(tid):  # all threads read digits[j] together: a broadcast
                if digits[j] == d:
                    rank += 1
            p = base_of[d] + rank
            out_keys[p] = keys[i]
            out_vals[p] = vals[i]
        cuda.syncthreads()  # base_of read by all before it moves on
        if i < n:
            cuda.atomic.add(base_of, d, 1)
        cuda.syncthreads()


# --------------------------------------------------------------------------- LBVH


@cuda.jit(cache=False)
def _gather_kernel(pos, group, params, indptr, order, body):  # type: ignore[no-untyped-def]
    """Bodies in Morton order: ``body[s] = (x, y, z, q)`` of node ``order[s]``."""
    s = cuda.grid(1)
    if s >= order.shape[0]:
        return
    b = order[s]
    body[s, 0] = pos[b, 0]
    body[s, 1] = pos[b, 1]
    body[s, 2] = pos[b, 2]
    body[s, 3] = charge(params, group, indptr, b)


@cuda.jit(cache=False)
def _karras_kernel(codes, n, left, right, parent, lo, hi, counter):  # type: ignore[no-untyped-def]
    """Internal node i of the binary radix tree over the sorted keys (Karras 2012, fig. 4)."""
    i = cuda.grid(1)
    if i >= n - 1:
        return
    counter[i] = 0  # reset for the bottom-up pass of this step
    if i == 0:
        parent[0] = -1
    d = 1 if _delta(codes, n, i, i + 1) - _delta(codes, n, i, i - 1) > 0 else -1
    dmin = _delta(codes, n, i, i - d)
    lmax = 2
    while _delta(codes, n, i, i + lmax * d) > dmin:
        lmax *= 2
    ln = 0
    t = lmax // 2
    while t >= 1:
        if _delta(codes, n, i, i + (ln + t) * d) > dmin:
            ln += t
        t //= 2
    j = i + ln * d
    dnode = _delta(codes, n, i, j)
    s = 0
    div = 2
    t = (ln + div - 1) // div
    while True:
        if _delta(codes, n, i, i + (s + t) * d) > dnode:
            s += t
        if t <= 1:
            break
        div *= 2
        t = (ln + div - 1) // div
    gamma = i + s * d + min(d, 0)
    first = min(i, j)
    last = max(i, j)
    lc = gamma + (n - 1) if first == gamma else gamma
    rc = gamma + 1 + (n - 1) if last == gamma + 1 else gamma + 1
    left[i] = lc
    right[i] = rc
    parent[lc] = i
    parent[rc] = i
    lo[i] = first
    hi[i] = last


@cuda.jit(cache=False)
def _summarize_kernel(body, n, left, right, parent, counter, node):  # type: ignore[no-untyped-def]
    """Bottom-up: ``node[i] = (cx, cy, cz, q, x0, y0, z0, x1, y1, z1)`` of internal node i.

    Charge, charge-weighted centre and bounding box of the node's bodies.
    """
    k = cuda.grid(1)
    if k >= n:
        return
    nint = n - 1
    cur = k + nint
    q = body[k, 3]
    cx = body[k, 0]
    cy = body[k, 1]
    cz = body[k, 2]
    x0 = cx
    y0 = cy
    z0 = cz
    x1 = cx
    y1 = cy
    z1 = cz
    while True:
        p = parent[cur]
        if p < 0:
            return
        cuda.threadfence()  # this thread's writes of ``cur`` land before the counter moves
        if cuda.atomic.add(counter, p, 1) == 0:
            return  # first child here: the sibling's thread will finish p
        cuda.threadfence()  # acquire side: the sibling's writes are read only after this
        sib = right[p] if left[p] == cur else left[p]
        if sib >= nint:
            s = sib - nint
            sq = body[s, 3]
            sx = body[s, 0]
            sy = body[s, 1]
            sz = body[s, 2]
            sx0 = sx
            sy0 = sy
            sz0 = sz
            sx1 = sx
            sy1 = sy
            sz1 = sz
        else:
            sx = _load(node, sib, 0)
            sy = _load(node, sib, 1)
            sz = _load(node, sib, 2)
            sq = _load(node, sib, 3)
            sx0 = _load(node, sib, 4)
            sy0 = _load(node, sib, 5)
            sz0 = _load(node, sib, 6)
            sx1 = _load(node, sib, 7)
            sy1 = _load(node, sib, 8)
            sz1 = _load(node, sib, 9)
        tq = q + sq
        if tq > 0.0:
            cx = (q * cx + sq * sx) / tq
            cy = (q * cy + sq * sy) / tq
            cz = (q * cz + sq * sz) / tq
        q = tq
        x0 = min(x0, sx0)
        y0 = min(y0, sy0)
        z0 = min(z0, sz0)
        x1 = max(x1, sx1)
        y1 = max(y1, sy1)
        z1 = max(z1, sz1)
        node[p, 0] = cx
        node[p, 1] = cy
        node[p, 2] = cz
        node[p, 3] = q
        node[p, 4] = x0
        node[p, 5] = y0
        node[p, 6] = z0
        node[p, 7] = x1
        node[p, 8] = y1
        node[p, 9] = z1
        cur = p


@cuda.jit(cache=False)
def _walk_kernel(body, order, n, left, right, node, group, params, forces):  # type: ignore[no-untyped-def]
    """Forces on GROUP consecutive (Morton-ordered) bodies per warp, one tree walk per group.

    Every lane of a group makes the same decisions from the same data (the group's box and
    the node), so the lanes never diverge and read the same node at the same time.
    """
    t = cuda.grid(1)
    t0 = (t // GROUP) * GROUP
    if t0 >= n:
        return
    t1 = min(t0 + GROUP, n)
    active = t < n
    gx0 = math.inf
    gy0 = math.inf
    gz0 = math.inf
    gx1 = -math.inf
    gy1 = -math.inf
    gz1 = -math.inf
    for s in range(t0, t1):  # the group's box; the loads are broadcasts
        gx0 = min(gx0, body[s, 0])
        gy0 = min(gy0, body[s, 1])
        gz0 = min(gz0, body[s, 2])
        gx1 = max(gx1, body[s, 0])
        gy1 = max(gy1, body[s, 1])
        gz1 = max(gz1, body[s, 2])
    th = min(params[0, THETA], params[1, THETA])
    th2 = th * th
    x = 0.0
    y = 0.0
    z = 0.0
    eps = 1.0
    if active:
        x = body[t, 0]
        y = body[t, 1]
        z = body[t, 2]
        eps = params[group[order[t]], SOFTENING]
    nint = n - 1
    stack = cuda.local.array(STACK, np.int32)
    stack[0] = 0
    sp = 1
    fx = 0.0
    fy = 0.0
    fz = 0.0
    here = 0.0  # charge at exactly this body's position, its own included
    while sp > 0:
        sp -= 1
        c = stack[sp]
        if c >= nint:
            if active:
                j = c - nint
                dx = x - body[j, 0]
                dy = y - body[j, 1]
                dz = z - body[j, 2]
                d2 = dx * dx + dy * dy + dz * dz
                if d2 == 0.0:
                    here += body[j, 3]  # itself, or a coincident body
                else:
                    f = body[j, 3] / ((d2 + eps) * math.sqrt(d2))
                    fx += dx * f
                    fy += dy * f
                    fz += dz * f
            continue
        cx0 = node[c, 4]
        cy0 = node[c, 5]
        cz0 = node[c, 6]
        cx1 = node[c, 7]
        cy1 = node[c, 8]
        cz1 = node[c, 9]
        # gap between the cell's box and the group's box (0 where they overlap, e.g. when
        # the cell holds a body of the group: such a cell is always opened)
        ex = max(0.0, cx0 - gx1, gx0 - cx1)
        ey = max(0.0, cy0 - gy1, gy0 - cy1)
        ez = max(0.0, cz0 - gz1, gz0 - cz1)
        side = max(cx1 - cx0, cy1 - cy0, cz1 - cz0)
        if side == 0.0:
            # every body under this cell sits on one point (its box corner): one exact charge,
            # not a descent to each of them (a pile of m coincident bodies would cost m^2)
            if active:
                dx = x - cx0
                dy = y - cy0
                dz = z - cz0
                d2 = dx * dx + dy * dy + dz * dz
                if d2 == 0.0:
                    here += node[c, 3]
                else:
                    f = node[c, 3] / ((d2 + eps) * math.sqrt(d2))
                    fx += dx * f
                    fy += dy * f
                    fz += dz * f
        elif side * side < th2 * (ex * ex + ey * ey + ez * ez) or sp + 2 > STACK:
            # accepted (or, never in practice, a full stack: take the monopole)
            if active:
                dx = x - node[c, 0]
                dy = y - node[c, 1]
                dz = z - node[c, 2]
                d2 = dx * dx + dy * dy + dz * dz
                f = node[c, 3] / ((d2 + eps) * math.sqrt(d2))
                fx += dx * f
                fy += dy * f
                fz += dz * f
        else:
            stack[sp] = right[c]
            stack[sp + 1] = left[c]
            sp += 2
    if active:
        b = order[t]
        qi = body[t, 3]
        if here > qi:  # coincident nodes: the same deterministic push as the CPU kernels
            push = (here - qi) / eps
            fx += push * hash01(b, 1)
            fy += push * hash01(b, 2)
            fz += push * hash01(b, 3)
        forces[b, 0] = qi * fx
        forces[b, 1] = qi * fy
        forces[b, 2] = qi * fz


# --------------------------------------------------------------------------- host side


def _blocks(n: int, per: int) -> int:
    return max(1, (n + per - 1) // per)


class BarnesHut:
    """Device scratch for one node count plus the launches of the pipeline above.

    Arrays are allocated once per ``n`` and reused across steps.  All methods take device
    arrays and leave their results on the device.
    """

    def __init__(self, n: int) -> None:
        if n < 2:
            raise ValueError("Barnes-Hut needs at least two bodies")
        self.n = n
        self.sort_blocks = _blocks(n, SORT_TILE)
        self.box_blocks = min(BOX_MAX_BLOCKS, _blocks(n, BOX_BLOCK))
        da = cuda.device_array
        self.box_partial = da((self.box_blocks, 6), np.float64)
        self.box = da(4, np.float64)
        self.codes = da(n, np.uint32)
        self.order = da(n, np.int32)
        self.tmp_codes = da(n, np.uint32)
        self.tmp_order = da(n, np.int32)
        self.hist = da(RADIX * self.sort_blocks, np.int32)
        self.body = da((n, 4), np.float64)
        self.left = da(n - 1, np.int32)
        self.right = da(n - 1, np.int32)
        self.parent = da(2 * n - 1, np.int32)
        self.lo = da(n - 1, np.int32)
        self.hi = da(n - 1, np.int32)
        self.counter = da(n - 1, np.int32)
        self.node = da((n - 1, 10), np.float64)

    def morton(self, d_pos: Any) -> None:
        """Box and Morton codes of ``d_pos`` into ``codes``; ``order`` = identity."""
        n = self.n
        _box_partial_kernel[self.box_blocks, BOX_BLOCK](d_pos, self.box_partial)
        _box_final_kernel[1, BOX_BLOCK](self.box_partial, self.box_blocks, self.box)
        _morton_kernel[_blocks(n, BUILD_BLOCK), BUILD_BLOCK](
            d_pos, self.box, self.codes, self.order
        )

    def sort(self) -> None:
        """Stable radix sort of ``codes`` carrying ``order``; the result ends in both."""
        n, nb = self.n, self.sort_blocks
        src_k, src_v, dst_k, dst_v = self.codes, self.order, self.tmp_codes, self.tmp_order
        for p in range(SORT_PASSES):
            shift = p * RADIX_BITS
            _hist_kernel[nb, SORT_BLOCK](src_k, n, shift, self.hist, nb)
            _scan_kernel[1, SCAN_BLOCK](self.hist, RADIX * nb)
            _scatter_kernel[nb, SORT_BLOCK](src_k, src_v, n, shift, self.hist, nb, dst_k, dst_v)
            src_k, src_v, dst_k, dst_v = dst_k, dst_v, src_k, src_v
        # an even number of passes: the sorted data is back in codes/order
        assert SORT_PASSES % 2 == 0

    def build(self, d_pos: Any, d_group: Any, d_params: Any, d_indptr: Any) -> None:
        """Sorted bodies (charges from the CSR row pointer ``d_indptr``), the radix tree and
        its per-node summaries."""
        n = self.n
        g = _blocks(n, BUILD_BLOCK)
        _gather_kernel[g, BUILD_BLOCK](d_pos, d_group, d_params, d_indptr, self.order, self.body)
        _karras_kernel[_blocks(n - 1, BUILD_BLOCK), BUILD_BLOCK](
            self.codes, n, self.left, self.right, self.parent, self.lo, self.hi, self.counter
        )
        _summarize_kernel[g, BUILD_BLOCK](
            self.body,
            n,
            self.left,
            self.right,
            self.parent,
            self.counter,
            self.node,
        )

    def walk(self, d_group: Any, d_params: Any, d_forces: Any) -> None:
        n = self.n
        _walk_kernel[_blocks(n, WALK_BLOCK), WALK_BLOCK](
            self.body, self.order, n, self.left, self.right, self.node, d_group, d_params, d_forces
        )

    def forces(self, d_pos: Any, d_group: Any, d_params: Any, d_indptr: Any, d_forces: Any) -> None:
        """Repulsive forces of all bodies into ``d_forces`` (n, 3), overwritten; ``d_indptr``
        is the CSR row pointer the masses (1 + degree) come from, as in ``cpu.repulsion``."""
        self.morton(d_pos)
        self.sort()
        self.build(d_pos, d_group, d_params, d_indptr)
        self.walk(d_group, d_params, d_forces)


def morton_codes_host(pos: F64) -> npt.NDArray[np.uint32]:
    """The codes ``BarnesHut.morton`` computes, in numpy (for tests)."""
    x0 = pos.min(axis=0)
    ext = float(np.max(pos.max(axis=0) - x0))  # np.max: numpy 2.5 stubs reject .max() here
    ext = (ext if ext > 1e-9 else 1e-9) * (1.0 + 1e-9)
    top = (1 << MORTON_BITS) - 1
    t = (pos - x0) * (top / ext)
    v = np.clip(t, 0, top).astype(np.int64)

    def spread(x: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        x = x & 0x3FF
        x = (x | (x << 16)) & 0x030000FF
        x = (x | (x << 8)) & 0x0300F00F
        x = (x | (x << 4)) & 0x030C30C3
        return (x | (x << 2)) & 0x09249249

    c = (spread(v[:, 0]) << 2) | (spread(v[:, 1]) << 1) | spread(v[:, 2])
    return c.astype(np.uint32)
