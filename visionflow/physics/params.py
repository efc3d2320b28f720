"""Pack the two physics parameter sets into one small float64 array the kernels can read.

Row ``GROUP_KNOWLEDGE`` holds ``physics.knowledge``, row ``GROUP_AGENT`` holds ``physics.agents``;
every node carries its group (0 or 1) and the kernels index this table with it, so both graphs
run in one simulation and a parameter change takes effect on the very next step.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from visionflow.settings import PhysicsParams, PhysicsSettings

GROUP_KNOWLEDGE = 0
GROUP_AGENT = 1
N_GROUPS = 2

# Column indices of the packed table (one row per group).
ENABLED = 0
SPRING_K = 1
REST_LENGTH = 2
REPEL_K = 3
CENTER_GRAVITY_K = 4
DAMPING = 5
DT = 6
MAX_VELOCITY = 7
MAX_FORCE = 8
ENABLE_BOUNDS = 9
BOUNDS_SIZE = 10
BOUNDARY_DAMPING = 11
WARMUP_ITERATIONS = 12
SOFTENING = 13
THETA = 14
COOLING = 15  # heat kept per step: HEAT_FLOOR ** (1 / cooling_steps)
LINLOG = 16  # 1.0: springs pull logarithmically beyond cpu.LINLOG_RESTS rest lengths (LinLog)
N_PARAMS = 17

# A node's heat (its share of the forces) starts at 1 when it is new and decays by COOLING per
# step; under this floor it is cold: it stops moving and no longer keeps the layout awake.
# d3-force's alphaMin is the same idea (0.001).
HEAT_FLOOR = 0.001

ParamTable = npt.NDArray[np.float64]


def _row(p: PhysicsParams) -> list[float]:
    row = [0.0] * N_PARAMS
    row[ENABLED] = 1.0 if p.enabled else 0.0
    row[SPRING_K] = p.spring_k
    row[REST_LENGTH] = p.rest_length
    row[REPEL_K] = p.repel_k
    row[CENTER_GRAVITY_K] = p.center_gravity_k
    row[DAMPING] = p.damping
    row[DT] = p.dt
    row[MAX_VELOCITY] = p.max_velocity
    row[MAX_FORCE] = p.max_force
    row[ENABLE_BOUNDS] = 1.0 if p.enable_bounds else 0.0
    row[BOUNDS_SIZE] = p.bounds_size
    row[BOUNDARY_DAMPING] = p.boundary_damping
    row[WARMUP_ITERATIONS] = float(p.warmup_iterations)
    row[SOFTENING] = p.softening
    row[THETA] = p.theta
    row[COOLING] = HEAT_FLOOR ** (1.0 / p.cooling_steps)
    row[LINLOG] = 1.0 if p.linlog else 0.0
    return row


def pack(knowledge: PhysicsParams, agents: PhysicsParams) -> ParamTable:
    """Return a fresh C-contiguous (2, N_PARAMS) float64 table."""
    table = np.array([_row(knowledge), _row(agents)], dtype=np.float64)
    if not np.all(np.isfinite(table)):
        # settings validation already refuses these; a NaN here would poison every node.
        raise ValueError("physics parameters must be finite")
    return table


def pack_settings(settings: PhysicsSettings) -> ParamTable:
    return pack(settings.knowledge, settings.agents)
