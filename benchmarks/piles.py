"""Nodes piled on one exact point: ``python benchmarks/piles.py``.

A viewer can drag thousands of nodes onto one spot (pinned there), and an import may give many
nodes the same position. The Barnes-Hut pass takes such a pile as one charge; this prints the
median ms per repulsion pass (CPU) with part of the nodes piled, against the same nodes spread
as a Gaussian cloud, measured in the same run.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from visionflow.physics import cpu
from visionflow.physics.params import pack
from visionflow.settings import PhysicsParams

CASES = ((10_000, 1.0), (10_000, 0.2), (100_000, 0.2), (100_000, 1.0))


def median_ms(pos: np.ndarray, repeats: int) -> float:
    n = pos.shape[0]
    group = np.zeros(n, np.int8)
    params = pack(PhysicsParams(), PhysicsParams())
    ws = cpu.CpuWorkspace()
    cpu.repulsion(ws, pos, group, params)  # compile, allocate
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        forces = cpu.repulsion(ws, pos, group, params)
        times.append(time.perf_counter() - t0)
    assert np.isfinite(forces).all()
    return statistics.median(times) * 1e3


def main() -> int:
    print("median ms per CPU repulsion pass (ratio = piled / spread)")
    print(f"{'nodes':>7} {'piled':>6} {'spread':>9} {'piled':>9} {'ratio':>7}")
    for n, share in CASES:
        rng = np.random.default_rng(0)
        spread = rng.normal(size=(n, 3)) * 10.0 * n ** (1 / 3)
        piled = spread.copy()
        piled[: int(n * share)] = (5.0, 5.0, 5.0)
        repeats = 20 if n <= 10_000 else 7
        a, b = median_ms(spread, repeats), median_ms(piled, repeats)
        print(f"{n:>7} {share:>6.0%} {a:9.2f} {b:9.2f} {b / a:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
