"""Run by test_physics_cuda.py in a subprocess with NUMBA_ENABLE_CUDASIM=1 (not a test module).

Steps the same 64-node graph with the CPU and the CUDA kernels (all-pairs repulsion at this
size) and prints the largest differences; exits non-zero when they disagree.  With
VF_CUDA_DEVICE=1 it runs on a real GPU instead of the simulator.
"""

from __future__ import annotations

import os
import sys

import cudasim_fix
import numpy as np

from visionflow.graph.dense import csr_from_edges
from visionflow.physics import cpu
from visionflow.physics.cuda import CudaStepper
from visionflow.physics.engine import resolve_backend
from visionflow.physics.params import pack
from visionflow.physics.step import StepInput
from visionflow.settings import PhysicsParams


def main() -> int:
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or os.environ.get("VF_CUDA_DEVICE") == "1"
    cudasim_fix.install()
    assert resolve_backend("cuda") == "cuda"
    params = pack(
        PhysicsParams(warmup_iterations=3),
        PhysicsParams(
            repel_k=5.0, spring_k=0.5, warmup_iterations=3, enable_bounds=True, bounds_size=25.0
        ),
    )
    rng = np.random.default_rng(1)
    n = 64
    src, dst = rng.integers(0, n, 100), rng.integers(0, n, 100)
    indptr, indices, weights = csr_from_edges(n, src, dst, rng.random(100))
    pos = rng.normal(size=(n, 3)) * 20.0
    pos[5] = np.nan
    vel = rng.normal(size=(n, 3))
    group = (rng.random(n) < 0.3).astype(np.int8)
    pinned = np.zeros(n, np.uint8)
    pinned[3] = 1
    p1, v1, p2, v2 = pos.copy(), vel.copy(), pos.copy(), vel.copy()
    ws = cpu.CpuWorkspace()
    gpu = CudaStepper(precompile=False)
    for it in range(4):
        r1 = cpu.step(ws, StepInput(p1, v1, group, pinned, indptr, indices, weights, params, it))
        r2 = gpu.step(StepInput(p2, v2, group, pinned, indptr, indices, weights, params, it))
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
    dp, dv = float(np.abs(p1 - p2).max()), float(np.abs(v1 - v2).max())
    print(f"max |dpos| {dp:.3g} max |dvel| {dv:.3g}")
    return 0 if dp < 1e-6 and dv < 1e-6 and np.isfinite(p2).all() else 1


if __name__ == "__main__":
    sys.exit(main())
