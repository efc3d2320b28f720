"""CPU kernels: accuracy against exact forces, layout quality, safety."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from physics_helpers import FAST, Sim, barabasi_albert

from visionflow.graph.dense import MAX_COORD
from visionflow.physics import cpu
from visionflow.physics.params import CENTER_GRAVITY_K, ENABLED, GROUP_AGENT, pack
from visionflow.settings import PhysicsParams


@pytest.mark.parametrize("theta", [0.5, 0.8])
def test_barnes_hut_within_3_percent_of_exact(theta: float) -> None:
    rng = np.random.default_rng(3)
    n = 6000
    pos = rng.normal(size=(n, 3)) * 50.0
    group = (rng.random(n) < 0.2).astype(np.int8)
    params = pack(PhysicsParams(theta=theta), PhysicsParams(repel_k=5.0, theta=theta))
    ws = cpu.CpuWorkspace()
    approx = cpu.repulsion(ws, pos, group, params, exact=False).copy()
    exact = cpu.repulsion(ws, pos, group, params, exact=True).copy()
    sample = rng.choice(n, 1000, replace=False)
    err = np.linalg.norm(approx[sample] - exact[sample], axis=1) / np.linalg.norm(
        exact[sample], axis=1
    )
    assert np.percentile(err, 99) < 0.03


def test_two_disconnected_cliques_end_up_apart() -> None:
    k = 12
    edges = [(a, b) for a in range(k) for b in range(a + 1, k)]
    edges += [(a + k, b + k) for a, b in edges]
    sim = Sim(2 * k, edges, spread=2.0)
    sim.run(600)
    c1 = sim.pos[:k].mean(axis=0)
    c2 = sim.pos[k:].mean(axis=0)
    r1 = np.linalg.norm(sim.pos[:k] - c1, axis=1).max()
    r2 = np.linalg.norm(sim.pos[k:] - c2, axis=1).max()
    assert np.linalg.norm(c1 - c2) > 1.5 * (r1 + r2)


def test_long_path_unfolds() -> None:
    spans = []
    weak_pull = msgspec.structs.replace(FAST, center_gravity_k=0.001)
    for length in (10, 20, 40):
        sim = Sim(length, [(i, i + 1) for i in range(length - 1)], spread=1.0, params=weak_pull)
        sim.run(4000)
        spans.append(float(np.linalg.norm(sim.pos[-1] - sim.pos[0])))
    # starts as a ball of radius ~1; even a weak centre pull bends long paths, so growth is
    # sub-linear, but it must grow
    assert spans[0] < spans[1] < spans[2]
    assert spans[2] > 1.5 * spans[0]
    assert spans[0] > FAST.rest_length * 3


def test_connected_pairs_closer_than_random_pairs_on_barabasi_albert() -> None:
    n = 400
    edges = barabasi_albert(n, 2)
    sim = Sim(n, edges, seed=2)
    sim.run(800)
    d_edge = np.linalg.norm(sim.pos[edges[:, 0]] - sim.pos[edges[:, 1]], axis=1)
    rng = np.random.default_rng(5)
    a, b = rng.integers(0, n, 2000), rng.integers(0, n, 2000)
    d_rand = np.linalg.norm(sim.pos[a] - sim.pos[b], axis=1)
    assert np.median(d_edge) < 0.5 * np.median(d_rand)


def test_nothing_drifts_without_bound() -> None:
    n = 2000  # above the exact crossover: exercises the Barnes-Hut path
    sim = Sim(n, barabasi_albert(n, 2), seed=4)
    radii = []
    for _ in range(4):
        sim.run(100)
        radii.append(float(np.linalg.norm(sim.pos, axis=1).max()))
    assert np.all(np.isfinite(sim.pos))
    assert abs(float(np.linalg.norm(sim.pos.mean(axis=0)))) < 0.2 * radii[-1]
    assert radii[-1] < 1.2 * radii[-2] + 1.0  # radius has levelled off


def test_energy_falls_and_layout_settles() -> None:
    sim = Sim(30, [(i, i + 1) for i in range(29)], spread=5.0)
    first = sim.run(5).kinetic_energy
    last = sim.run(4000).kinetic_energy
    assert last < 1e-4 < first


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_input_is_reset_counted_and_never_emitted(bad: float) -> None:
    sim = Sim(50, [(i, i + 1) for i in range(49)])
    sim.pos[7, 1] = bad
    sim.vel[8, 0] = bad
    r = sim.run(1)
    assert r.nonfinite_resets == 2
    assert np.all(np.isfinite(sim.pos)) and np.all(np.isfinite(sim.vel))
    assert np.linalg.norm(sim.pos[7] - sim.pos[6]) < 10.0  # re-seeded near its neighbour
    assert sim.run(1).nonfinite_resets == 0


def test_all_nonfinite_reseeds_near_origin() -> None:
    sim = Sim(5, [])
    sim.pos[:] = np.nan
    r = sim.run(1)
    assert r.nonfinite_resets == 5
    assert np.all(np.isfinite(sim.pos)) and np.abs(sim.pos).max() < 1.0


def test_coincident_nodes_separate() -> None:
    for n in (6, 3000):  # exact and Barnes-Hut paths
        sim = Sim(n, [])
        sim.pos[:3] = 1.0
        sim.run(3)
        assert np.all(np.isfinite(sim.pos))
        d = np.linalg.norm(sim.pos[0] - sim.pos[1]) + np.linalg.norm(sim.pos[1] - sim.pos[2])
        assert d > 1e-3


def test_coincident_push_is_the_same_in_exact_and_barnes_hut() -> None:
    rng = np.random.default_rng(5)
    pos = rng.normal(size=(2000, 3)) * 50.0
    pos[:3] = pos[0]  # three nodes on one spot
    group = np.zeros(2000, np.int8)
    params = pack(PhysicsParams(repel_k=9.0), PhysicsParams())  # charge != 1
    ws = cpu.CpuWorkspace()
    exact = cpu.repulsion(ws, pos, group, params, exact=True)[:3].copy()
    approx = cpu.repulsion(ws, pos, group, params, exact=False)[:3].copy()
    err = np.linalg.norm(approx - exact, axis=1) / np.linalg.norm(exact, axis=1)
    assert err.max() < 0.03


def test_a_pile_on_one_point_is_one_charge_with_the_exact_push() -> None:
    # 400 bodies of mixed charge on one point: Barnes-Hut takes the pile as one charge
    # (it walked to each body before: m^2 work every step) and pushes each like exact does.
    rng = np.random.default_rng(6)
    pos = rng.normal(size=(3000, 3)) * 50.0
    pos[:400] = pos[0]
    group = (rng.random(3000) < 0.3).astype(np.int8)
    params = pack(PhysicsParams(repel_k=2.0), PhysicsParams(repel_k=7.0))
    ws = cpu.CpuWorkspace()
    exact = cpu.repulsion(ws, pos, group, params, exact=True).copy()
    approx = cpu.repulsion(ws, pos, group, params, exact=False).copy()
    err = np.linalg.norm(approx - exact, axis=1) / np.linalg.norm(exact, axis=1)
    assert err[:400].max() < 0.01
    assert np.percentile(err, 99) < 0.03


def test_pins_hold_and_disabled_group_does_not_move() -> None:
    sim = Sim(20, [(i, i + 1) for i in range(19)], spread=3.0)
    sim.pinned[4] = 1
    sim.group[10:] = GROUP_AGENT
    sim.params[GROUP_AGENT, ENABLED] = 0.0
    before = sim.pos.copy()
    sim.run(50)
    np.testing.assert_array_equal(sim.pos[4], before[4])
    np.testing.assert_array_equal(sim.pos[10:], before[10:])
    assert np.all(sim.vel[4] == 0.0) and np.all(sim.vel[10:] == 0.0)
    assert not np.allclose(sim.pos[:4], before[:4])


def test_bounds_reflect() -> None:
    p = PhysicsParams(
        repel_k=1e4,
        bounds_size=5.0,
        enable_bounds=True,
        warmup_iterations=0,
        dt=0.5,
        max_velocity=100.0,
    )
    sim = Sim(40, [], params=p, spread=1.0)
    sim.run(200)
    assert np.abs(sim.pos).max() <= 5.0


def test_workspace_grows_and_shrinks() -> None:
    ws = cpu.CpuWorkspace()
    ws.ensure(1000)
    assert ws.capacity >= 1000
    big = ws.capacity
    ws.ensure(1000)
    assert ws.capacity == big  # no reallocation for the same size
    ws.ensure(10)
    assert ws.capacity < big


def test_nothing_passes_the_coordinate_wall() -> None:
    # Far beyond MAX_COORD the float32 Barnes-Hut turned every node NaN (found in review).
    sim = Sim(1500, [], spread=10.0)
    sim.pos[0] = (MAX_COORD - 1.0, 0.0, 0.0)
    sim.vel[0] = (1e3, 0.0, 0.0)  # flying outwards
    sim.params[:, CENTER_GRAVITY_K] = 0.0
    r = sim.run(5)
    assert r.nonfinite_resets == 0
    assert sim.pos[0, 0] == MAX_COORD and sim.vel[0, 0] == 0.0
    assert np.all(np.abs(sim.pos) <= MAX_COORD)
