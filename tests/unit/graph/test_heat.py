"""spread_heat: the compiled two-hop spread gives what the plain definition gives."""

from __future__ import annotations

import numpy as np
import pytest

from visionflow.graph.dense import csr_from_edges
from visionflow.graph.heat import spread_heat


def reference(heat, indptr, indices, seeds, levels):  # type: ignore[no-untyped-def]
    """The definition, pair by pair: seed level, half to neighbours, a quarter two hops out."""
    out = heat.copy()
    for s, level in zip(seeds.tolist(), levels.tolist(), strict=True):
        out[s] = max(out[s], level)
        for j in indices[indptr[s] : indptr[s + 1]].tolist():
            out[j] = max(out[j], level / 2)
            for k in indices[indptr[j] : indptr[j + 1]].tolist():
                out[k] = max(out[k], level / 4)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_matches_the_definition_on_random_graphs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    m = int(rng.integers(0, 4 * n))
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)  # self-loops and repeats included
    indptr, indices, _ = csr_from_edges(n, src, dst, np.ones(m))
    heat = rng.random(n) * (rng.random(n) < 0.3)  # mostly cold, some warm already
    seeds = rng.integers(0, n, int(rng.integers(0, 20)))  # repeats: the highest level counts
    levels = rng.choice([1.0, 0.6, 0.5, 0.25], seeds.size)
    want = reference(heat, indptr, indices, seeds, levels)
    spread_heat(heat, indptr, indices, seeds, levels)
    np.testing.assert_array_equal(heat, want)


def test_a_hub_neighbourhood_is_expanded_once() -> None:
    # A star of 200k leaves, every leaf a seed: the numpy version expanded the hub's 200k
    # neighbours once per leaf (4e10 pairs); each node is expanded once per hop here.
    n = 200_001
    leaves = np.arange(1, n)
    indptr, indices, _ = csr_from_edges(n, np.zeros(n - 1, np.int64), leaves, np.ones(n - 1))
    heat = np.zeros(n)
    spread_heat(heat, indptr, indices, leaves, np.ones(n - 1))
    assert heat[0] == 0.5 and np.all(heat[1:] == 1.0)
