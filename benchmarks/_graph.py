"""Shared by the benchmarks: a Barabasi-Albert knowledge graph in a real GraphStore."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from visionflow.graph.store import GraphStore


def ba_edges(n: int, m: int = 2, seed: int = 1) -> npt.NDArray[np.int64]:
    """Edges of a Barabasi-Albert graph: ``m`` edges per new node, average degree ``2 m``."""
    import random

    import igraph  # the project's ``bench`` extra

    random.seed(seed)  # igraph's default RNG is Python's ``random``
    graph = igraph.Graph.Barabasi(n, m)
    return np.asarray(graph.get_edgelist(), dtype=np.int64).reshape(-1, 2)


def ba_store(n: int, m: int = 2, seed: int = 1) -> GraphStore:
    """A GraphStore holding a BA graph of ``n`` knowledge nodes, imported as one document."""
    edges = ba_edges(n, m, seed)
    store = GraphStore()
    store.import_document(
        {
            "nodes": [{"id": str(i)} for i in range(n)],
            "edges": [{"source": str(s), "target": str(t)} for s, t in edges.tolist()],
        }
    )
    return store
