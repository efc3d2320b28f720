"""Engine loop (anyio, both backends): snapshots, settling, pins, non-finite safety."""

from __future__ import annotations

import importlib.abc
import sys
import threading

import anyio
import numpy as np
import pytest
from loguru import logger

from visionflow.errors import StartupError
from visionflow.graph.store import GraphStore, NodeKind
from visionflow.metrics import Metrics
from visionflow.physics.engine import PhysicsEngine, choose_backend
from visionflow.settings import PhysicsParams, PhysicsSettings

DEFAULTS = PhysicsParams()
COOLING_STEPS = DEFAULTS.cooling_steps


def _store(n: int = 30) -> GraphStore:
    s = GraphStore()
    s.import_document(
        {
            "nodes": [{"id": str(i)} for i in range(n)],
            "edges": [{"source": str(i), "target": str(i + 1)} for i in range(n - 1)],
        }
    )
    s.upsert_node(NodeKind.AGENT, "agent")
    return s


def _settings(**kw: object) -> PhysicsSettings:
    base: dict[str, object] = {"backend": "cpu", "rate_hz": 240.0}
    base.update(kw)
    return PhysicsSettings(**base)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_snapshots_are_published_immutable_and_finite() -> None:
    store = _store()
    engine = PhysicsEngine(store, _settings())
    async with anyio.create_task_group() as tg:
        await tg.start(engine.run)
        snap = await engine.wait_snapshot()
        later = await engine.wait_snapshot(snap.sequence)
        assert later.sequence > snap.sequence
        nodes = later.nodes
        assert nodes.positions.dtype == np.float32 and nodes.positions.shape == (31, 3)
        assert not nodes.positions.flags.writeable and not nodes.ids.flags.writeable
        assert np.all(np.isfinite(nodes.positions)) and np.all(np.isfinite(nodes.velocities))
        assert {int(i) >> 30 for i in nodes.ids} == {1, 2}  # knowledge and agent flags
        assert not engine.compiling
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_settles_then_wakes_on_change_and_pins_hold() -> None:
    store = _store(10)
    engine = PhysicsEngine(store, _settings())
    async with anyio.create_task_group() as tg:
        await tg.start(engine.run)
        with anyio.fail_after(60):
            while not engine.settled:
                await engine.wait_snapshot(engine.tick)
        tick = engine.tick
        await anyio.sleep(0.05)
        assert engine.tick == tick  # no stepping while settled
        node = store.node_by_key(NodeKind.KNOWLEDGE, "3")
        assert node is not None
        engine.pin(node.flagged_id, (40.0, 0.0, 0.0))
        assert not engine.settled or engine.tick == tick  # the change is seen at the next tick
        snap = await engine.wait_snapshot(tick)
        for _ in range(5):
            snap = await engine.wait_snapshot(snap.sequence)
        i = int(np.flatnonzero(snap.nodes.ids == node.flagged_id)[0])
        assert snap.nodes.positions[i].tolist() == [40.0, 0.0, 0.0]
        assert snap.nodes.velocities[i].tolist() == [0.0, 0.0, 0.0]
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_nonfinite_positions_are_reset_and_counted() -> None:
    store = _store(10)
    engine = PhysicsEngine(store, _settings())
    engine.step_blocking()
    state = store.sync()
    state.pos[2] = np.nan  # corrupt the dense state directly
    snap, result, _ = engine.step_blocking()
    assert result.nonfinite_resets == 1
    assert np.all(np.isfinite(snap.nodes.positions))


def test_parameters_change_on_next_step() -> None:
    store = _store(10)
    engine = PhysicsEngine(store, _settings())
    engine.step_blocking()
    frozen = PhysicsParams(enabled=False)
    engine.set_settings(_settings(knowledge=frozen, agents=frozen))
    before = store.sync().pos.copy()
    engine.step_blocking()
    np.testing.assert_array_equal(store.sync().pos, before)


@pytest.mark.anyio
async def test_backend_log_line_says_why_the_cpu_is_used() -> None:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO")
    try:
        engine = PhysicsEngine(_store(5), _settings())
        async with anyio.create_task_group() as tg:
            await tg.start(engine.run)
            await engine.wait_snapshot()
            tg.cancel_scope.cancel()
    finally:
        logger.remove(sink)
    assert 'physics backend: cpu (physics.backend = "cpu")' in lines


def test_unknown_backend_name_is_a_startup_error() -> None:
    from visionflow.errors import StartupError
    from visionflow.physics.engine import resolve_backend

    with pytest.raises(StartupError):
        resolve_backend("quantum")


def _step_until_settled(engine: PhysicsEngine, limit: int) -> int:
    for k in range(1, limit + 1):
        snap, result, elapsed = engine.step_blocking()
        engine._publish(snap, result, elapsed)
        if snap.settled:
            return k
    raise AssertionError(f"not settled after {limit} steps")


def test_a_released_drag_springs_back_and_then_rests() -> None:
    # A free agent on a spring to a pinned one, among 300 knowledge nodes that do not move.
    # The release warms the node and its neighbourhood (store.DRAG_HEAT): it springs back and
    # the layout rests again within one cooling schedule.
    store = GraphStore()
    store.import_document({"nodes": [{"id": str(i)} for i in range(300)]})
    anchor = store.upsert_node(NodeKind.AGENT, "anchor")
    free = store.upsert_node(NodeKind.AGENT, "free")
    store.set_edge(free, anchor)
    still = PhysicsParams(enabled=False)
    engine = PhysicsEngine(store, _settings(knowledge=still))
    engine.pin(anchor)
    _step_until_settled(engine, 2 * COOLING_STEPS)
    state = store.sync()
    i, j = (int(x) for x in state.index_of([free, anchor]))
    rest_gap = float(np.linalg.norm(state.pos[i] - state.pos[j]))
    engine.pin(free, (state.pos[j] + [300.0, 0.0, 0.0]).tolist())
    engine.unpin(free)
    steps = _step_until_settled(engine, 2 * COOLING_STEPS)
    state = store.sync()
    gap = float(np.linalg.norm(state.pos[i] - state.pos[j]))
    assert steps <= COOLING_STEPS + 1
    assert gap < rest_gap + 5.0, (gap, rest_gap)  # back where it was, not left at 300


def test_a_new_node_moves_only_its_neighbourhood() -> None:
    # Stability: one agent joining a settled 400-node layout warms the nodes within two hops
    # of it; everything else stays exactly where it was.
    store = GraphStore()
    n = 400
    store.import_document(
        {
            "nodes": [{"id": str(i)} for i in range(n)],
            "edges": [{"source": str(i), "target": str((i * 7 + 1) % n)} for i in range(n)]
            + [{"source": str(i), "target": str(i + 1)} for i in range(n - 1)],
        }
    )
    engine = PhysicsEngine(store, _settings())
    _step_until_settled(engine, 2 * COOLING_STEPS)
    before = store.sync().pos.copy()
    hub = store.node_by_key(NodeKind.KNOWLEDGE, "5")
    assert hub is not None
    agent = store.upsert_node(NodeKind.AGENT, "new")
    store.set_edge(agent, hub.id)
    steps = _step_until_settled(engine, 2 * COOLING_STEPS)
    state = store.sync()
    old = state.index_of(store.sync().ids[state.ids != agent])
    moved = np.linalg.norm(state.pos[old] - before, axis=1)
    near = {hub.id}
    for _ in range(2):
        near |= {t for s, t in ((e.source, e.target) for e in store.edges()) if s in near}
        near |= {s for s, t in ((e.source, e.target) for e in store.edges()) if t in near}
    far = ~np.isin(state.ids[old], list(near))
    assert steps <= COOLING_STEPS + 1
    assert np.all(moved[far] == 0.0)
    assert moved.max() > 0.0  # its neighbours made room


def test_restored_positions_are_cold() -> None:
    # A saved layout comes back where it was: no warm-up, no motion, settled at once.
    store = _store(40)
    saved = {int(raw): (float(raw), 2.0 * raw, 0.0) for raw in store.sync().ids}
    store.set_positions(saved)
    engine = PhysicsEngine(store, _settings())
    snap, result, _ = engine.step_blocking()
    assert snap.settled and result.warm == 0
    state = store.sync()
    np.testing.assert_array_equal(state.pos, [saved[int(r)] for r in state.ids])


def test_new_parameters_warm_every_node() -> None:
    store = _store(20)
    engine = PhysicsEngine(store, _settings())
    _step_until_settled(engine, 2 * COOLING_STEPS)
    engine.set_settings(_settings(knowledge=PhysicsParams(rest_length=5.0)))
    snap, result, _ = engine.step_blocking()
    assert not snap.settled and result.warm == store.sync().n
    steps = _step_until_settled(engine, 2 * COOLING_STEPS)
    assert steps < COOLING_STEPS  # PARAMS_HEAT 0.5 is a shorter schedule than a new node's


def test_settle_energy_is_an_early_rest() -> None:
    store = _store(20)
    engine = PhysicsEngine(store, _settings(settle_energy=1e-3))
    steps = _step_until_settled(engine, 2 * COOLING_STEPS)
    assert steps < COOLING_STEPS
    assert np.all(store.sync().heat == 0.0)


def test_peak_kinetic_energy_is_the_largest_node() -> None:
    store = _store(50)
    engine = PhysicsEngine(store, _settings())
    for _ in range(10):
        _, result, _ = engine.step_blocking()
    vel = store.sync().vel
    per_node = 0.5 * (vel**2).sum(axis=1)
    assert result.peak_kinetic_energy == pytest.approx(per_node.max())
    assert result.kinetic_energy == pytest.approx(per_node.mean())


@pytest.mark.anyio
async def test_settled_changes_only_with_a_published_tick() -> None:
    # The hub wakes on publication only: a wake() at rest must not flip `settled` by itself.
    store = _store(10)
    engine = PhysicsEngine(store, _settings())
    async with anyio.create_task_group() as tg:
        await tg.start(engine.run)
        with anyio.fail_after(60):
            snap = await engine.wait_snapshot()
            while not snap.settled:
                snap = await engine.wait_snapshot(snap.sequence)
        assert engine.settled and engine.latest is snap
        engine.wake()  # e.g. a viewer wants a keyframe of a new tick
        assert engine.settled  # unchanged until that tick is published
        with anyio.fail_after(60):
            later = await engine.wait_snapshot(snap.sequence)
        assert later.sequence > snap.sequence and engine.settled == later.settled
        tg.cancel_scope.cancel()


class _BrokenCudaFinder(importlib.abc.MetaPathFinder):
    """Makes ``visionflow.physics.cuda`` fail inside its import, as a mismatched numba-cuda does."""

    def find_spec(self, name: str, path: object, target: object = None) -> None:
        if name == "visionflow.physics.cuda":
            raise AttributeError("module 'numba.cuda.types' has no attribute 'NPDatetime'")


def test_a_broken_numba_cuda_means_the_cpu_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import visionflow.physics

    monkeypatch.delitem(sys.modules, "visionflow.physics.cuda", raising=False)
    monkeypatch.delattr(visionflow.physics, "cuda", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_BrokenCudaFinder(), *sys.meta_path])
    backend, why = choose_backend("auto")
    assert backend == "cpu"
    assert "cannot be imported" in why and "NPDatetime" in why
    with pytest.raises(StartupError, match="numba-cuda cannot be imported"):
        choose_backend("cuda")


def test_settings_that_leave_the_layout_parameters_alone_do_not_reheat() -> None:
    # Every PATCH /api/settings reaches set_settings (a log level, a websocket interval, the
    # rate): only a change to the layout parameters may set the whole layout moving again.
    store = _store(20)
    engine = PhysicsEngine(store, _settings())
    _step_until_settled(engine, 2 * COOLING_STEPS)
    engine.set_settings(_settings(rate_hz=30.0))
    snap, result, _ = engine.step_blocking()
    assert snap.settled and result.warm == 0
    assert engine.settings.rate_hz == 30.0


@pytest.mark.anyio
async def test_the_size_gauges_count_the_graph_while_the_kernels_compile() -> None:
    """A cold compile can take a minute under load: the gauges read 0 meanwhile, while the
    health entry already counted the graph."""
    metrics = Metrics()
    engine = PhysicsEngine(_store(), _settings(), metrics=metrics)
    release = threading.Event()
    engine._compile = lambda: release.wait(30)  # type: ignore[method-assign]  # a long compile
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(engine.run)
            assert engine.compiling
            sample = metrics.registry.get_sample_value
            assert sample("visionflow_physics_nodes") == 31
            assert sample("visionflow_physics_edges") == 29
            release.set()
            await engine.wait_snapshot(engine.latest.sequence if engine.latest else -1)
            tg.cancel_scope.cancel()
    finally:
        release.set()
