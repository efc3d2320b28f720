"""Shared helpers for the physics tests (not a test module)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from visionflow.graph.dense import csr_from_edges
from visionflow.physics import cpu
from visionflow.physics.params import pack
from visionflow.settings import PhysicsParams

# The shipped defaults (settings.toml has the same values: test_settings checks it): the layout
# tests run with what users get.
DEFAULTS = PhysicsParams()


class Sim:
    """A bare simulation over numpy arrays (no store, no engine)."""

    def __init__(
        self,
        n: int,
        edges: list[tuple[int, int]] | npt.NDArray[np.int64],
        *,
        params: PhysicsParams = DEFAULTS,
        agents: PhysicsParams | None = None,
        seed: int = 0,
        spread: float = 10.0,
    ) -> None:
        rng = np.random.default_rng(seed)
        e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
        self.indptr, self.indices, self.weights = csr_from_edges(
            n, e[:, 0], e[:, 1], np.ones(len(e))
        )
        self.pos = rng.normal(size=(n, 3)) * spread
        self.vel = np.zeros((n, 3))
        self.group = np.zeros(n, np.int8)
        self.pinned = np.zeros(n, np.uint8)
        self.heat = np.ones(n)  # every node new: the full cooling schedule
        self.params = pack(params, agents or params)
        self.ws = cpu.CpuWorkspace()
        self.it = 0

    def inputs(self) -> cpu.StepInput:
        return cpu.StepInput(
            self.pos,
            self.vel,
            self.group,
            self.pinned,
            self.indptr,
            self.indices,
            self.weights,
            self.params,
            self.it,
            self.heat,
        )

    def run(self, steps: int) -> cpu.StepResult:
        r = cpu.StepResult(0, 0.0)
        for _ in range(steps):
            r = cpu.step(self.ws, self.inputs())
            self.it += 1
        return r


def barabasi_albert(n: int, m: int, seed: int = 0) -> npt.NDArray[np.int64]:
    """Edges of a Barabasi-Albert graph (preferential attachment, m edges per new node)."""
    rng = np.random.default_rng(seed)
    targets = list(range(m))
    repeated: list[int] = []
    edges: list[tuple[int, int]] = []
    for v in range(m, n):
        chosen = set()
        while len(chosen) < m:
            pool = repeated if repeated else targets
            chosen.add(int(pool[rng.integers(len(pool))]))
        for t in chosen:
            edges.append((v, t))
            repeated.extend((v, t))
    return np.asarray(edges, dtype=np.int64)
