"""Layout quality benchmark: how good our layout gets, and how many steps it takes, vs peers.

Not a timed test: a script that prints tables (markdown-friendly). For each graph it builds a
real ``GraphStore`` as the service does (one imported document, so nodes are seeded as the
service seeds them), steps a ``PhysicsEngine`` with the settings that ship in settings.toml
(``--param`` overrides them) from scratch with ``step_blocking()``, measures the layout every
``--every`` steps, and reports:

- the quality measures (benchmarks/_quality.py) at the start, every ``--every`` steps and at the
  end (when the engine's ``settled`` flag is first set, or at ``--max-steps``);
- the first step (and the seconds that is at ``physics.rate_hz``) at which each measure reached
  95% of its final value (for the edge length ratio, lower is better: 1/ratio is used);
- the settle step, and the median step time over the run;

and, in the same run on the same graphs, the same measures for peers, with their wall time:
igraph's ``layout_fruchterman_reingold_3d`` and ``layout_drl(dim=3)``, ForceAtlas2 from PyPI
(``fa2-modified``, 2-D only) and graph-tool's ``sfdp_layout`` (2-D only; graph-tool is not on
PyPI: it runs in a child process of ``--graph-tool-python``, e.g. Debian's python3-graph-tool
under /usr/bin/python3). A peer that is missing is listed as such; a peer is skipped on a graph
of 50k nodes or more where its predicted time exceeds ``--peer-budget``. 2-D peers are measured
in 2-D: their figures are not strictly comparable with the 3-D ones (less room, other
random-pair distances).

Measures (lower/higher is better): ``edge`` = mean edge length / mean random-pair distance
(lower); ``prec`` = share of each node's min(degree, 10) nearest layout points within two hops
in the graph (higher; ``chance`` is what a random placement scores); ``comm`` (block model) =
share of each node's 10 nearest points in its own community (higher; chance 0.1); ``rho``
(grid) = Spearman correlation of graph and layout distance over sampled pairs (higher).

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/quality.py                         # all graphs (long)
    .venv/bin/python benchmarks/quality.py --graphs ba1k,grid --peers fr,drl
    .venv/bin/python benchmarks/quality.py --graphs ba10k --peers none \\
        --param knowledge.repel_k=50 --param settle_energy=0.01   # try a parameter set
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _quality as q  # noqa: E402
from _graph import ba_edges  # noqa: E402

from visionflow import settings as s  # noqa: E402
from visionflow.graph.store import GraphStore  # noqa: E402
from visionflow.physics import multilevel  # noqa: E402
from visionflow.physics.engine import PhysicsEngine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
LARGE = 50_000  # graphs from this size: sampled nodes, fewer steps (--max-steps-large)
SAMPLE = 5_000  # nodes sampled for the neighbourhood measures on large graphs


# --------------------------------------------------------------------------- graphs


@dataclass
class Graph:
    name: str
    n: int
    edges: I64
    labels: I64 | None = None  # communities (block model)
    spearman: bool = False  # grid: also the distance correlation
    lattice: int = 0  # grid: its side, for the shape line (_quality.lattice_shape)
    indptr: I64 = field(init=False)
    indices: I64 = field(init=False)
    two_hop: q.TwoHop = field(init=False)
    pairs: q.PairSample | None = field(init=False, default=None)
    nodes: I64 = field(init=False)

    def __post_init__(self) -> None:
        self.indptr, self.indices = q.csr_adjacency(self.n, self.edges)
        self.nodes = q.sample_nodes(self.n, SAMPLE if self.n >= LARGE else None, seed=7)
        self.two_hop = q.TwoHop.build(self.indptr, self.indices, self.nodes)
        if self.spearman:
            self.pairs = q.PairSample.build(self.indptr, self.indices, sources=200, per_source=50)

    def measures(self) -> list[str]:
        names = ["edge", "prec"]
        if self.labels is not None:
            names.append("comm")
        if self.spearman:
            names.append("rho")
        return names

    def measure(self, pos: npt.ArrayLike) -> dict[str, float]:
        p = np.asarray(pos, dtype=np.float64)
        out = {
            "edge": q.edge_length_ratio(p, self.edges),
            "prec": q.neighbourhood_precision(p, self.two_hop),
        }
        if self.labels is not None:
            out["comm"] = q.community_share(p, self.labels, self.nodes)
        if self.pairs is not None:
            out["rho"] = q.distance_spearman(p, self.pairs)
        return out

    def shape(self, pos: npt.ArrayLike) -> dict[str, float]:
        """The grid's aspect and evenness (empty for other graphs): why its measures differ,
        with ``rho_square``, the Spearman of the layout made as wide as long (``q.squared``)."""
        if not self.lattice or self.pairs is None:
            return {}
        shape = q.lattice_shape(pos, self.lattice)
        shape["rho_square"] = q.distance_spearman(q.squared(pos, self.lattice), self.pairs)
        return shape


def make_graph(name: str, seed: int) -> Graph:
    import igraph

    if name.startswith("ba"):
        n = int(name[2:].replace("k", "000"))
        return Graph(f"BA {name[2:]}", n, ba_edges(n, 2, seed))
    if name == "sbm":
        blocks, size = 10, 1000
        n = blocks * size
        p_in = 8.0 / (size - 1)  # ~8 neighbours inside the community
        p_out = 1.0 / (n - size)  # ~1 outside
        pref = [[p_in if i == j else p_out for j in range(blocks)] for i in range(blocks)]
        random.seed(seed)
        g = igraph.Graph.SBM(pref, [size] * blocks)  # igraph >= 0.11: no n argument
        edges = np.asarray(g.get_edgelist(), dtype=np.int64).reshape(-1, 2)
        return Graph("SBM 10x1000", n, edges, labels=np.repeat(np.arange(blocks), size))
    if name == "grid":
        g = igraph.Graph.Lattice([100, 100], circular=False)
        edges = np.asarray(g.get_edgelist(), dtype=np.int64).reshape(-1, 2)
        return Graph("grid 100x100", 10_000, edges, spearman=True, lattice=100)
    raise SystemExit(f"unknown graph {name!r} (ba<N>[k], sbm, grid)")


def store_of(graph: Graph) -> GraphStore:
    """A GraphStore holding the graph as knowledge nodes, imported as one document."""
    store = GraphStore()
    store.import_document(
        {
            "nodes": [{"id": str(i)} for i in range(graph.n)],
            "edges": [{"source": str(a), "target": str(b)} for a, b in graph.edges.tolist()],
        }
    )
    return store


# --------------------------------------------------------------------------- our engine


def physics_settings(params: list[str]) -> s.PhysicsSettings:
    """settings.toml as shipped (no environment), with ``key=value`` overrides under
    ``physics`` (``knowledge.repel_k=5``, ``settle_energy=0.01``); values are TOML."""
    patch: dict[str, Any] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--param {item!r}: expected key=value")
        node = patch
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = tomllib.loads(f"v = {value.strip()}")["v"]
    loaded = s.load(ROOT / "settings.toml", environ={}, overrides={"physics": patch})
    return loaded.settings.physics


def _store_index(store: GraphStore, n: int) -> I64:
    """Row of each graph node (imported as ids "0".."n-1") in the store's dense arrays."""
    state = store.sync()
    raw = np.empty(n, np.uint32)
    for raw_id, key in store.keys().items():
        raw[int(key.external_id)] = raw_id
    return state.index_of(raw)


@dataclass
class Run:
    trace: list[tuple[int, dict[str, float]]]
    settled_at: int | None
    steps: int
    step_ms: float
    final: dict[str, float]
    wall_s: float
    placement_s: float  # the engine's multilevel placement before the first step (0: none)
    compute_s: float  # placement + every step: the compute from import to rest
    stability: dict[str, float] = field(default_factory=dict)
    shape: dict[str, float] = field(default_factory=dict)  # Graph.shape of the final layout


def run_ours(graph: Graph, settings: s.PhysicsSettings, max_steps: int, every: int) -> Run:
    store = store_of(graph)
    rows = _store_index(store, graph.n)
    engine = PhysicsEngine(store, settings)
    engine._compile()  # as the service does before its first step: both repulsion paths
    trace = [(0, graph.measure(store.sync().pos[rows]))]
    times: list[float] = []
    settled_at = None
    step = 0
    t0 = time.perf_counter()
    while step < max_steps:
        snap, _, elapsed = engine.step_blocking()
        step += 1
        times.append(elapsed)
        if snap.settled:
            settled_at = step
        # step 1 too: the first step starts from the engine's placement of a large import
        if step % every == 0 or step == 1 or settled_at is not None or step == max_steps:
            trace.append((step, graph.measure(snap.nodes.positions[rows])))
        if settled_at is not None:
            break
    wall = time.perf_counter() - t0
    placed = engine.placement_seconds
    shape = graph.shape(snap.nodes.positions[rows])
    stability = add_a_few(graph, store, engine, rows) if settled_at is not None else {}
    return Run(
        trace,
        settled_at,
        step,
        statistics.median(times) * 1e3,
        trace[-1][1],
        wall,
        placed,
        placed + sum(times),
        stability,
        shape,
    )


ADDED = 10  # nodes added to a settled layout by the stability measure


def add_a_few(
    graph: Graph, store: GraphStore, engine: PhysicsEngine, rows: I64
) -> dict[str, float]:
    """Stability: add ``ADDED`` nodes, each linked to two random nodes of the settled layout,
    step to rest again, and say how far the nodes that were there moved (in mean edge lengths)."""
    before = store.sync().pos[rows].copy()
    edge = float(
        np.linalg.norm(before[graph.edges[:, 0]] - before[graph.edges[:, 1]], axis=1).mean()
    )
    rng = np.random.default_rng(11)
    anchors = rng.choice(graph.n, size=(ADDED, 2), replace=graph.n < 2 * ADDED)
    store.import_document(
        {
            "nodes": [{"id": f"new-{k}"} for k in range(ADDED)],
            "edges": [
                {"source": f"new-{k}", "target": str(int(a))}
                for k in range(ADDED)
                for a in anchors[k]
            ],
        }
    )
    steps = 0
    while not engine.step_blocking()[0].settled and steps < 5000:
        steps += 1
    moved = np.linalg.norm(store.sync().pos[rows] - before, axis=1) / edge
    return {
        "steps": float(steps + 1),
        "moved_share": float(np.mean(moved > 0.0)),
        "median_moved": float(np.median(moved[moved > 0.0])) if np.any(moved > 0.0) else 0.0,
        "max_moved": float(moved.max()),
    }


def reached(trace: list[tuple[int, dict[str, float]]], key: str, final: float) -> int | None:
    """First step at which ``key`` reached 95% of ``final`` (1/x for the edge length ratio)."""
    for step, values in trace:
        v = values[key]
        if key == "edge" and v > 0 and final > 0 and (1 / v) >= 0.95 * (1 / final):
            return step
        if key != "edge" and v >= 0.95 * final:
            return step
    return None


# --------------------------------------------------------------------------- peers


def _igraph(graph: Graph) -> Any:
    import igraph

    return igraph.Graph(n=graph.n, edges=graph.edges.tolist())


def peer_fr(graph: Graph, seed: int) -> F64:
    g = _igraph(graph)
    random.seed(seed)
    return np.asarray(g.layout_fruchterman_reingold_3d().coords, dtype=np.float64)


def peer_drl(graph: Graph, seed: int) -> F64:
    g = _igraph(graph)
    random.seed(seed)
    return np.asarray(g.layout_drl(dim=3).coords, dtype=np.float64)


FA2_ITERATIONS = 1000


def peer_fa2(graph: Graph, seed: int) -> F64:
    import scipy.sparse as sp
    from fa2_modified import ForceAtlas2

    a = sp.csr_matrix(
        (np.ones(len(graph.indices)), graph.indices, graph.indptr), shape=(graph.n, graph.n)
    )
    random.seed(seed)  # fa2 draws its random start from Python's random
    fa2 = ForceAtlas2(verbose=False)  # Gephi's defaults: Barnes-Hut, scaling 2, gravity 1
    return np.asarray(fa2.forceatlas2(a, iterations=FA2_ITERATIONS), dtype=np.float64)


SFDP_SCRIPT = """
import sys, warnings
warnings.simplefilter("ignore")
import numpy as np
import graph_tool, graph_tool.draw
edges = np.load(sys.argv[1]); n = int(sys.argv[2])
g = graph_tool.Graph(directed=False); g.add_vertex(n); g.add_edge_list(edges)
graph_tool.seed_rng(int(sys.argv[4])); np.random.seed(int(sys.argv[4]))
pos = graph_tool.draw.sfdp_layout(g)
np.save(sys.argv[3], pos.get_2d_array([0, 1]).T)
"""


def graph_tool_python(explicit: str | None) -> str | None:
    """An interpreter that can import graph_tool (it is not on PyPI), or None."""
    for cand in [explicit] if explicit else ["/usr/bin/python3", "python3"]:
        try:
            ok = subprocess.run(
                [cand, "-W", "ignore", "-c", "import graph_tool.draw"],
                capture_output=True,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if ok.returncode == 0:
            return cand
    return None


def make_sfdp(python: str) -> Callable[[Graph, int], F64]:
    def peer_sfdp(graph: Graph, seed: int) -> F64:
        with tempfile.TemporaryDirectory() as tmp:
            e, out = os.path.join(tmp, "e.npy"), os.path.join(tmp, "pos.npy")
            np.save(e, graph.edges)
            subprocess.run(
                [python, "-c", SFDP_SCRIPT, e, str(graph.n), out, str(seed)],
                check=True,
                capture_output=True,
            )
            return np.asarray(np.load(out), dtype=np.float64)

    return peer_sfdp


@dataclass
class Peer:
    name: str
    label: str
    dim: int
    run: Callable[[Graph, int], F64] | None
    missing: str = ""
    exponent: float = 1.2  # growth of its run time with n, to predict and skip
    last: tuple[int, float] | None = None


def peers_available(wanted: list[str], gt_python: str | None) -> list[Peer]:
    peers = []
    for key in wanted:
        if key == "fr":
            peers.append(Peer("fr", "igraph FR 3-D (500 it)", 3, peer_fr, exponent=1.3))
        elif key == "drl":
            peers.append(Peer("drl", "igraph DrL 3-D", 3, peer_drl, exponent=1.1))
        elif key == "fa2":
            try:
                import fa2_modified  # noqa: F401

                peers.append(
                    Peer("fa2", f"ForceAtlas2 2-D ({FA2_ITERATIONS} it)", 2, peer_fa2, 1.2)
                )
            except ImportError as exc:
                peers.append(Peer("fa2", "ForceAtlas2", 2, None, f"not installed ({exc})"))
        elif key == "sfdp":
            python = graph_tool_python(gt_python)
            if python is None:
                peers.append(
                    Peer("sfdp", "graph-tool sfdp 2-D", 2, None, "graph_tool not importable")
                )
            else:
                peers.append(Peer("sfdp", "graph-tool sfdp 2-D", 2, make_sfdp(python), 1.1))
        elif key != "none":
            raise SystemExit(f"unknown peer {key!r} (fr, drl, fa2, sfdp, none)")
    return peers


# --------------------------------------------------------------------------- report


def fmt(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if 0 < abs(v) < 0.01:  # chance-level precision on large graphs
        return f"{v:.{digits + 1}f}"
    return f"{v:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--graphs", default="ba1k,ba10k,ba100k,sbm,grid", help="comma-separated")
    ap.add_argument("--peers", default="fr,drl,fa2,sfdp", help="fr,drl,fa2,sfdp or none")
    ap.add_argument("--max-steps", type=int, default=6000, help="cap below 50k nodes")
    ap.add_argument("--max-steps-large", type=int, default=2000, help="cap from 50k nodes")
    ap.add_argument("--every", type=int, default=50, help="measure every N steps")
    ap.add_argument("--print-every", type=int, default=50, help="trajectory rows every N steps")
    ap.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override physics settings, e.g. knowledge.repel_k=5 or settle_energy=0.01",
    )
    ap.add_argument(
        "--peer-budget", type=float, default=120.0, help="seconds per peer run from 50k nodes"
    )
    ap.add_argument(
        "--no-multilevel",
        action="store_true",
        help="no multilevel placement of the import (to measure what it brings)",
    )
    ap.add_argument("--graph-tool-python", default=None, help="interpreter with graph_tool")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the results to this file")
    ap.add_argument("--report", default=None, help="only print the summary of a --json file")
    args = ap.parse_args(argv)
    if args.report:
        print_all(json.loads(Path(args.report).read_text()), None)
        return 0

    settings = physics_settings(args.param)
    if args.no_multilevel:
        multilevel.MIN_NODES = 1 << 62
    graphs = [g for g in args.graphs.split(",") if g]
    peers = peers_available([p for p in args.peers.split(",") if p], args.graph_tool_python)
    k = settings.knowledge
    load = os.getloadavg()
    print(
        f"layout quality; {os.cpu_count()} CPUs, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"physics.knowledge: spring_k {k.spring_k}, rest_length {k.rest_length}, "
        f"repel_k {k.repel_k}, center_gravity_k {k.center_gravity_k}, damping {k.damping}, "
        f"dt {k.dt}, max_velocity {k.max_velocity}, warmup {k.warmup_iterations}; "
        f"settle_energy {settings.settle_energy}, rate_hz {settings.rate_hz}"
        + (f"; overrides: {' '.join(args.param)}" if args.param else " (as shipped)")
        + ("; NO multilevel placement" if args.no_multilevel else "")
    )
    for peer in peers:
        if peer.run is None:
            print(f"peer {peer.name}: {peer.missing}")
    results: list[dict[str, Any]] = []
    for name in graphs:
        t0 = time.perf_counter()
        graph = make_graph(name, args.seed)
        build_s = time.perf_counter() - t0
        cap = args.max_steps if graph.n < LARGE else args.max_steps_large
        print(
            f"\n### {graph.name}: {graph.n} nodes, {len(graph.edges)} edges; "
            f"prec chance {graph.two_hop.chance():.4f} over {len(graph.two_hop.nodes)} nodes"
            f"{' (sampled)' if graph.n >= LARGE else ''}; measures built in {build_s:.1f} s",
            flush=True,
        )
        run = run_ours(graph, settings, cap, args.every)
        keys = graph.measures()
        print(f"\nour engine, every {args.print_every} steps:\n")
        print("| step | s @ rate | " + " | ".join(keys) + " |")
        print("|---:|---:|" + "---:|" * len(keys))
        for step, values in run.trace:
            if step % args.print_every == 0 or step == run.steps:
                cells = " | ".join(fmt(values[key]) for key in keys)
                print(f"| {step} | {step / settings.rate_hz:.1f} | {cells} |")
        settled = (
            f"settled at step {run.settled_at} ({run.settled_at / settings.rate_hz:.0f} s)"
            if run.settled_at is not None
            else f"NOT settled at the cap ({cap} steps)"
        )
        hits = {key: reached(run.trace, key, run.final[key]) for key in keys}
        if run.stability:
            st = run.stability
            print(
                f"\nstability: {ADDED} nodes added to the settled layout, at rest again after "
                f"{st['steps']:.0f} steps; {st['moved_share']:.1%} of the old nodes moved, by a "
                f"median of {st['median_moved']:.3f} and at most {st['max_moved']:.2f} mean "
                "edge lengths"
            )
        print(
            f"\nours: {settled}; median step {run.step_ms:.2f} ms; multilevel placement "
            f"{run.placement_s:.2f} s; compute from import to rest {run.compute_s:.1f} s; "
            f"stepped in {run.wall_s:.0f} s (measuring included); 95% of final at step: "
            + ", ".join(
                f"{key} {hits[key]} ({hits[key] / settings.rate_hz:.0f} s)"
                if hits[key] is not None
                else f"{key} -"
                for key in keys
            ),
            flush=True,
        )
        row: dict[str, Any] = {
            "graph": graph.name,
            "n": graph.n,
            "edges": len(graph.edges),
            "chance": graph.two_hop.chance(),
            "ours": {
                "start": run.trace[0][1],
                "first": run.trace[1][1] if len(run.trace) > 1 else None,
                "final": run.final,
                "settled_at": run.settled_at,
                "steps": run.steps,
                "step_ms": run.step_ms,
                "placement_s": run.placement_s,
                "compute_s": run.compute_s,
                "stability": run.stability,
                "shape": run.shape,
                "reach95": hits,
            },
            "peers": {},
        }
        for peer in peers:
            if peer.run is None:
                row["peers"][peer.label] = {"skipped": peer.missing}
                continue
            if peer.last is not None and graph.n >= LARGE:  # below: every peer runs
                n0, t_prev = peer.last
                predicted = t_prev * (graph.n / n0) ** peer.exponent
                if predicted > args.peer_budget:
                    row["peers"][peer.label] = {"skipped": f"~{predicted:.0f} s predicted"}
                    continue
            t0 = time.perf_counter()
            try:
                pos = peer.run(graph, args.seed)
            except Exception as exc:
                row["peers"][peer.label] = {"skipped": f"failed: {exc!r}"[:80]}
                continue
            wall = time.perf_counter() - t0
            if peer.last is None or graph.n >= peer.last[0]:
                peer.last = (graph.n, wall)
            row["peers"][peer.label] = {
                "final": graph.measure(pos),
                "wall_s": wall,
                "shape": graph.shape(pos),
            }
            print(f"{peer.label}: {wall:.1f} s", flush=True)
        results.append(row)
        print_summary([row], keys)
        print_shapes(row)
    print_all(results, settings.rate_hz)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def print_all(results: list[dict[str, Any]], rate_hz: float | None) -> None:
    print("\n## summary\n")
    for keyset in sorted({tuple(make_keys(r)) for r in results}, key=len):
        print_summary([r for r in results if tuple(make_keys(r)) == keyset], list(keyset))
    for row in results:
        print_shapes(row)
    rate = f"{rate_hz:g} Hz" if rate_hz else "physics.rate_hz"
    print(
        "\nedge: mean edge length / mean random-pair distance (lower is better); prec: share of "
        "each node's min(deg, 10) nearest layout points within 2 hops (higher); comm: share of "
        "10 nearest in own community (higher); rho: Spearman graph vs layout distance "
        "(higher). ours: at rest (or at the step cap, '>N'); 95% at: first step at which the "
        "last measure named reached 95% of its final value (0: the seeding already had it); "
        f"steps are at {rate}. Peers: wall time of one run on this machine; 2-D peers measured "
        "in 2-D."
    )


def print_shapes(row: dict[str, Any]) -> None:
    """The grid's shape per layout (``_quality.lattice_shape``); nothing for other graphs."""
    layouts = [("ours", row["ours"]), *row["peers"].items()]
    lines = [
        f"- {label}: aspect {sh['aspect']:.3f}, centre edges {sh['centre']:.3f}, "
        f"rim edges {sh['rim']:.3f}, outer rows {sh.get('outer', math.nan):.3f} of the mean; "
        f"rho if as wide as long {sh.get('rho_square', math.nan):.5f}"
        for label, data in layouts
        if (sh := data.get("shape"))
    ]
    if lines:
        print(f"\n{row['graph']} shape (a perfect lattice: 1 / 1 / 1 / 1):\n" + "\n".join(lines))


def make_keys(row: dict[str, Any]) -> list[str]:
    return list(row["ours"]["final"].keys())


def main_key(keys: list[str]) -> str:
    return "rho" if "rho" in keys else "comm" if "comm" in keys else "prec"


def print_summary(rows: list[dict[str, Any]], keys: list[str]) -> None:
    head = "| graph | layout | " + " | ".join(keys) + " | steps to rest | 95% at | time |"
    print("\n" + head)
    print("|---|---|" + "---:|" * (len(keys) + 3))
    key = main_key(keys)
    for row in rows:
        ours = row["ours"]
        start = " | ".join(fmt(ours["start"][k]) for k in keys)
        chance = " | ".join(
            "~1"
            if k == "edge"
            else fmt(row["chance"])
            if k == "prec"
            else "0.1"
            if k == "comm"
            else "0"
            for k in keys
        )
        print(f"| {row['graph']} | random placement (chance) | {chance} | | | |")
        print(f"| {row['graph']} | ours at step 0 (store's seeding) | {start} | | | |")
        first = ours.get("first")
        if first is not None:
            cells = " | ".join(fmt(first[k]) for k in keys)
            print(f"| {row['graph']} | ours after step 1 (placement + 1 step) | {cells} | | | |")
        final = " | ".join(fmt(ours["final"][k]) for k in keys)
        rest = str(ours["settled_at"]) if ours["settled_at"] is not None else f">{ours['steps']}"
        hit = ours["reach95"][key]
        compute = (
            f", {ours['compute_s']:.1f} s compute (placement {ours['placement_s']:.2f} s)"
            if "compute_s" in ours
            else ""
        )
        print(
            f"| {row['graph']} | ours | {final} | {rest} | "
            f"{hit if hit is not None else '-'} ({key}) | {ours['step_ms']:.2f} ms/step{compute} |"
        )
        for label, peer in row["peers"].items():
            if "skipped" in peer:
                cells = " | ".join("-" for _ in keys)
                print(f"| {row['graph']} | {label} | {cells} | | | skipped: {peer['skipped']} |")
            else:
                cells = " | ".join(fmt(peer["final"][k]) for k in keys)
                print(f"| {row['graph']} | {label} | {cells} | | | {peer['wall_s']:.1f} s |")


if __name__ == "__main__":
    sys.exit(main())
