"""Multilevel placement: coarsening, the coarsest embedding, and the placement as a whole."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from physics_helpers import DEFAULTS
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path

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


def level(n: int, edges: npt.ArrayLike) -> multilevel.Level:
    indptr, indices = csr(n, edges)
    return multilevel.Level(
        indptr, indices, np.ones(indices.shape[0]), np.ones(n), np.zeros(n, np.int8)
    )


def test_a_grid_coarsens_by_about_half_in_both_directions() -> None:
    side = 40
    cluster, coarse = multilevel.coarsen(level(side * side, grid(side)), seed=0)
    cptr, cidx, nc = coarse.indptr, coarse.indices, coarse.indptr.shape[0] - 1
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


def hops(level: multilevel.Level, a: int, b: int) -> float:
    n = level.indptr.shape[0] - 1
    adjacency = csr_matrix((level.weights, level.indices, level.indptr), shape=(n, n))
    return float(shortest_path(adjacency, unweighted=True, indices=[a])[0, b])


def test_a_grid_coarsens_alike_along_both_axes() -> None:
    # Leftovers joining a pair must not favour one direction: with ties taken in CSR order
    # 58 % of all joins ran down the columns, and the coarse grid took 14 % fewer hops down
    # than across (the placed sheet 0.95 as wide as long).
    side = 60
    n = side * side
    for seed in range(3):
        cluster, coarse = multilevel.coarsen(level(n, grid(side)), seed=seed)
        cells = cluster.reshape(side, side)
        across = int(np.sum(cells[:, 1:] == cells[:, :-1]))
        down = int(np.sum(cells[1:, :] == cells[:-1, :]))
        assert 0.45 < across / (across + down) < 0.55, (seed, across, down)
    # two levels further down, crossing the coarse grid takes as many hops either way
    for seed in (1, 2):
        member, coarse = multilevel.coarsen(coarse, seed=seed)
        cluster = member[cluster]
    lines = range(5, side, 10)
    across_hops = [hops(coarse, cluster[r * side], cluster[r * side + side - 1]) for r in lines]
    down_hops = [hops(coarse, cluster[c], cluster[n - side + c]) for c in lines]
    assert 0.9 < np.mean(across_hops) / np.mean(down_hops) < 1.1, (across_hops, down_hops)


def test_coarse_edges_weigh_the_edges_they_stand_for_and_nodes_their_members() -> None:
    side = 20
    fine = level(side * side, grid(side))
    cluster, coarse = multilevel.coarsen(fine, seed=3)
    src = np.repeat(np.arange(side * side), np.diff(fine.indptr))
    between = cluster[src] != cluster[fine.indices]
    # every fine edge between two clusters is counted once in the coarse edge joining them
    assert coarse.weights.sum() == between.sum()
    a = np.repeat(np.arange(coarse.indptr.shape[0] - 1), np.diff(coarse.indptr))
    for x, y, w in zip(a[:50], coarse.indices[:50], coarse.weights[:50], strict=True):
        assert w == np.sum((cluster[src] == x) & (cluster[fine.indices] == y))
    np.testing.assert_array_equal(coarse.size, np.bincount(cluster))
    _, coarser = multilevel.coarsen(coarse, seed=4)
    assert coarser.size.sum() == side * side


def test_the_second_level_of_a_grid_merges_side_by_side_pairs_into_squares() -> None:
    # A pair shares two edges with the pair beside it and one with a pair end to end: the
    # heavy-edge matching takes the two, so most clusters of four are 2 x 2 squares (57 %
    # here; 29 % when every neighbour counts alike), which keeps the coarse grids square.
    side = 40
    cluster1, first = multilevel.coarsen(level(side * side, grid(side)), seed=0)
    cluster2, second = multilevel.coarsen(first, seed=1)
    member = cluster2[cluster1]
    fours = squares = 0
    for c in range(second.indptr.shape[0] - 1):
        cells = np.flatnonzero(member == c)
        if len(cells) == 4:
            fours += 1
            r, col = np.divmod(cells, side)
            squares += int(np.ptp(r) == 1 and np.ptp(col) == 1)
    assert fours > 100 and squares > 0.45 * fours


def test_a_star_collapses_in_one_level_and_isolated_nodes_pair_up() -> None:
    n = 101
    cluster, coarse = multilevel.coarsen(level(n + 3, [(0, i) for i in range(1, n)]))  # + 3 alone
    nc = coarse.indptr.shape[0] - 1
    assert nc == 3  # the star, then the isolated nodes two by two
    assert len(set(cluster[:n].tolist())) == 1
    assert sorted(np.bincount(cluster[n:]).tolist()) == [0, 1, 2]


def test_an_edgeless_graph_halves_each_level() -> None:
    # it did not shrink at all, so the coarsest level was the whole graph (a dense MDS of 10k
    # nodes: 1.8 GB, half an hour, the layout frozen meanwhile)
    _, coarse = multilevel.coarsen(level(5001, np.zeros((0, 2))))
    assert coarse.indptr.shape[0] - 1 == 2501
    assert coarse.indices.shape[0] == 0


def test_a_placement_never_runs_a_dense_mds_of_a_large_level(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sizes: list[int] = []
    real = multilevel.mds

    def spy(indptr: I64, indices: I64, scale: float) -> npt.NDArray[np.float64]:
        sizes.append(indptr.shape[0] - 1)
        return real(indptr, indices, scale)

    monkeypatch.setattr(multilevel, "mds", spy)
    params = pack(DEFAULTS, DEFAULTS)
    n = 3000
    empty = np.zeros(n + 1, np.int64), np.zeros(0, np.int64)
    pos = multilevel.place(cpu.CpuWorkspace(), *empty, np.zeros(n, np.int8), params)
    assert sizes and max(sizes) <= multilevel.COARSEST
    # a coarsest level that stays large (coarsening stopped early) starts from a ball instead
    monkeypatch.setattr(multilevel, "COARSEST", 1000)
    sizes.clear()
    ball = multilevel.place(cpu.CpuWorkspace(), *empty, np.zeros(n, np.int8), params)
    assert sizes == []
    for placed in (pos, ball):
        assert placed.shape == (n, 3) and np.all(np.isfinite(placed))
        assert len({tuple(p) for p in np.round(placed, 6).tolist()}) == n  # no two on one point


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
