"""Run by test_physics_cuda.py in a subprocess with NUMBA_ENABLE_CUDASIM=1 (not a test module).

Steps the same 64-node graph with the CPU and the CUDA kernels (all-pairs repulsion at this
size) and prints the largest differences; exits non-zero when they disagree.  The graph has a
hub and a self-loop (masses 1 + degree from 1 to over 20, so the degree-weighted charges and
the division by mass matter), the nodes start at different heats (some cold, some cooling
under the floor during the run, the agents' slow cooling keeping others warm), and the two
backends must agree on positions, velocities, heat, the warm count and the kinetic energy.
The all-pairs repulsion kernel is also checked on its own against the CPU's exact sum.  With
VF_CUDA_DEVICE=1 it runs on a real GPU instead of the simulator.
"""

from __future__ import annotations

import os
import sys

import cudasim_fix
import numpy as np
import numpy.typing as npt

from visionflow.graph.dense import csr_from_edges
from visionflow.physics import cpu
from visionflow.physics.cuda import TILE, CudaStepper, _repulsion_kernel, cuda
from visionflow.physics.engine import resolve_backend
from visionflow.physics.params import HEAT_FLOOR, pack
from visionflow.physics.step import StepInput
from visionflow.settings import PhysicsParams

F64 = npt.NDArray[np.float64]


def check_repulsion(pos: F64, group: npt.NDArray[np.int8], params: F64, indptr: F64) -> bool:
    """All-pairs kernel forces (charges sqrt(repel_k) * (1 + degree)) against the CPU's."""
    n = pos.shape[0]
    d_forces = cuda.device_array((n, 3), np.float64)
    _repulsion_kernel[(n + TILE - 1) // TILE, TILE](
        cuda.to_device(pos),
        cuda.to_device(group),
        cuda.to_device(params),
        cuda.to_device(indptr),
        d_forces,
    )
    got = d_forces.copy_to_host()
    want = cpu.repulsion(cpu.CpuWorkspace(), pos, group, params, indptr, exact=True).copy()
    err = float(np.abs(got - want).max() / np.abs(want).max())
    print(f"repulsion: max |dF| / max |F| {err:.3g}")
    return err < 1e-9


def main() -> int:
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or os.environ.get("VF_CUDA_DEVICE") == "1"
    cudasim_fix.install()
    assert resolve_backend("cuda") == "cuda"
    params = pack(
        # heat kept per step 0.1: every knowledge node is cold after at most 3 steps
        PhysicsParams(warmup_iterations=3, cooling_steps=3),
        PhysicsParams(
            repel_k=5.0,
            spring_k=0.5,
            warmup_iterations=3,
            enable_bounds=True,
            bounds_size=25.0,
            cooling_steps=50,
        ),
    )
    rng = np.random.default_rng(1)
    n = 64
    src = np.concatenate([rng.integers(0, n, 100), np.zeros(20, np.int64), [1]])
    dst = np.concatenate([rng.integers(0, n, 100), np.arange(40, 60), [1]])  # a hub, a loop
    indptr, indices, weights = csr_from_edges(n, src, dst, rng.random(src.size))
    degree = np.diff(indptr)
    assert degree.max() > 20 and degree.min() == 0
    pos = rng.normal(size=(n, 3)) * 20.0
    vel = rng.normal(size=(n, 3))
    group = (rng.random(n) < 0.3).astype(np.int8)
    group[0] = 0  # the hub cools with the knowledge nodes
    if not check_repulsion(pos, group, params, indptr):
        print("all-pairs repulsion differs from the CPU's")
        return 1
    pos[5] = np.nan
    heat = rng.random(n)
    heat[10:15] = 0.0  # cold from the start: they must not move
    heat[[0, 5]] = 1.0
    pinned = np.zeros(n, np.uint8)
    pinned[3] = 1
    p1, v1, h1 = pos.copy(), vel.copy(), heat.copy()
    p2, v2, h2 = pos.copy(), vel.copy(), heat.copy()
    ws = cpu.CpuWorkspace()
    gpu = CudaStepper(precompile=False)
    warm_seen = set()
    for it in range(4):
        cold = h2 == 0.0
        before = p2.copy()
        r1 = cpu.step(
            ws, StepInput(p1, v1, group, pinned, indptr, indices, weights, params, it, h1)
        )
        r2 = gpu.step(StepInput(p2, v2, group, pinned, indptr, indices, weights, params, it, h2))
        if r1.nonfinite_resets != r2.nonfinite_resets:
            print("resets differ", r1, r2)
            return 1
        for a, b in (
            (r1.kinetic_energy, r2.kinetic_energy),
            (r1.peak_kinetic_energy, r2.peak_kinetic_energy),
        ):
            if not abs(a - b) <= 1e-9 * max(1.0, abs(a)):
                print("kinetic energy differs", r1, r2)
                return 1
        assert 0.0 < r1.kinetic_energy <= r1.peak_kinetic_energy
        if not np.array_equal(h1, h2):
            print(f"step {it}: heat differs at {np.flatnonzero(h1 != h2)[:8]}")
            return 1
        if r1.warm != r2.warm or r2.warm != int(np.count_nonzero(h2 > 0.0)):
            print(f"step {it}: warm counts differ: cpu {r1.warm} cuda {r2.warm}")
            return 1
        warm_seen.add(r2.warm)
        if not (np.array_equal(p2[cold], before[cold]) and not v2[cold].any()):
            print(f"step {it}: a cold node moved")
            return 1
        assert h2[3] == 0.0 and ((h2 == 0.0) | (h2 >= HEAT_FLOOR)).all()
    # the run covered cooling: knowledge nodes went cold along the way, agents stayed warm
    assert len(warm_seen) > 2 and not h2[group == 0].any() and h2[group == 1].any(), warm_seen
    dp, dv = float(np.abs(p1 - p2).max()), float(np.abs(v1 - v2).max())
    print(f"max |dpos| {dp:.3g} max |dvel| {dv:.3g}; warm counts {sorted(warm_seen)}")
    return 0 if dp < 1e-6 and dv < 1e-6 and np.isfinite(p2).all() else 1


if __name__ == "__main__":
    sys.exit(main())
