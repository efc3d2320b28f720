"""The same step as ``cpu.step`` written with numba-cuda kernels.

Repulsion is an exact all-pairs sum tiled through shared memory (every block loads TILE bodies
at a time), then one thread per node adds springs, centre pull, clamps, warm-up, damping and
bounds exactly as the CPU kernel does.  Positions and velocities are uploaded before and
downloaded after each step (the host arrays stay the master copy, so pins, new nodes and
snapshots work unchanged); non-finite repair runs on the host with the CPU helper.

Import this module only when the CUDA backend is wanted: importing numba.cuda is slow and, in
tests, ``NUMBA_ENABLE_CUDASIM=1`` must be set before the first import.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import cuda as _numba_cuda

from visionflow.errors import StartupError
from visionflow.physics.cpu import CpuWorkspace, StepResult, repair_nonfinite
from visionflow.physics.params import (
    BOUNDARY_DAMPING,
    BOUNDS_SIZE,
    CENTER_GRAVITY_K,
    DAMPING,
    DT,
    ENABLE_BOUNDS,
    ENABLED,
    MAX_FORCE,
    MAX_VELOCITY,
    REPEL_K,
    REST_LENGTH,
    SOFTENING,
    SPRING_K,
    WARMUP_ITERATIONS,
    ParamTable,
)

cuda: Any = _numba_cuda  # numba-cuda's partial annotations trip mypy --strict; kernels are untyped

TILE = 128  # bodies per shared-memory tile = threads per block

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
def _repulsion_kernel(pos, group, params, forces):  # type: ignore[no-untyped-def]
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
        qi = math.sqrt(params[group[i], REPEL_K])
    fx = 0.0
    fy = 0.0
    fz = 0.0
    same = 0
    for base in range(0, n, TILE):
        j = base + tid
        if j < n:
            sh[0, tid] = pos[j, 0]
            sh[1, tid] = pos[j, 1]
            sh[2, tid] = pos[j, 2]
            sh[3, tid] = math.sqrt(params[group[j], REPEL_K])
        cuda.syncthreads()
        if i < n:
            for t in range(min(TILE, n - base)):
                dx = xi - sh[0, t]
                dy = yi - sh[1, t]
                dz = zi - sh[2, t]
                d2 = dx * dx + dy * dy + dz * dz
                if d2 == 0.0:
                    same += 1
                else:
                    f = sh[3, t] / ((d2 + eps) * math.sqrt(d2))
                    fx += dx * f
                    fy += dy * f
                    fz += dz * f
        cuda.syncthreads()
    if i < n:
        if same > 1:  # coincident nodes: same deterministic push as the CPU kernel
            push = qi * (same - 1) / eps
            for k in range(3):
                s = math.sin(float(i) * 12.9898 + float(k + 1) * 78.233) * 43758.5453
                h = 2.0 * (s - math.floor(s)) - 1.0
                if k == 0:
                    fx += push * h
                elif k == 1:
                    fy += push * h
                else:
                    fz += push * h
        forces[i, 0] = qi * fx
        forces[i, 1] = qi * fy
        forces[i, 2] = qi * fz


@cuda.jit(cache=False)
def _integrate_kernel(  # type: ignore[no-untyped-def]
    pos, vel, forces, group, pinned, indptr, indices, weights, params, iteration, newpos
):
    i = cuda.grid(1)
    if i >= pos.shape[0]:
        return
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
            k_s = 0.5 * (params[g, SPRING_K] + params[gj, SPRING_K])
            rest = 0.5 * (params[g, REST_LENGTH] + params[gj, REST_LENGTH])
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
    v0 = (vel[i, 0] + fx * dt) * damp
    v1 = (vel[i, 1] + fy * dt) * damp
    v2 = (vel[i, 2] + fz * dt) * damp
    vmax = params[g, MAX_VELOCITY]
    vm2 = v0 * v0 + v1 * v1 + v2 * v2
    if vm2 > vmax * vmax:
        r = vmax / math.sqrt(vm2)
        v0 *= r
        v1 *= r
        v2 *= r
    p0 = xi + v0 * dt
    p1 = yi + v1 * dt
    p2 = zi + v2 * dt
    if params[g, ENABLE_BOUNDS] != 0.0:
        bnd = params[g, BOUNDS_SIZE]
        bd = params[g, BOUNDARY_DAMPING]
        if p0 > bnd:
            p0 = bnd
            v0 = -v0 * bd
        elif p0 < -bnd:
            p0 = -bnd
            v0 = -v0 * bd
        if p1 > bnd:
            p1 = bnd
            v1 = -v1 * bd
        elif p1 < -bnd:
            p1 = -bnd
            v1 = -v1 * bd
        if p2 > bnd:
            p2 = bnd
            v2 = -v2 * bd
        elif p2 < -bnd:
            p2 = -bnd
            v2 = -v2 * bd
    newpos[i, 0] = p0
    newpos[i, 1] = p1
    newpos[i, 2] = p2
    vel[i, 0] = v0
    vel[i, 1] = v1
    vel[i, 2] = v2


class CudaStepper:
    """Runs ``step`` on the GPU; keeps the host workspace for the non-finite repair."""

    def __init__(self) -> None:
        require_device()
        self._ws = CpuWorkspace()

    def step(
        self,
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
        if n == 0:
            return StepResult(0, 0.0)
        self._ws.ensure(n)
        bad = self._ws.bad[:n]
        spread = float(np.min(params[:, REST_LENGTH])) * 0.1
        resets, _ = repair_nonfinite(pos, vel, indptr, indices, bad, spread)
        d_pos = cuda.to_device(pos)
        d_vel = cuda.to_device(vel)
        d_group = cuda.to_device(group)
        d_params = cuda.to_device(params)
        d_forces = cuda.device_array((n, 3), np.float64)
        d_new = cuda.device_array((n, 3), np.float64)
        blocks = (n + TILE - 1) // TILE
        _repulsion_kernel[blocks, TILE](d_pos, d_group, d_params, d_forces)
        # CSR arrays may be empty; the kernel never reads them then, but a device array needs
        # at least one element.
        d_indices = cuda.to_device(indices if indices.size else np.zeros(1, np.int64))
        d_weights = cuda.to_device(weights if weights.size else np.zeros(1, np.float64))
        _integrate_kernel[blocks, TILE](
            d_pos,
            d_vel,
            d_forces,
            d_group,
            cuda.to_device(pinned),
            cuda.to_device(indptr),
            d_indices,
            d_weights,
            d_params,
            float(iteration),
            d_new,
        )
        d_new.copy_to_host(pos)
        d_vel.copy_to_host(vel)
        after, ke = repair_nonfinite(pos, vel, indptr, indices, bad, spread)
        return StepResult(resets + after, ke / n)
