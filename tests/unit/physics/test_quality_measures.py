"""The layout quality measures of benchmarks/quality.py, on tiny graphs with known answers."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))

import _quality as q  # noqa: E402


def grid(side: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Edges of a side x side grid graph and its perfect embedding (node = row * side + col)."""
    edges = []
    for r in range(side):
        for c in range(side):
            v = r * side + c
            if c + 1 < side:
                edges.append((v, v + 1))
            if r + 1 < side:
                edges.append((v, v + side))
    pos = np.array([(r, c, 0.0) for r in range(side) for c in range(side)], dtype=np.float64)
    return np.asarray(edges, dtype=np.int64), pos


def test_csr_adjacency_is_symmetric_without_duplicates_or_loops() -> None:
    indptr, indices = q.csr_adjacency(4, [(0, 1), (1, 0), (1, 2), (2, 2), (2, 3), (2, 3)])
    assert indptr.tolist() == [0, 1, 3, 5, 6]
    assert indices.tolist() == [1, 0, 2, 1, 3, 2]


def test_perfect_grid_embedding_ranks_distances_like_the_graph() -> None:
    edges, pos = grid(12)
    indptr, indices = q.csr_adjacency(len(pos), edges)
    pairs = q.PairSample.build(indptr, indices, sources=30, per_source=50)
    assert (pairs.a != pairs.b).all()
    # hops are the Manhattan distance on a grid
    manhattan = np.abs(pos[pairs.a] - pos[pairs.b]).sum(axis=1)
    assert np.array_equal(pairs.hops, manhattan)
    assert q.distance_spearman(pos, pairs) > 0.95
    rng = np.random.default_rng(3)
    assert abs(q.distance_spearman(rng.permutation(pos), pairs)) < 0.1


def test_perfect_grid_has_short_edges_and_exact_neighbourhoods() -> None:
    edges, pos = grid(20)
    n = len(pos)
    indptr, indices = q.csr_adjacency(n, edges)
    # edges have length 1; random pairs on a 20 x 20 grid are ~10.4 apart
    assert q.edge_length_ratio(pos, edges) == pytest.approx(1 / 10.4, rel=0.05)
    two_hop = q.TwoHop.build(indptr, indices, np.arange(n, dtype=np.int64))
    # a node's d nearest points (d <= 4) are its grid neighbours or, at a tie, diagonal ones:
    # all within two hops
    assert q.neighbourhood_precision(pos, two_hop) == pytest.approx(1.0)


def test_random_placement_scores_chance() -> None:
    edges, _ = grid(30)
    n = 900
    indptr, indices = q.csr_adjacency(n, edges)
    two_hop = q.TwoHop.build(indptr, indices, np.arange(n, dtype=np.int64))
    # interior nodes have 12 nodes within two hops: chance ~ 12 / 899
    assert 0.011 < two_hop.chance() < 0.0134
    rng = np.random.default_rng(1)
    shares = [q.neighbourhood_precision(rng.random((n, 3)), two_hop) for _ in range(5)]
    assert np.mean(shares) == pytest.approx(two_hop.chance(), abs=0.01)
    assert q.edge_length_ratio(rng.random((n, 3)), edges) == pytest.approx(1.0, abs=0.05)


def test_two_hop_counts_neighbours_of_neighbours_but_not_the_node() -> None:
    # path 0-1-2-3-4
    indptr, indices = q.csr_adjacency(5, [(0, 1), (1, 2), (2, 3), (3, 4)])
    two_hop = q.TwoHop.build(indptr, indices, np.array([0, 2], dtype=np.int64))
    assert two_hop.sizes.tolist() == [2, 4]
    assert two_hop.k.tolist() == [1, 2]
    # node 0's nearest point is node 2 (two hops: a hit); node 2's two nearest are 0 and 4
    pos = np.array([[0.0], [9.0], [1.0], [20.0], [2.0]])
    pos = np.c_[pos, np.zeros((5, 2))]
    assert q.neighbourhood_precision(pos, two_hop) == pytest.approx(1.0)
    # node 0's nearest is now node 3 (three hops): half the nodes score 0
    pos[3, 0] = 0.5
    assert q.neighbourhood_precision(pos, two_hop) == pytest.approx(0.5)


def test_isolated_nodes_are_left_out_and_duplicates_do_not_count_the_node_itself() -> None:
    indptr, indices = q.csr_adjacency(4, [(0, 1)])
    two_hop = q.TwoHop.build(indptr, indices, np.arange(4, dtype=np.int64))
    assert two_hop.nodes.tolist() == [0, 1]
    pos = np.zeros((4, 3))  # every point on one spot: the query may return any of them first
    share = q.neighbourhood_precision(pos, two_hop)
    assert 0.0 <= share <= 1.0


def test_community_share_separated_vs_mixed() -> None:
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(4), 50)
    centres = np.eye(4, 3) * 100.0
    separated = centres[labels] + rng.normal(size=(200, 3))
    assert q.community_share(separated, labels) == pytest.approx(1.0)
    mixed = rng.normal(size=(200, 3))
    assert q.community_share(mixed, labels) == pytest.approx(0.25, abs=0.05)
    nodes = q.sample_nodes(200, 40, seed=1)
    assert len(nodes) == 40
    assert q.community_share(separated, labels, nodes) == pytest.approx(1.0)


def test_lattice_shape_sees_a_stretched_and_a_squeezed_grid() -> None:
    _, pos = grid(40)
    even = q.lattice_shape(pos, 40)
    assert even == pytest.approx({"aspect": 1.0, "centre": 1.0, "rim": 1.0, "outer": 1.0})
    stretched = pos * np.array([1.0, 1.05, 1.0])  # along the rows (columns index axis 1)
    assert q.lattice_shape(stretched, 40)["aspect"] == pytest.approx(1 / 1.05)
    # squeezed towards the centre: r -> r^1.5 shortens the middle edges, lengthens the rim's
    c = pos - pos.mean(axis=0)
    r = np.linalg.norm(c, axis=1, keepdims=True)
    squeezed = c * np.where(r > 0, r**0.5, 0.0)
    shape = q.lattice_shape(squeezed, 40)
    assert shape["centre"] < 0.7 < 1.1 < shape["rim"]
    assert shape["aspect"] == pytest.approx(1.0)


def test_lattice_shape_sees_the_outer_rows_pressed_together() -> None:
    _, pos = grid(40)
    c = pos - pos.mean(axis=0)
    # the outermost row and column on each side moved half a spacing in: their edges to the
    # next row in are half as long (and the rest a little longer than the mean)
    edge = np.abs(c[:, :2]).max() - 0.5
    pressed = c.copy()
    for k in range(2):
        out = np.abs(c[:, k]) > edge
        pressed[out, k] -= 0.5 * np.sign(c[out, k])
    shape = q.lattice_shape(pressed, 40)
    assert 0.45 < shape["outer"] < 0.55
    assert q.lattice_shape(c, 40)["outer"] == pytest.approx(1.0)


def test_squared_takes_out_a_stretch_and_keeps_the_rest() -> None:
    _, pos = grid(40)
    c = pos - pos.mean(axis=0)
    turn = np.array([[0.6, -0.8, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 1.0]])
    stretched = (c * np.array([1.0, 1.08, 1.0])) @ turn.T
    assert q.lattice_shape(stretched, 40)["aspect"] == pytest.approx(1 / 1.08)
    square = q.squared(stretched, 40)
    assert q.lattice_shape(square, 40)["aspect"] == pytest.approx(1.0)
    # a similarity of the lattice: same edge lengths everywhere, area kept
    lengths = np.linalg.norm(square[1:40] - square[:39], axis=1)
    assert lengths == pytest.approx(np.full(39, np.sqrt(1.08)))
    # a squeeze (not a linear map) stays
    r = np.linalg.norm(c, axis=1, keepdims=True)
    squeezed = c * np.where(r > 0, r**0.5, 0.0)
    assert q.lattice_shape(q.squared(squeezed, 40), 40)["centre"] == pytest.approx(
        q.lattice_shape(squeezed, 40)["centre"]
    )
