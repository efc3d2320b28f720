"""Layout quality measures, computed the same way for every layout (ours and the peers').

Positions are an (n, 2) or (n, 3) array; the graph is a both-direction CSR adjacency
(``indptr``, ``indices``) over the same node order. Every measure is a plain float:

- ``edge_length_ratio``: mean edge length / mean distance of random node pairs (lower is
  better; a random placement gives ~1);
- ``neighbourhood_precision``: for each node of degree d, the share of its min(d, 10) nearest
  points in the layout that lie within two hops in the graph (higher is better; a random
  placement gives ``two_hop_chance``);
- ``community_share``: the share of each node's 10 nearest points in its own community;
- ``distance_spearman``: Spearman correlation between graph distance and layout distance over
  sampled node pairs (``sample_pairs``).

Sampling (random pairs, nodes of large graphs) uses a seeded generator, so two layouts of the
same graph are measured on the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.sparse.csgraph import shortest_path
from scipy.spatial import cKDTree
from scipy.stats import spearmanr

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
MAX_K = 10


def csr_adjacency(n: int, edges: npt.ArrayLike) -> tuple[I64, I64]:
    """Both-direction CSR (``indptr``, ``indices``) of an undirected edge list, no duplicates,
    no self-loops."""
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    e = e[e[:, 0] != e[:, 1]]
    a = sp.coo_matrix(
        (np.ones(2 * len(e)), (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])), shape=(n, n)
    ).tocsr()
    a.sum_duplicates()
    a.sort_indices()
    return a.indptr.astype(np.int64), a.indices.astype(np.int64)


def sample_nodes(n: int, sample: int | None, seed: int = 0) -> I64:
    """All nodes, or ``sample`` of them without replacement (sorted)."""
    if sample is None or sample >= n:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=sample, replace=False)).astype(np.int64)


def edge_length_ratio(
    pos: npt.ArrayLike, edges: npt.ArrayLike, *, pairs: int = 200_000, seed: int = 0
) -> float:
    """Mean edge length / mean distance of ``pairs`` random pairs of distinct nodes."""
    p = np.asarray(pos, dtype=np.float64)
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    n = p.shape[0]
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, pairs)
    b = (a + rng.integers(1, n, pairs)) % n  # never a itself
    random_mean = float(np.linalg.norm(p[a] - p[b], axis=1).mean())
    edge_mean = float(np.linalg.norm(p[e[:, 0]] - p[e[:, 1]], axis=1).mean())
    return edge_mean / random_mean if random_mean > 0 else float("nan")


@dataclass(frozen=True)
class TwoHop:
    """Which (node, other) pairs lie within two hops, for a fixed set of nodes.

    ``keys`` are ``row * n + other`` for every ``other`` within two hops of ``nodes[row]``
    (the node itself excluded), sorted, so membership is one ``searchsorted``.
    """

    n: int
    nodes: I64
    k: I64  # min(degree, MAX_K) per node; nodes of degree 0 are left out
    keys: I64
    sizes: I64  # how many nodes lie within two hops of each

    @classmethod
    def build(cls, indptr: I64, indices: I64, nodes: I64) -> TwoHop:
        n = len(indptr) - 1
        deg = np.diff(indptr)
        nodes = nodes[deg[nodes] > 0]
        a = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(n, n))
        rows = a[nodes]
        reach = (rows + rows @ a).tocsr()
        reach.sum_duplicates()
        coo = reach.tocoo()
        keep = coo.col != nodes[coo.row]
        r = coo.row[keep].astype(np.int64)
        c = coo.col[keep].astype(np.int64)
        keys = np.sort(r * n + c)
        sizes = np.bincount(r, minlength=len(nodes)).astype(np.int64)
        k = np.minimum(deg[nodes], MAX_K).astype(np.int64)
        return cls(n, nodes.astype(np.int64), k, keys, sizes)

    def chance(self) -> float:
        """Expected precision of a random placement: mean share of the others within 2 hops."""
        return float(np.mean(self.sizes / max(self.n - 1, 1)))


def nearest(pos: F64, nodes: I64, k: int) -> I64:
    """The ``k`` nearest other points of each of ``nodes`` (row per node), by a cKDTree query
    of ``k + 1`` with the node itself removed (or the farthest one, if a duplicate point came
    first)."""
    tree = cKDTree(pos)
    _, idx = tree.query(pos[nodes], k=min(k + 1, len(pos)))
    idx = np.asarray(idx, dtype=np.int64).reshape(len(nodes), -1)
    out = np.empty((len(nodes), idx.shape[1] - 1), np.int64)
    for row in range(len(nodes)):
        hit = np.flatnonzero(idx[row] == nodes[row])
        drop = hit[0] if hit.size else idx.shape[1] - 1
        out[row] = np.delete(idx[row], drop)
    return out


def neighbourhood_precision(pos: npt.ArrayLike, two_hop: TwoHop) -> float:
    """Mean over ``two_hop.nodes`` of the share of a node's min(d, 10) nearest layout points
    that lie within two hops of it in the graph."""
    p = np.asarray(pos, dtype=np.float64)
    if len(two_hop.nodes) == 0:
        return float("nan")
    near = nearest(p, two_hop.nodes, MAX_K)
    rows = np.arange(len(two_hop.nodes), dtype=np.int64)[:, None]
    keys = rows * two_hop.n + near
    at = np.searchsorted(two_hop.keys, keys)
    at = np.minimum(at, len(two_hop.keys) - 1)
    hit = two_hop.keys[at] == keys if len(two_hop.keys) else np.zeros(keys.shape, bool)
    within = np.arange(near.shape[1])[None, :] < two_hop.k[:, None]  # only the first k
    share = (hit & within).sum(axis=1) / two_hop.k
    return float(share.mean())


def community_share(
    pos: npt.ArrayLike, labels: npt.ArrayLike, nodes: I64 | None = None, k: int = MAX_K
) -> float:
    """Mean share of each node's ``k`` nearest layout points in its own community."""
    p = np.asarray(pos, dtype=np.float64)
    lab = np.asarray(labels)
    nodes = np.arange(len(p), dtype=np.int64) if nodes is None else nodes
    near = nearest(p, nodes, k)
    return float((lab[near] == lab[nodes][:, None]).mean())


@dataclass(frozen=True)
class PairSample:
    """Node pairs with their graph distance (hops), for ``distance_spearman``."""

    a: I64
    b: I64
    hops: F64

    @classmethod
    def build(
        cls, indptr: I64, indices: I64, *, sources: int = 100, per_source: int = 100, seed: int = 0
    ) -> PairSample:
        n = len(indptr) - 1
        rng = np.random.default_rng(seed)
        src = rng.choice(n, size=min(sources, n), replace=False)
        a = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(n, n))
        dist = shortest_path(a, unweighted=True, directed=False, indices=src)
        aa, bb, hh = [], [], []
        for row, s in enumerate(src.tolist()):
            ok = np.flatnonzero(np.isfinite(dist[row]) & (np.arange(n) != s))
            pick = rng.choice(ok, size=min(per_source, len(ok)), replace=False)
            aa.append(np.full(len(pick), s))
            bb.append(pick)
            hh.append(dist[row, pick])
        return cls(
            np.concatenate(aa).astype(np.int64),
            np.concatenate(bb).astype(np.int64),
            np.concatenate(hh).astype(np.float64),
        )


def distance_spearman(pos: npt.ArrayLike, pairs: PairSample) -> float:
    """Spearman correlation of graph distance and layout distance over ``pairs``."""
    p = np.asarray(pos, dtype=np.float64)
    d = np.linalg.norm(p[pairs.a] - p[pairs.b], axis=1)
    rho = spearmanr(pairs.hops, d).statistic
    return float(rho)


def lattice_shape(pos: npt.ArrayLike, side: int) -> dict[str, float]:
    """How a side x side grid graph (node = row * side + col) came out, beyond the measures:

    - ``aspect``: mean length of the edges along rows / along columns, folded to <= 1 (1: as
      wide as long; a layout stretched by 4% along one axis scores 0.96);
    - ``centre`` and ``rim``: mean length of the edges in the middle tenth (by Chebyshev
      distance from the centre in the grid) and in the outer tenth, over the mean edge length
      (1 and 1: an even lattice; a force layout whose gravity squeezes it has centre < 1);
    - ``outer``: mean length of the edges that join the outermost rows and columns to the next
      ones in, over the mean edge length (1: even; under 1: the rim's rows pressed together).
    """
    p = np.asarray(pos, dtype=np.float64)
    v = np.arange(side * side, dtype=np.int64)
    row, col = np.divmod(v, side)
    along = v[col < side - 1]  # (v, v + 1)
    across = v[row < side - 1]  # (v, v + side)
    la = np.linalg.norm(p[along + 1] - p[along], axis=1)
    lc = np.linalg.norm(p[across + side] - p[across], axis=1)
    ratio = float(la.mean() / lc.mean())
    lengths = np.concatenate([la, lc])
    mid = (side - 1) / 2.0
    # Chebyshev distance of each edge's midpoint from the grid's centre, in grid units
    ring = np.concatenate(
        [
            np.maximum(np.abs(col[along] + 0.5 - mid), np.abs(row[along] - mid)),
            np.maximum(np.abs(col[across] - mid), np.abs(row[across] + 0.5 - mid)),
        ]
    )
    tenth = side / 10.0
    mean = float(lengths.mean())
    # first and last row's edges across, first and last column's along
    outer = np.concatenate(
        [
            lc[(row[across] == 0) | (row[across] == side - 2)],
            la[(col[along] == 0) | (col[along] == side - 2)],
        ]
    )
    return {
        "aspect": min(ratio, 1.0 / ratio),
        "centre": float(lengths[ring < tenth].mean()) / mean,
        "rim": float(lengths[ring >= mid - tenth].mean()) / mean,
        "outer": float(outer.mean()) / mean,
    }


def squared(pos: npt.ArrayLike, side: int) -> F64:
    """A side x side grid's layout with its stretch along one direction taken out: the
    best-fit linear map from the lattice's (column, row) to the layout, replaced by the
    rotation and mean scale of that map; what the map does not explain (a squeezed centre, a
    curled rim) is kept. ``distance_spearman`` of this says what a square sheet would score."""
    p = np.asarray(pos, dtype=np.float64)
    v = np.arange(side * side, dtype=np.float64)
    row, col = np.divmod(v, side)
    lat = np.stack([col - col.mean(), row - row.mean()], axis=1)
    c = p - p.mean(axis=0)
    fit = np.linalg.lstsq(lat, c, rcond=None)[0]  # (2, dim): c ~ lat @ fit
    u, sv, vt = np.linalg.svd(fit, full_matrices=False)
    iso = u @ np.diag(np.full(2, np.sqrt(sv[0] * sv[1]))) @ vt
    return np.asarray(c + lat @ (iso - fit), dtype=np.float64)
