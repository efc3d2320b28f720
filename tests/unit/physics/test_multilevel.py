"""Multilevel placement: coarsening, the coarsest embedding, and the placement as a whole."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from physics_helpers import DEFAULTS

from visionflow.graph.dense import csr_from_edges
from visionflow.physics import cpu, multilevel
from visionflow.physics.params import pack

I64 = npt.NDArray[np.int64]


def csr(n: int, edges: npt.ArrayLike) -> tuple[I64, I64]:
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    indptr, indices, _ = csr_from_edges(n, e[:, 0], e[:, 1], np.ones(len(e)))
    return indptr, indices


def grid(side: int) -> I64:
    r, c = np.divmod(np.arange(side * side), side)
    right = np.flatnonzero(c < side - 1)
    down = np.flatnonzero(r < side - 1)
    return np.concatenate(
        [np.column_stack([right, right + 1]), np.column_stack([down, down + side])]
    )


def test_a_grid_coarsens_by_about_half_in_both_directions() -> None:
    side = 40
    indptr, indices = csr(side * side, grid(side))
    cluster, nc, cptr, cidx = multilevel.coarsen(indptr, indices, seed=0)
    assert 0.4 * side * side <= nc <= 0.5 * side * side  # pairs, and leftovers join one
    assert np.bincount(cluster).min() >= 1 and cluster.max() == nc - 1
    # pairs lie along both axes (ties broken at random), not along one only
    pairs = [np.flatnonzero(cluster == c) for c in range(nc)]
    horizontal = sum(1 for p in pairs if len(p) == 2 and p[1] - p[0] == 1)
    vertical = sum(1 for p in pairs if len(p) == 2 and p[1] - p[0] == side)
    assert 0.35 < horizontal / (horizontal + vertical) < 0.65
    assert cptr[-1] == cidx.shape[0] and np.all(cidx < nc)
    src = np.repeat(np.arange(nc), np.diff(cptr))
    assert not np.any(src == cidx)  # no self-loops


def test_a_star_collapses_in_one_level_and_isolated_nodes_stay() -> None:
    n = 101
    indptr, indices = csr(n + 3, [(0, i) for i in range(1, n)])  # + 3 isolated nodes
    cluster, nc, _, _ = multilevel.coarsen(indptr, indices)
    assert nc == 4  # the star, then each isolated node alone
    assert len(set(cluster[:n].tolist())) == 1


def test_mds_lays_a_path_out_straight() -> None:
    n = 20
    indptr, indices = csr(n, [(i, i + 1) for i in range(n - 1)])
    pos = multilevel.mds(indptr, indices, 2.0)
    assert np.linalg.norm(pos[-1] - pos[0]) > 0.95 * 2.0 * (n - 1)


def test_mds_of_separate_parts_is_finite() -> None:
    indptr, indices = csr(6, [(0, 1), (2, 3)])  # two pairs and two isolated nodes
    pos = multilevel.mds(indptr, indices, 1.0)
    assert np.all(np.isfinite(pos))
    assert len({tuple(np.round(p, 6)) for p in pos}) == 6


def test_placement_of_a_grid_is_flat_square_and_deterministic() -> None:
    side = 50
    n = side * side
    indptr, indices = csr(n, grid(side))
    params = pack(DEFAULTS, DEFAULTS)
    group = np.zeros(n, np.int8)
    pos = multilevel.place(cpu.CpuWorkspace(), indptr, indices, group, params)
    again = multilevel.place(cpu.CpuWorkspace(), indptr, indices, group, params)
    np.testing.assert_array_equal(pos, again)
    assert np.all(np.isfinite(pos)) and np.allclose(pos.mean(axis=0), 0.0, atol=1e-6)
    sv = np.linalg.svd(pos, compute_uv=False)
    assert sv[1] > 0.8 * sv[0] and sv[2] < 0.3 * sv[1]
    # rows of the grid stay in order: the ends of each row lie on opposite sides
    corners = pos[[0, side - 1, n - side, n - 1]]
    assert np.linalg.norm(corners[0] - corners[3]) > np.linalg.norm(corners[0] - corners[1])
