"""The same step as ``cpu.step`` written with numba-cuda kernels, device-resident.

Repulsion: below ``ALL_PAIRS_MAX_NODES`` an exact all-pairs sum tiled through shared memory
(every block loads TILE bodies at a time); above it the Barnes-Hut pipeline of
``visionflow.physics.cuda_bh`` (Morton codes, radix sort, LBVH, group tree walk), O(n log n).
Charges are the CPU's: ``sqrt(repel_k) * (1 + degree)``, the degree read from the CSR
``indptr``.  Then one thread per node runs ``cpu.integrate_node`` (springs, gravity, mass,
clamps, warm-up, heat and its decay, damping, bounds) exactly as the CPU kernel does, and flags
non-finite results, sums the kinetic energy and counts the warm nodes on the way.

Residency: positions, velocities, heat, groups, pins, the CSR springs and all scratch stay on
the device between steps.  The host arrays stay the master copy for everything outside
``step`` (pins, new nodes, warmed nodes, snapshots), so each step downloads positions,
velocities and heat once (the frame encoder and the store need them) and uploads them only
when the host may have changed them:

- topology (group, indptr, indices, weights): re-uploaded when an array is a different object
  or the node count changed (the store rebuilds them as new arrays on every structural edit);
- positions, velocities, heat, pins: re-uploaded unless the caller vouched, through
  ``note_host_version(v)`` right before the step, that nothing wrote them since the previous
  step (same arrays, same ``v`` as then).  The engine passes the store's ``DenseState.version``,
  which moves on every edit, pins, positions and heat included.  Without that hint every step
  uploads them, which is always correct;
- the parameter table: re-uploaded when its values change.

Non-finite repair: the integrate kernel counts non-finite nodes; only when that count is not 0
does the host run ``cpu.repair_nonfinite`` on the downloaded arrays (and the next step uploads
the repaired copy).  Arrays coming from the host are repaired before they are uploaded.

Import this module only when the CUDA backend is wanted: importing numba.cuda is slow and, in
tests, ``NUMBA_ENABLE_CUDASIM=1`` must be set before the first import.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from visionflow.errors import StartupError
from visionflow.graph.dense import csr_from_edges
from visionflow.physics.cpu import integrate_node, repair_nonfinite
from visionflow.physics.cuda_bh import BarnesHut, charge, hash01
from visionflow.physics.numba_cuda import cuda
from visionflow.physics.params import (
    DT,
    ENABLED,
    MAX_FORCE,
    MAX_VELOCITY,
    N_GROUPS,
    N_PARAMS,
    REPEL_K,
    REST_LENGTH,
    SOFTENING,
    THETA,
    ParamTable,
)
from visionflow.physics.step import StepInput, StepResult

try:  # small graphs launch small grids on purpose; don't warn about it on every size change
    from numba.cuda.core import config as _cuda_config

    _cuda_config.CUDA_LOW_OCCUPANCY_WARNINGS = 0
except ImportError:  # the simulator or an older numba-cuda: nothing to silence
    pass

TILE = 128  # bodies per shared-memory tile = threads per block

# All-pairs below this many nodes: n^2 = 16.8M pair terms at 4096 is well under a millisecond
# on a data-centre GPU, and it is exact; Barnes-Hut's ~20 launches cost more than that there.
ALL_PAIRS_MAX_NODES = 4096

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def device_available() -> bool:
    return bool(cuda.is_available())


def require_device() -> None:
    """Raise StartupError with a clear reason when no usable CUDA device is present."""
    if not cuda.is_available():
        raise StartupError(
            "physics.backend = 'cuda' but no usable CUDA device was found (no driver or no "
            "GPU); set physics.backend = 'auto' or 'cpu' to run the layout on the CPU"
        )


@cuda.jit(cache=False)
def _repulsion_kernel(pos, group, params, indptr, forces):  # type: ignore[no-untyped-def]
    n = pos.shape[0]
    i = cuda.grid(1)
    tid = cuda.threadIdx.x
    sh = cuda.shared.array((4, TILE), np.float64)
    xi = 0.0
    yi = 0.0
    zi = 0.0
    eps = 1.0
    qi = 0.0
    if i < n:
        xi = pos[i, 0]
        yi = pos[i, 1]
        zi = pos[i, 2]
        eps = params[group[i], SOFTENING]
        qi = charge(params, group, indptr, i)
    fx = 0.0
    fy = 0.0
    fz = 0.0
    here = 0.0  # charge at exactly this position, its own included
    for base in range(0, n, TILE):
        j = base + tid
        if j < n:
            sh[0, tid] = pos[j, 0]
            sh[1, tid] = pos[j, 1]
            sh[2, tid] = pos[j, 2]
            sh[3, tid] = charge(params, group, indptr, j)
        cuda.syncthreads()
        if i < n:
            for t in range(min(TILE, n - base)):
                dx = xi - sh[0, t]
                dy = yi - sh[1, t]
                dz = zi - sh[2, t]
                d2 = dx * dx + dy * dy + dz * dz
                if d2 == 0.0:
                    here += sh[3, t]
                else:
                    f = sh[3, t] / ((d2 + eps) * math.sqrt(d2))
                    fx += dx * f
                    fy += dy * f
                    fz += dz * f
        cuda.syncthreads()
    if i < n:
        if here > qi:  # coincident nodes: the same deterministic push as the CPU kernels
            push = (here - qi) / eps
            fx += push * hash01(i, 1)
            fy += push * hash01(i, 2)
            fz += push * hash01(i, 3)
        forces[i, 0] = qi * fx
        forces[i, 1] = qi * fy
        forces[i, 2] = qi * fz


# The CPU kernel's rule, verbatim: both backends integrate the same way.
_integrate_node = cuda.jit(device=True, inline=True)(integrate_node)


@cuda.jit(cache=False)
def _integrate_kernel(  # type: ignore[no-untyped-def]
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
    stats,
):
    """``cpu.integrate_node`` for node i; ``stats`` gets (kinetic energy sum, non-finite count,
    largest per-node kinetic energy, nodes with heat > 0 after the step)."""
    i = cuda.grid(1)
    tid = cuda.threadIdx.x
    ke_sh = cuda.shared.array(TILE, np.float64)
    peak_sh = cuda.shared.array(TILE, np.float64)
    warm_sh = cuda.shared.array(TILE, np.int32)
    ke = 0.0
    warm = 0
    if i < pos.shape[0]:
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
        if heat[i] > 0.0:
            warm = 1
        p0 = newpos[i, 0]
        p1 = newpos[i, 1]
        p2 = newpos[i, 2]
        v0 = vel[i, 0]
        v1 = vel[i, 1]
        v2 = vel[i, 2]
        finite = True
        for v in (p0, p1, p2, v0, v1, v2):
            if not math.isfinite(v):
                finite = False
        if finite:
            ke = 0.5 * (v0 * v0 + v1 * v1 + v2 * v2)
        else:
            cuda.atomic.add(stats, 1, 1.0)  # rare: a per-node atomic is fine
    # block sums of the kinetic energy and the warm nodes, the block's largest kinetic energy:
    # one atomic of each per block
    ke_sh[tid] = ke
    peak_sh[tid] = ke
    warm_sh[tid] = warm
    cuda.syncthreads()
    s = TILE // 2
    while s > 0:
        if tid < s:
            ke_sh[tid] += ke_sh[tid + s]
            warm_sh[tid] += warm_sh[tid + s]
            if peak_sh[tid + s] > peak_sh[tid]:
                peak_sh[tid] = peak_sh[tid + s]
        cuda.syncthreads()
        s //= 2
    if tid == 0:
        cuda.atomic.add(stats, 0, ke_sh[0])
        cuda.atomic.max(stats, 2, peak_sh[0])
        cuda.atomic.add(stats, 3, float(warm_sh[0]))  # exact: counts stay far below 2^53


def _same(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


class CudaStepper:
    """Runs ``step`` on the GPU with the graph kept on the device between steps.

    ``all_pairs_max_nodes``: exact all-pairs repulsion up to this many nodes, Barnes-Hut above.
    ``precompile``: compile every kernel now on a tiny graph (the engine compiles before its
    first real step; tests that do not need it save the time).
    """

    def __init__(
        self, *, all_pairs_max_nodes: int = ALL_PAIRS_MAX_NODES, precompile: bool = True
    ) -> None:
        require_device()
        self.all_pairs_max_nodes = all_pairs_max_nodes
        self.uploads = 0  # position/velocity/heat uploads so far (residency is observable)
        self.topology_uploads = 0
        self._hint: int | None = None
        self._synced: int | None = None  # host version the device copy matches
        self._dirty = True  # the host copy is newer than the device copy
        self._n = -1
        self._host: tuple[object, ...] = ()
        self._topo: tuple[object, ...] = ()
        self._params: ParamTable | None = None
        self._bh: BarnesHut | None = None
        self._bad = np.zeros(0, np.uint8)
        self._zeros4 = np.zeros(4, np.float64)
        self._d_stats = cuda.device_array(4, np.float64)
        self._d_params: Any = None
        self._d: dict[str, Any] = {}
        if precompile:
            self._precompile()

    def note_host_version(self, version: int) -> None:
        """Vouch for the next ``step``: the host arrays were not written since the previous step
        unless ``version`` differs from the one given then (the engine passes the store's
        ``DenseState.version``).  Applies to the next step only."""
        self._hint = version

    def _precompile(self) -> None:
        rng = np.random.default_rng(0)
        n = 16
        src = np.arange(n - 1, dtype=np.int64)
        indptr, indices, weights = csr_from_edges(n, src, src + 1, np.ones(n - 1))
        params = np.zeros((N_GROUPS, N_PARAMS), np.float64)
        params[:, REPEL_K] = 1.0
        params[:, SOFTENING] = 1e-4
        params[:, THETA] = 0.8
        params[:, DT] = 0.01
        params[:, MAX_VELOCITY] = 1.0
        params[:, MAX_FORCE] = 1.0
        params[:, ENABLED] = 1.0
        limit = self.all_pairs_max_nodes
        for self.all_pairs_max_nodes in (n, 0):  # all-pairs, then Barnes-Hut  # noqa: B020
            self.step(
                StepInput(
                    rng.normal(size=(n, 3)),
                    np.zeros((n, 3)),
                    np.zeros(n, np.int8),
                    np.zeros(n, np.uint8),
                    indptr,
                    indices,
                    weights,
                    params,
                    0,
                    np.ones(n),
                )
            )
        self.all_pairs_max_nodes = limit
        self.uploads = 0
        self.topology_uploads = 0

    def _upload_topology(
        self, n: int, group: npt.NDArray[np.int8], indptr: I64, indices: I64, weights: F64
    ) -> None:
        d = self._d
        if n != self._n:
            for name in ("pos", "new", "vel", "forces"):
                d[name] = cuda.device_array((n, 3), np.float64)
            d["pinned"] = cuda.device_array(n, np.uint8)
            d["heat"] = cuda.device_array(n, np.float64)
            self._bad = np.zeros(n, np.uint8)
            self._bh = None
            self._n = n
        d["group"] = cuda.to_device(group)
        d["indptr"] = cuda.to_device(indptr)
        # a device array needs at least one element; the kernel never reads it then
        d["indices"] = cuda.to_device(indices if indices.size else np.zeros(1, np.int64))
        d["weights"] = cuda.to_device(weights if weights.size else np.zeros(1, np.float64))
        self._topo = (group, indptr, indices, weights)
        self.topology_uploads += 1

    def step(self, inp: StepInput) -> StepResult:
        """``cpu.step`` on the device; ``pos``/``vel`` must be C-contiguous (n, 3) float64 and
        ``heat`` a C-contiguous (n,) float64, all advanced in place as by ``cpu.step``."""
        pos, vel, group, pinned, indptr, indices, weights, params, iteration, heat = inp
        n = pos.shape[0]
        hint, self._hint = self._hint, None
        if n == 0:
            return StepResult(0, 0.0)
        d = self._d
        if n != self._n or not _same((group, indptr, indices, weights), self._topo):
            self._upload_topology(n, group, indptr, indices, weights)
            self._dirty = True
        spread = float(np.min(params[:, REST_LENGTH]))  # as cpu._step
        resets = 0
        host = (pos, vel, pinned, heat)
        if self._dirty or hint is None or hint != self._synced or not _same(host, self._host):
            resets, _, _ = repair_nonfinite(pos, vel, indptr, indices, self._bad, spread)
            d["pos"].copy_to_device(pos)
            d["vel"].copy_to_device(vel)
            d["pinned"].copy_to_device(pinned)
            d["heat"].copy_to_device(heat)
            self._host = host
            self._dirty = False
            self.uploads += 1
        if self._params is None or not np.array_equal(params, self._params):
            self._d_params = cuda.to_device(params)
            self._params = params.copy()
        if n <= self.all_pairs_max_nodes or n < 2:
            _repulsion_kernel[(n + TILE - 1) // TILE, TILE](
                d["pos"], d["group"], self._d_params, d["indptr"], d["forces"]
            )
        else:
            if self._bh is None:
                self._bh = BarnesHut(n)
            self._bh.forces(d["pos"], d["group"], self._d_params, d["indptr"], d["forces"])
        self._d_stats.copy_to_device(self._zeros4)
        _integrate_kernel[(n + TILE - 1) // TILE, TILE](
            d["pos"],
            d["vel"],
            d["forces"],
            d["group"],
            d["pinned"],
            d["indptr"],
            d["indices"],
            d["weights"],
            self._d_params,
            float(iteration),
            d["heat"],
            d["new"],
            self._d_stats,
        )
        d["pos"], d["new"] = d["new"], d["pos"]
        stats = self._d_stats.copy_to_host()
        d["pos"].copy_to_host(pos)
        d["vel"].copy_to_host(vel)
        d["heat"].copy_to_host(heat)
        self._synced = hint
        ke, peak, warm = float(stats[0]), float(stats[2]), int(stats[3])
        after = 0
        if stats[1] != 0.0:
            after, ke, peak = repair_nonfinite(pos, vel, indptr, indices, self._bad, spread)
            self._dirty = True  # the repaired host copy goes up with the next step
        return StepResult(resets + after, ke / n, peak, warm)
