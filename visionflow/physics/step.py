"""What one layout step takes and returns: the one signature of ``cpu.step``,
``CudaStepper.step`` and the engine's ``Stepper``.

A NamedTuple, not a dataclass: the numba kernels take plain arrays, so each stepper unpacks it
once at its Python boundary (a tuple unpack), and the jitted signatures stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from visionflow.physics.params import ParamTable

__all__ = ["StepInput", "StepResult"]


class StepInput(NamedTuple):
    """One step's input, in the order the kernels take it.

    ``pos``/``vel``: float64 (n, 3), C order, advanced in place. ``group``: 0 (knowledge) or 1
    (agent) per node. ``pinned``: 0/1 per node. ``indptr``/``indices``/``weights``: a CSR
    adjacency holding every edge in both directions (``graph.dense.csr_from_edges``).
    ``params``: the (2, N_PARAMS) table of ``params.pack``. ``iteration``: steps since the
    warm-up started. ``heat``: float64 per node, the share of its forces it moves by (1 new,
    0 cold); the step decays it by the group's ``COOLING`` and zeroes it under ``HEAT_FLOOR``.
    """

    pos: npt.NDArray[np.float64]
    vel: npt.NDArray[np.float64]
    group: npt.NDArray[np.int8]
    pinned: npt.NDArray[np.uint8]
    indptr: npt.NDArray[np.int64]
    indices: npt.NDArray[np.int64]
    weights: npt.NDArray[np.float64]
    params: ParamTable
    iteration: int
    heat: npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class StepResult:
    nonfinite_resets: int
    kinetic_energy: float  # mean 0.5 |v|^2 per node after the step (unit mass)
    peak_kinetic_energy: float = 0.0  # the largest per-node 0.5 |v|^2 after the step
    warm: int = 0  # nodes still warm after the step (0: the layout is at rest)
