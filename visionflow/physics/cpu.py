"""One force-layout step on the CPU: numba kernels plus a reusable scratch workspace.

Model (both groups in one simulation, each node reads its own group's row of the param table).
It is ForceAtlas2's (Jacomy et al. 2014) in 3-D with a rest length on the springs, integrated
with momentum and a d3-force-style cooling schedule per node:

- every node has a mass ``m = 1 + degree`` (edges in the CSR, self-loops included);
- repulsion ``q_i q_j / (d^2 + softening)`` along the separating direction, over the full range:
  exact all-pairs below ``EXACT_MAX_NODES`` nodes, a 3-D Barnes-Hut octree above it.  Inverse
  square is the 3-D law of a uniform density (what 1/d is in 2-D, where FR, FA2 and d3 use it):
  measured against 1/d on the quality benchmark, it unfolds a grid better (2-hop precision 1.00
  vs 0.99) and ties on BA graphs, at the cost of looser communities (edge ratio 0.28 vs 0.24).
  The charge is ``q = sqrt(repel_k) * m`` (FA2's degree-weighted repulsion: hubs claim room
  for their leaves), so a same-group pair feels ``repel_k m_i m_j`` and a mixed agent/note pair the
  geometric mean of the two groups' repel_k; the pair force stays symmetric and a Barnes-Hut
  cell is just a sum of charges.  Softening and theta are the receiver's.
- springs ``spring_k * s * w`` along each edge, of stretch ``s = d - rest_length``; with
  ``linlog`` (either end's group, the default) a stretch beyond ``c = LINLOG_RESTS *
  rest_length`` pulls logarithmically, ``s = c (1 + log((d - rest_length) / c))``, linear below
  c (ForceAtlas2's LinLog mode is logarithmic everywhere), with the same pull and slope at c:
  clusters come out tighter and further apart (block model edge ratio 0.227 vs 0.285) and
  hubs' neighbourhoods readable (BA 10k 2-hop precision 0.18 vs 0.027), while edges within c
  stay even.  The earlier ``c log(1 + s / c)`` bent from s = 0 and pulled weaker at every
  stretch: 0.231 / 0.149 on those two, and the grid 0.01902 / 0.97764 (edge ratio / Spearman)
  against 0.01880 / 0.97784 now (benchmarks/README.md).  A mixed edge uses the mean of the two
  groups' spring_k and rest_length (again symmetric).  Self-loops are ignored.
- gravity towards the origin of ``center_gravity_k * m`` in magnitude beyond one rest length,
  linear inside it (FA2's gravity, which holds disconnected parts together without squeezing a
  large graph into a ball the way a linear pull does).
- acceleration ``a = F / m`` (a hub's many springs do not make it jitter), ``|a|`` clamped to
  max_force, times the quadratic warm-up ``min(1, ((iteration + 1) / warmup_iterations)^2)``
  and times the node's heat.
- ``v = (v + a dt) * damping``, clamp ``|v|`` to max_velocity, ``p += v dt``; reflecting bounds
  (position clamped to the cube, that velocity component reversed and scaled by
  boundary_damping).  Then heat ``*= COOLING``, and a heat under ``HEAT_FLOOR`` becomes 0: a
  cold node keeps its position with velocity 0 until something warms it again.  Pinned nodes
  and nodes of a disabled group keep their position, velocity 0 and heat 0.
- Non-finite repair before and after the step: a node with a NaN/inf position or velocity is
  re-seeded next to a finite graph neighbour (or near the origin) with velocity 0, and counted.

The Barnes-Hut octree is ``octree.py``; ``hash01`` and the compile options are ``jit.py``.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt
from numba import prange

from visionflow.graph.dense import MAX_COORD
from visionflow.physics import octree
from visionflow.physics.jit import CACHE, FASTMATH, hash01
from visionflow.physics.params import (
    BOUNDARY_DAMPING,
    BOUNDS_SIZE,
    CENTER_GRAVITY_K,
    COOLING,
    DAMPING,
    DT,
    ENABLE_BOUNDS,
    ENABLED,
    HEAT_FLOOR,
    LINLOG,
    MAX_FORCE,
    MAX_VELOCITY,
    REPEL_K,
    REST_LENGTH,
    SOFTENING,
    SPRING_K,
    WARMUP_ITERATIONS,
    ParamTable,
)
from visionflow.physics.step import StepInput, StepResult

__all__ = [
    "EXACT_MAX_NODES",
    "CpuWorkspace",
    "StepInput",
    "StepResult",
    "integrate_node",
    "repair_nonfinite",
    "repulsion",
    "step",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# Below this node count exact all-pairs repulsion is used (it is also exact).  Measured on this
# 2-core machine, random Gaussian layouts, min ms per repulsion pass over 40 runs (Barnes-Hut with
# LEAF_SIZE 64 and theta 0.8 / exact): 500 0.15/0.05, 1000 0.22/0.20, 1500 0.30/0.44,
# 2000 0.45/0.76, 4000 1.13/3.08.  The bucketed tree walk (octree.py) is cheap, so the crossover is
# ~1.1k nodes, well under the 5-8k of a per-body walk.
EXACT_MAX_NODES = 1024

# With linlog, a spring's pull turns logarithmic beyond this many rest lengths of stretch. On the
# quality benchmark 3 beat 1 (FA2's pure LinLog) on the grid and the scale-free graphs, and 10
# or 30 lost the block model's separation (with the earlier c log(1 + s / c) form). With the
# present form, 2 / 3 / 4: BA 10k 2-hop precision 0.224 / 0.181 / 0.151, the block model's edge
# ratio 0.226 / 0.227 / 0.228, the grid's Spearman 0.97763 / 0.97784 / 0.97796.
LINLOG_RESTS = 3.0

# Below this many nodes a step runs on one thread: waking the pool costs more than it saves, and
# on a busy machine every parallel region may wait a scheduler slice for its second thread (40
# nodes: 0.015 ms per step on one thread, 0.2-2 ms on two while other processes ran).
PARALLEL_MIN_NODES = 4096


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
            pos[i, k] = base + scale * hash01(i, k + 1)
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
def _charges(group, params, indptr, q):  # type: ignore[no-untyped-def]
    """``q = sqrt(repel_k) * mass``, mass = 1 + degree."""
    for i in prange(group.shape[0]):
        q[i] = math.sqrt(params[group[i], REPEL_K]) * (1.0 + indptr[i + 1] - indptr[i])


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
            fx += push * hash01(i, 1)
            fy += push * hash01(i, 2)
            fz += push * hash01(i, 3)
        forces[i, 0] = qi * fx
        forces[i, 1] = qi * fy
        forces[i, 2] = qi * fz


@numba.njit(parallel=True, nogil=True, cache=CACHE)
def _split_xyz(pos, x, y, z):  # type: ignore[no-untyped-def]
    for i in prange(pos.shape[0]):
        x[i] = pos[i, 0]
        y[i] = pos[i, 1]
        z[i] = pos[i, 2]


# --------------------------------------------------------------------------- integration


def integrate_node(  # type: ignore[no-untyped-def]
    i, pos, vel, forces, group, pinned, indptr, indices, weights, params, iteration, heat, newpos
):
    """One node's update: springs, gravity, mass, clamps, warm-up, heat, damping, bounds.

    Plain Python, compiled twice: inlined into the CPU kernel below and, as a CUDA device
    function, into ``cuda._integrate_kernel``, so both backends run the same rule. It lives in
    this module because numba's on-disk cache of ``_integrate`` only notices edits to its own
    file. Positions go to ``newpos`` because springs read the neighbours' old ones.
    """
    g = group[i]
    h = heat[i]
    if pinned[i] != 0 or params[g, ENABLED] == 0.0 or h <= 0.0:
        for k in range(3):
            newpos[i, k] = pos[i, k]
            vel[i, k] = 0.0
        heat[i] = 0.0
        return
    xi = pos[i, 0]
    yi = pos[i, 1]
    zi = pos[i, 2]
    fx = forces[i, 0]
    fy = forces[i, 1]
    fz = forces[i, 2]
    sk_i = params[g, SPRING_K]
    rl_i = params[g, REST_LENGTH]
    ll_i = params[g, LINLOG]
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
            stretch = d - rest
            if ll_i + params[gj, LINLOG] > 0.0:  # either end's: symmetric
                scale = LINLOG_RESTS * rest
                if stretch > scale:  # same pull and slope at the knee
                    stretch = scale * (1.0 + math.log(stretch / scale))
            f = k_s * stretch * weights[e] / d
            fx += dx * f
            fy += dy * f
            fz += dz * f
    mass = 1.0 + (indptr[i + 1] - indptr[i])
    # constant pull beyond one rest length, linear inside it (no kink at the origin)
    r = max(math.sqrt(xi * xi + yi * yi + zi * zi), rl_i)
    cg = params[g, CENTER_GRAVITY_K] * mass / r
    fx = (fx - cg * xi) / mass
    fy = (fy - cg * yi) / mass
    fz = (fz - cg * zi) / mass
    fmax = params[g, MAX_FORCE]
    fm2 = fx * fx + fy * fy + fz * fz
    if fm2 > fmax * fmax:
        c = fmax / math.sqrt(fm2)
        fx *= c
        fy *= c
        fz *= c
    ramp = h
    warm = params[g, WARMUP_ITERATIONS]
    if warm > 0.0:
        w = min(1.0, (iteration + 1.0) / warm)
        ramp *= w * w
    dt = params[g, DT]
    damp = params[g, DAMPING]
    vx = (vel[i, 0] + fx * ramp * dt) * damp
    vy = (vel[i, 1] + fy * ramp * dt) * damp
    vz = (vel[i, 2] + fz * ramp * dt) * damp
    vmax = params[g, MAX_VELOCITY]
    vm2 = vx * vx + vy * vy + vz * vz
    if vm2 > vmax * vmax:
        c = vmax / math.sqrt(vm2)
        vx *= c
        vy *= c
        vz *= c
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
    h *= params[g, COOLING]
    heat[i] = h if h >= HEAT_FLOOR else 0.0


_integrate_node = numba.njit(inline="always", nogil=True, cache=CACHE, fastmath=FASTMATH)(
    integrate_node
)


@numba.njit(parallel=True, nogil=True, cache=CACHE, fastmath=FASTMATH)
def _integrate(  # type: ignore[no-untyped-def]
    pos, vel, forces, group, pinned, indptr, indices, weights, params, iteration, heat, newpos
):
    """Every node's update (``integrate_node``) into ``newpos``, ``vel`` and ``heat``; returns
    how many nodes are still warm."""
    warm = 0
    for i in prange(pos.shape[0]):
        _integrate_node(
            i,
            pos,
            vel,
            forces,
            group,
            pinned,
            indptr,
            indices,
            weights,
            params,
            iteration,
            heat,
            newpos,
        )
        warm += 1 if heat[i] > 0.0 else 0
    return warm


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
        self.octree = octree.OctreeScratch()
        self._alloc(0)

    def _alloc(self, cap: int) -> None:
        self.capacity = cap
        self.forces = np.zeros((cap, 3), np.float64)
        self.newpos = np.zeros((cap, 3), np.float64)
        self.q = np.zeros(cap, np.float64)
        self.bad = np.zeros(cap, np.uint8)
        self.sorted4 = np.zeros((4, cap), np.float64)  # x, y, z (exact); + charge (octree)
        self.octree.alloc(cap)

    def ensure(self, n: int) -> None:
        if n > self.capacity or (self.capacity > 256 and n < self.capacity // 4):
            self._alloc(max(64, n + n // 2))

    @property
    def nbytes(self) -> int:
        own = sum(a.nbytes for a in vars(self).values() if isinstance(a, np.ndarray))
        return own + self.octree.nbytes


def repulsion(
    ws: CpuWorkspace,
    pos: F64,
    group: npt.NDArray[np.int8],
    params: ParamTable,
    indptr: I64,
    *,
    exact: bool | None = None,
) -> F64:
    """Repulsive forces for all nodes (a view into the workspace, valid until the next call);
    ``indptr`` is the CSR row pointer the masses (1 + degree) come from."""
    n = pos.shape[0]
    ws.ensure(n)
    forces = ws.forces[:n]
    q = ws.q[:n]
    _charges(group, params, indptr, q)
    use_exact = n <= EXACT_MAX_NODES if exact is None else exact
    if use_exact:
        x, y, z = (ws.sorted4[k, :n] for k in range(3))
        _split_xyz(pos, x, y, z)
        _exact_forces(x, y, z, q, group, params, forces)
    else:
        octree.forces(ws.octree, pos, q, group, params, ws.sorted4, forces)
    return forces


def step(ws: CpuWorkspace, inp: StepInput) -> StepResult:
    """Advance ``inp.pos``/``inp.vel`` by one step in place (see ``StepInput``)."""
    n = inp.pos.shape[0]
    if n == 0:
        return StepResult(0, 0.0)
    if n < PARALLEL_MIN_NODES:
        threads = numba.get_num_threads()
        numba.set_num_threads(1)  # thread-local: only this stepping thread is affected
        try:
            return _step(ws, inp)
        finally:
            numba.set_num_threads(threads)
    return _step(ws, inp)


def _step(ws: CpuWorkspace, inp: StepInput) -> StepResult:
    pos, vel, group, pinned, indptr, indices, weights, params, iteration, heat = inp
    n = pos.shape[0]
    ws.ensure(n)
    bad = ws.bad[:n]
    spread = float(np.min(params[:, REST_LENGTH]))
    resets, _, _ = repair_nonfinite(pos, vel, indptr, indices, bad, spread)
    forces = repulsion(ws, pos, group, params, indptr)
    newpos = ws.newpos[:n]
    warm = _integrate(
        pos,
        vel,
        forces,
        group,
        pinned,
        indptr,
        indices,
        weights,
        params,
        float(iteration),
        heat,
        newpos,
    )
    _copy_rows(newpos, pos)
    after, ke, peak = repair_nonfinite(pos, vel, indptr, indices, bad, spread)
    return StepResult(resets + after, ke / n, peak, int(warm))
