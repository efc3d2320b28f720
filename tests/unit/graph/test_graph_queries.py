"""The store's read-only queries behind search and neighbourhoods: edges_from, neighbourhood."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from visionflow.errors import GraphError
from visionflow.graph import store as store_module
from visionflow.graph.store import GraphStore, NodeKind


def _graph(edges: list[tuple[str, str]], extra: tuple[str, ...] = ()) -> GraphStore:
    names = sorted({n for e in edges for n in e} | set(extra))
    store = GraphStore()
    store.import_document(
        {
            "nodes": [{"id": n} for n in names],
            "edges": [{"source": s, "target": t, "weight": 2.0} for s, t in edges],
        }
    )
    return store


def _raw(store: GraphStore, name: str) -> int:
    node = store.node_by_key(NodeKind.KNOWLEDGE, name)
    assert node is not None
    return node.id


def _names(store: GraphStore, flagged: list[tuple[int, int, float]]) -> set[tuple[str, str]]:
    out = set()
    for s, t, _w in flagged:
        source, target = store.node(s), store.node(t)
        assert source is not None and target is not None
        assert source.flagged_id == s and target.flagged_id == t  # wire ids
        out.add((source.key.external_id, target.key.external_id))
    return out


def test_edges_from_keeps_edges_into_the_set_each_once() -> None:
    store = _graph([("a", "b"), ("b", "a"), ("b", "c"), ("c", "d"), ("a", "a")])
    a, b, c = (_raw(store, x) for x in "abc")
    edges, cut = store.edges_from([a, b], {a, b, c}, 100)
    assert not cut
    assert _names(store, edges) == {("a", "b"), ("b", "a"), ("b", "c"), ("a", "a")}
    assert len(edges) == 4 and all(w == 2.0 for _s, _t, w in edges)
    # only from the sources given: c -> d is not asked for, d is not in the set anyway
    edges, _ = store.edges_from([c], {a, b, c}, 100)
    assert edges == []
    edges, cut = store.edges_from([a, b], {a, b, c}, 3)
    assert len(edges) == 3 and cut


def test_edges_from_a_hub_reads_the_smaller_side_and_skips_gone_nodes() -> None:
    spokes = [("hub", f"s{i}") for i in range(50)]
    store = _graph(spokes)
    hub = _raw(store, "hub")
    few = {hub, _raw(store, "s3"), _raw(store, "s7")}
    edges, _ = store.edges_from([hub, 10**6], few, 100)  # an unknown source is skipped
    assert _names(store, edges) == {("hub", "s3"), ("hub", "s7")}
    everyone = {_raw(store, f"s{i}") for i in range(50)} | {hub}
    edges, _ = store.edges_from([_raw(store, "s3")], everyone, 100)
    assert edges == []  # the edge is hub -> s3: found from the hub's side only


class CountingLock:
    """The store's lock, counting its holds; ``then`` runs (lock held) at the start of one."""

    def __init__(self, store: GraphStore, then: dict[int, Callable[[], None]]) -> None:
        self.store, self.lock, self.then, self.holds = store, store.lock, then, 0

    def __enter__(self) -> None:
        self.lock.acquire()
        self.holds += 1
        action = self.then.get(self.holds)
        if action is not None:
            action()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


@pytest.fixture
def short_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    """One source, or one batch of 8 of a hub's neighbours, per hold of the lock."""
    monkeypatch.setattr(store_module, "QUERY_HOLD_S", 0.0)
    monkeypatch.setattr(store_module, "QUERY_BATCH", 8)


@pytest.mark.usefixtures("short_holds")
def test_edges_from_takes_many_short_holds_and_splits_a_hub() -> None:
    store = _graph(
        [(f"n{i}", f"n{i + 1}") for i in range(40)] + [("n0", f"s{i}") for i in range(60)]
    )
    counting = CountingLock(store, {})
    store.lock = counting  # type: ignore[assignment]
    raws = [_raw(store, f"n{i}") for i in range(41)]
    edges, cut = store.edges_from(raws, set(raws), 1000)
    assert len(edges) == 40 and not cut
    # one per source, n0's among them: the smaller side, these 41 nodes, 8 at a time
    assert counting.holds == 40 + 6
    hub = _raw(store, "n0")
    spokes = {_raw(store, f"s{i}") for i in range(60)}
    counting.holds = 0
    edges, cut = store.edges_from([hub], spokes | {hub}, 1000)
    assert len(edges) == 60 and not cut
    assert counting.holds == 8  # 60 neighbours (61 with n1), 8 at a time


@pytest.mark.usefixtures("short_holds")
def test_edges_from_leaves_out_a_node_removed_between_holds() -> None:
    store = _graph([("a", "b"), ("b", "c"), ("c", "d")])
    a, b, c, d = (_raw(store, x) for x in "abcd")
    store.lock = CountingLock(store, {2: lambda: store.remove_node(d)})  # type: ignore[assignment]
    edges, cut = store.edges_from([a, b, c], {a, b, c, d}, 100)
    assert _names(store, edges) == {("a", "b"), ("b", "c")} and not cut


def test_neighbourhood_rings_in_id_order_with_a_cap() -> None:
    #   a - b - d - e     a - c,  f alone;  d <- x (direction does not matter)
    store = _graph([("a", "b"), ("a", "c"), ("b", "d"), ("d", "e"), ("x", "d")], extra=("f",))
    raw = {n: _raw(store, n) for n in "abcdefx"}
    ids, cut = store.neighbourhood(raw["a"], 1, 100)
    assert ids == [raw["a"], *sorted([raw["b"], raw["c"]])] and not cut
    ids, cut = store.neighbourhood(raw["a"], 2, 100)
    assert ids == [raw["a"], *sorted([raw["b"], raw["c"]]), raw["d"]] and not cut
    ids, cut = store.neighbourhood(raw["e"], 2, 100)
    assert ids == [raw["e"], raw["d"], *sorted([raw["b"], raw["x"]])]
    assert store.neighbourhood(raw["f"], 2, 100) == ([raw["f"]], False)
    # capped: one hop comes first, then the lowest ids of the ring that overflows
    ids, cut = store.neighbourhood(raw["e"], 2, 3)
    assert ids == [raw["e"], raw["d"], min(raw["b"], raw["x"])] and cut
    ids, cut = store.neighbourhood(raw["e"], 2, 2)
    assert ids == [raw["e"], raw["d"]] and cut
    assert store.neighbourhood(raw["a"], 2, 1) == ([raw["a"]], True)


def test_neighbourhood_of_a_hub_with_a_self_loop_and_a_flagged_id() -> None:
    store = _graph([("hub", f"s{i:02}") for i in range(30)] + [("hub", "hub")])
    hub = store.node_by_key(NodeKind.KNOWLEDGE, "hub")
    assert hub is not None
    ids, cut = store.neighbourhood(hub.flagged_id, 1, 11)
    assert ids[0] == hub.id and hub.id not in ids[1:] and len(ids) == 11 and cut
    spokes = sorted(_raw(store, f"s{i:02}") for i in range(30))
    assert ids[1:] == spokes[:10]


def test_neighbourhood_of_an_unknown_node() -> None:
    store = _graph([("a", "b")])
    with pytest.raises(GraphError) as info:
        store.neighbourhood(10**6, 1, 10)
    assert info.value.code == "unknown_node" and info.value.path == "id"
