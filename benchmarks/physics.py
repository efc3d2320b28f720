"""Physics benchmark: median ms per layout step on Barabasi-Albert graphs (average degree 4).

Two tables.

1. The step on a synthetic spread-out placement (a Gaussian cloud, every node warm), against
   two peers run in the same process on the same graphs: networkx.spring_layout (3-D) and
   igraph's layout_fruchterman_reingold_3d, timed per iteration. A peer is skipped at a size
   where its estimated run would exceed PEER_BUDGET_S.  Also reports peak memory of our step at
   the largest size (tracemalloc peak of numpy allocations and the growth of max RSS).
2. What users get: the graph imported into a ``GraphStore`` as one document and stepped with
   ``PhysicsEngine.step_blocking()`` and the shipped settings from import to rest, as the
   service runs it: the median and 90th percentile step over that run (a compact layout makes
   Barnes-Hut open more cells than the spread-out cloud), the multilevel placement, and the
   total compute from import to rest. Table 1's median is its baseline (same process).

    .venv/bin/pip install networkx igraph     # the project's ``bench`` extra
    .venv/bin/python benchmarks/physics.py [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from visionflow import settings as s
from visionflow.graph.dense import csr_from_edges
from visionflow.graph.store import GraphStore
from visionflow.physics import cpu
from visionflow.physics.params import pack
from visionflow.physics.step import StepInput
from visionflow.settings import PhysicsParams

PEER_BUDGET_S = 60.0


def ba_edges(n: int, seed: int = 1) -> npt.NDArray[np.int64]:
    import igraph

    g = igraph.Graph.Barabasi(n, 2)
    return np.asarray(g.get_edgelist(), dtype=np.int64)


def ours(n: int, edges: npt.NDArray[np.int64], steps: int) -> list[float]:
    indptr, indices, weights = csr_from_edges(n, edges[:, 0], edges[:, 1], np.ones(len(edges)))
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(n, 3)) * 10.0 * n ** (1 / 3)
    vel = np.zeros((n, 3))
    group = np.zeros(n, np.int8)
    pinned = np.zeros(n, np.uint8)
    params = pack(PhysicsParams(), PhysicsParams())
    ws = cpu.CpuWorkspace()
    heat = np.ones(n)
    times = []
    for it in range(steps + 3):  # three unmeasured steps: compile, allocation, warm caches
        heat[:] = 1.0  # every node warm: the full step every time
        inp = StepInput(pos, vel, group, pinned, indptr, indices, weights, params, it, heat)
        t0 = time.perf_counter()
        cpu.step(ws, inp)
        if it >= 3:
            times.append(time.perf_counter() - t0)
    return times


def real_run(n: int, edges: npt.NDArray[np.int64]) -> dict[str, float]:
    """Import to rest through the engine with settings.toml's values (see the docstring)."""
    from pathlib import Path

    from visionflow.physics.engine import PhysicsEngine

    root = Path(__file__).resolve().parents[1]
    settings = s.load(root / "settings.toml", environ={}).settings.physics
    store = GraphStore()
    store.import_document(
        {
            "nodes": [{"id": str(i)} for i in range(n)],
            "edges": [{"source": str(a), "target": str(b)} for a, b in edges.tolist()],
        }
    )
    engine = PhysicsEngine(store, settings)
    engine._compile()  # as the service does before its first step
    times = []
    t0 = time.perf_counter()
    while True:
        snap, _, elapsed = engine.step_blocking()
        times.append(elapsed)
        if snap.settled or len(times) >= 10_000:
            break
    wall = time.perf_counter() - t0
    a = np.asarray(times) * 1e3
    return {
        "steps": float(len(times)),
        "median_ms": float(np.median(a)),
        "p90_ms": float(np.percentile(a, 90)),
        "placement_s": engine.placement_seconds,
        "compute_s": engine.placement_seconds + float(a.sum()) / 1e3,
        "wall_s": wall,
    }


def per_iteration(run: Callable[[int], object], iterations: int) -> float:
    t0 = time.perf_counter()
    run(iterations)
    return (time.perf_counter() - t0) / iterations


def networkx_peer(n: int, edges: npt.NDArray[np.int64]) -> Callable[[int], object]:
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from(edges.tolist())
    return lambda k: nx.spring_layout(g, dim=3, iterations=k, seed=1, threshold=0.0)


def igraph_peer(n: int, edges: npt.NDArray[np.int64]) -> Callable[[int], object]:
    import igraph

    g = igraph.Graph(n=n, edges=edges.tolist())
    return lambda k: g.layout_fruchterman_reingold_3d(niter=k)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    peers = {"networkx": networkx_peer, "igraph": igraph_peer}
    # growth of one iteration's cost with n (networkx's FR is all-pairs, igraph's uses a grid),
    # used to predict the next size and skip it before it eats minutes
    exponent = {"networkx": 2.0, "igraph": 1.2}
    last: dict[str, tuple[int, float]] = {}
    rows = []
    memory = ""
    graphs = {n: ba_edges(n) for n in sizes}
    mine_ms: dict[int, float] = {}
    for n in sizes:  # ours first, so max-RSS growth is not hidden by a peer's earlier peak
        steps = 50 if n <= 10_000 else 15
        gc.collect()
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        times = ours(n, graphs[n], steps)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        mine_ms[n] = statistics.median(times) * 1e3
        if n == max(sizes):
            memory = (
                f"peak memory of our step at {n} nodes: tracemalloc peak {peak / 2**20:.1f} MiB, "
                f"max RSS growth {(rss1 - rss0) / 1024:.1f} MiB, max RSS {rss1 / 1024:.0f} MiB"
            )
    for n in sizes:
        edges = graphs[n]
        mine = mine_ms[n]
        row = [f"{n:>7}", f"{mine:9.2f}"]
        for name, make in peers.items():
            if name in last:
                n0, t0 = last[name]
                predicted = t0 * (n / n0) ** exponent[name]
                if predicted * 5 > PEER_BUDGET_S:  # 1 probe + 3 timed iterations at least
                    row.append(f"{f'skipped (~{predicted:.0f} s/it)':>22}")
                    continue
            run = make(n, edges)
            first = per_iteration(run, 1)  # includes set-up; an upper bound per iteration
            k = max(1, min(50, int(PEER_BUDGET_S / 4 / max(first, 1e-6))))
            ms = statistics.median(per_iteration(run, k) for _ in range(3)) * 1e3
            last[name] = (n, ms / 1e3)
            row.append(f"{ms:10.2f} ({ms / mine:7.1f}x)")
        rows.append(row)
        print(f"done {n}", file=sys.stderr, flush=True)
    print("median ms per step (ratio = peer / ours; higher means ours is faster)")
    print(f"{'nodes':>7} {'ours':>9} {'networkx':>22} {'igraph':>22}")
    for row in rows:
        print(" ".join(row))
    print(memory)
    print(
        f"peers: networkx.spring_layout(dim=3), igraph layout_fruchterman_reingold_3d; "
        f"a peer is skipped where its run would take more than {PEER_BUDGET_S:.0f} s"
    )
    print(
        "\nfrom import to rest through PhysicsEngine.step_blocking() with settings.toml "
        "(what the service runs); baseline: the synthetic median above"
    )
    print(
        f"{'nodes':>7} {'steps':>6} {'median ms':>10} {'p90 ms':>8} {'vs synthetic':>13} "
        f"{'placement s':>12} {'compute s':>10}"
    )
    for n in sizes:
        r = real_run(n, graphs[n])
        print(
            f"{n:>7} {r['steps']:>6.0f} {r['median_ms']:>10.2f} {r['p90_ms']:>8.2f} "
            f"{r['median_ms'] / mine_ms[n]:>12.2f}x {r['placement_s']:>12.2f} "
            f"{r['compute_s']:>10.1f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
