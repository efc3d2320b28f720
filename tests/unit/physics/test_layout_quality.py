"""Layout quality with the shipped defaults, as users get it: a GraphStore import and a
PhysicsEngine stepped until it rests (benchmarks/quality.py measures the same against peers).

Every threshold here is what a readable picture needs, measured with the quality benchmark's
own measures (benchmarks/_quality.py); each run takes about a second on 2 cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
from physics_helpers import barabasi_albert

from visionflow import settings as s
from visionflow.graph.store import GraphStore, NodeKind
from visionflow.physics.engine import PhysicsEngine

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))

import _quality as q  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


def shipped() -> s.PhysicsSettings:
    """settings.toml as shipped, no environment: what `visionflow serve` runs with."""
    return s.load(ROOT / "settings.toml", environ={}).settings.physics


def lay_out(n: int, edges: npt.ArrayLike) -> tuple[F64, int, GraphStore]:
    """Import the graph (ids "0".."n-1") and step to rest; (positions by id, steps, store)."""
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    store = GraphStore()
    store.import_document(
        {
            "nodes": [{"id": str(i)} for i in range(n)],
            "edges": [{"source": str(a), "target": str(b)} for a, b in e.tolist()],
        }
    )
    settings = shipped()
    engine = PhysicsEngine(store, settings)
    limit = 2 * settings.knowledge.cooling_steps
    steps = 0
    while not engine.step_blocking()[0].settled:
        steps += 1
        assert steps < limit, f"still moving after {limit} steps"
    steps += 1
    state = store.sync()
    raw = np.empty(n, np.uint32)
    for raw_id, key in store.keys().items():
        raw[int(key.external_id)] = raw_id
    return state.pos[state.index_of(raw)], steps, store


def precision(pos: F64, n: int, edges: I64) -> float:
    indptr, indices = q.csr_adjacency(n, edges)
    return q.neighbourhood_precision(pos, q.TwoHop.build(indptr, indices, np.arange(n)))


def test_barabasi_albert_2k_shows_structure() -> None:
    n = 2000
    edges = barabasi_albert(n, 2, seed=1)
    pos, steps, _ = lay_out(n, edges)
    assert steps <= shipped().knowledge.cooling_steps + 1
    # igraph FR 3-D scores 0.40 / 0.13 on BA 1k (benchmarks/README.md); a uniform ball ~1 / 0.01
    assert q.edge_length_ratio(pos, edges) < 0.42
    assert precision(pos, n, edges) > 0.1


def test_block_model_communities_are_separated() -> None:
    rng = np.random.default_rng(3)
    blocks, size = 8, 150
    n = blocks * size
    label = np.repeat(np.arange(blocks), size)
    a, b = np.triu_indices(n, 1)
    same = label[a] == label[b]
    p = np.where(same, 8.0 / (size - 1), 1.0 / (n - size))
    keep = rng.random(a.size) < p
    edges = np.column_stack([a[keep], b[keep]])
    pos, _, _ = lay_out(n, edges)
    assert q.community_share(pos, label, np.arange(n)) >= 0.9


def test_grid_unfolds_flat() -> None:
    side = 30
    r, c = np.divmod(np.arange(side * side), side)
    right = np.flatnonzero(c < side - 1)
    down = np.flatnonzero(r < side - 1)
    edges = np.concatenate(
        [np.column_stack([right, right + 1]), np.column_stack([down, down + side])]
    )
    n = side * side
    pos, _, _ = lay_out(n, edges)
    indptr, indices = q.csr_adjacency(n, edges)
    pairs = q.PairSample.build(indptr, indices, sources=100, per_source=50)
    assert q.distance_spearman(pos, pairs) >= 0.9  # a perfect embedding scores 0.98
    assert precision(pos, n, edges) > 0.9
    centred = pos - pos.mean(axis=0)
    sv = np.linalg.svd(centred, compute_uv=False)
    assert sv[2] < 0.35 * sv[1]  # a sheet, not a crumpled ball


def test_a_long_chain_reads_as_a_chain() -> None:
    # Inverse-square repulsion is short-ranged in 3-D: a long chain comes out as a smooth
    # curve, not a straight line, but one that never touches itself.
    n = 200
    edges = np.column_stack([np.arange(n - 1), np.arange(1, n)])
    pos, _, _ = lay_out(n, edges)
    assert precision(pos, n, edges) > 0.95  # each node's 2 nearest points are its neighbours
    hops = np.linalg.norm(np.diff(pos, axis=0), axis=1)
    assert np.linalg.norm(pos[-1] - pos[0]) > 0.1 * hops.sum()  # not balled up
    d = np.linalg.norm(pos[:, None] - pos[None], axis=2)
    far = np.abs(np.arange(n)[:, None] - np.arange(n)[None]) > 3
    assert d[far].min() > 0.5 * np.median(hops)  # no part of it crosses another


def test_two_disconnected_cliques_sit_apart_in_one_view() -> None:
    k = 15
    clique = [(a, b) for a in range(k) for b in range(a + 1, k)]
    edges = clique + [(a + k, b + k) for a, b in clique]
    pos, _, _ = lay_out(2 * k, edges)
    c1, c2 = pos[:k].mean(axis=0), pos[k:].mean(axis=0)
    r1 = np.linalg.norm(pos[:k] - c1, axis=1).max()
    r2 = np.linalg.norm(pos[k:] - c2, axis=1).max()
    gap = float(np.linalg.norm(c1 - c2))
    assert 1.5 * (r1 + r2) < gap < 20 * (r1 + r2)


def test_a_small_swarm_gathers_around_its_hubs() -> None:
    # Agents of three swarms, each linked to its swarm's hub (as graph/agents.py links them),
    # arrive one poll at a time into an empty store, as MCP polls bring them.
    store = GraphStore()
    settings = shipped()
    engine = PhysicsEngine(store, settings)
    hubs = [store.upsert_node(NodeKind.AGENT, f"swarm-{h}") for h in range(3)]
    members: dict[int, list[int]] = {h: [] for h in hubs}
    for k in range(24):
        hub = hubs[k % 3]
        agent = store.upsert_node(NodeKind.AGENT, f"agent-{k}")
        store.set_edge(hub, agent)
        members[hub].append(agent)
        for _ in range(5):  # a few steps between polls
            engine.step_blocking()
    for _ in range(2 * settings.agents.cooling_steps):
        snap, _, _ = engine.step_blocking()
        if snap.settled:
            break
    assert snap.settled
    state = store.sync()
    where = {int(raw): state.pos[i] for i, raw in enumerate(state.ids)}
    for hub, agents in members.items():
        own = [np.linalg.norm(where[a] - where[hub]) for a in agents]
        others = [np.linalg.norm(where[a] - where[h]) for a in agents for h in hubs if h != hub]
        assert max(own) < min(others)
