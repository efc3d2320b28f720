"""The physics engine: steps the layout in a worker thread and publishes immutable snapshots.

Each tick is published once, as the protocol's :class:`~visionflow.protocol.snapshot.Snapshot`
(float32, finite, read-only, with ``settled``), and read as is by the hub, the layout saver and
the HTTP handlers.

``run`` is a supervised child: it reports started at once, compiles the numba kernels in a
worker thread (``compiling`` is true meanwhile), then steps at ``physics.rate_hz``.  It stops
stepping once the layout settles, i.e. every node has cooled (each node's heat decays over
``cooling_steps``; the store warms what a change touches, see ``graph.store.NEW_HEAT``), and
resumes when the graph, a pin or the parameters change.  Nothing here blocks the event loop:
the compile and every step run on the engine's own daemon thread (``visionflow.threads``), one
at a time, and a shutdown does not wait for the one in progress (the step after a 150k-node
import places the new nodes first: seconds).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
import anyio.abc
import numpy as np
import numpy.typing as npt
from loguru import logger

from visionflow.errors import StartupError
from visionflow.graph import heat as graph_heat
from visionflow.graph.dense import csr_from_edges
from visionflow.graph.store import DenseState, GraphStore
from visionflow.physics import KERNEL_CACHE, cpu, multilevel
from visionflow.physics.params import ParamTable, pack_settings
from visionflow.physics.step import StepInput
from visionflow.protocol.snapshot import Snapshot
from visionflow.settings import PhysicsSettings
from visionflow.threads import DaemonWorker

if TYPE_CHECKING:
    from visionflow.metrics import Metrics
    from visionflow.supervisor import SubsystemHealth

log = logger.bind(subsystem="physics")

Backend = Literal["cpu", "cuda"]
STEP_HISTORY = 1024  # step times kept for stats (bounded)
# Heat every node gets when the layout parameters change (d3-force users reheat to 0.3-0.5):
# enough to reach the new balance, not a full restart from scratch.
PARAMS_HEAT = 0.5
# physics.settle_energy > 0 adds an early rest: once the mean kinetic energy per node is under
# it (and no node over SETTLE_PEAK_FACTOR times it, the peak not rising) for a layout awake at
# least MIN_AWAKE_STEPS, every node is cooled at once.
SETTLE_PEAK_FACTOR = 10.0
MIN_AWAKE_STEPS = 30
F32 = npt.NDArray[np.float32]


class Stepper(Protocol):
    def step(self, inp: StepInput) -> cpu.StepResult: ...


class CpuStepper:
    def __init__(self) -> None:
        self.workspace = cpu.CpuWorkspace()

    def step(self, inp: StepInput) -> cpu.StepResult:
        return cpu.step(self.workspace, inp)


def resolve_backend(requested: str) -> Backend:
    """``auto`` -> cuda when a device is usable, else cpu; ``cuda`` without one -> StartupError."""
    return choose_backend(requested)[0]


def choose_backend(requested: str) -> tuple[Backend, str]:
    """``resolve_backend``, plus why, for the log line: ``physics backend: cpu (why)``."""
    if requested == "cpu":
        return "cpu", 'physics.backend = "cpu"'
    if requested not in ("auto", "cuda"):
        raise StartupError(f"physics.backend must be auto, cpu or cuda, not {requested!r}")
    try:
        from visionflow.physics import cuda as cuda_backend
    # Not installed (ImportError), or installed but broken: a numba-cuda that does not match
    # the installed numba fails inside its own import (numba-cuda 0.30.0 with numba 0.68:
    # AttributeError), a missing driver library is an OSError. "auto" then means the CPU.
    except (ImportError, AttributeError, OSError) as exc:
        if requested == "cuda":
            raise StartupError(
                f"physics.backend = 'cuda' but numba-cuda cannot be imported: {exc}"
            ) from exc
        if importlib.util.find_spec("numba_cuda") is None:
            return "cpu", "numba-cuda not installed"
        return "cpu", f"numba-cuda installed, but it cannot be imported: {exc}"
    if cuda_backend.device_available():
        return "cuda", f'physics.backend = "{requested}"'
    if requested == "cuda":
        cuda_backend.require_device()  # raises StartupError with the reason
    return "cpu", f"numba-cuda installed, but no CUDA device: {no_device_reason()}"


def no_device_reason() -> str:
    """Why numba-cuda finds no usable device, in one line: the driver's own words if it has
    some (no driver library, CUDA_ERROR_NO_DEVICE, NUMBA_DISABLE_CUDA), else the NVVM check."""
    try:
        from numba.cuda.cudadrv import driver, nvvm
    except ImportError as exc:
        return f"numba.cuda's driver layer cannot be imported ({exc})"
    error = getattr(driver.driver, "initialization_error", None)
    if error:
        return " ".join(str(error).split())
    nvvm_available: Any = nvvm.is_available  # untyped in numba-cuda
    if not nvvm_available():
        return "libNVVM (part of the CUDA toolkit) was not found"
    return "numba.cuda.is_available() is false"


def make_stepper(backend: Backend) -> Stepper:
    if backend == "cuda":
        from visionflow.physics.cuda import CudaStepper

        return CudaStepper()
    return CpuStepper()


class SnapshotBoard:
    """Latest snapshot plus an anyio-friendly "newer than tick t" wait (asyncio and trio).

    ``publish`` and ``wait`` run on the event loop only.
    """

    def __init__(self) -> None:
        self.latest: Snapshot | None = None
        self._event: anyio.Event | None = None

    def publish(self, snapshot: Snapshot) -> None:
        self.latest = snapshot  # the one place a tick reaches its readers
        event, self._event = self._event, None
        if event is not None:
            event.set()

    async def wait(self, after_tick: int = -1) -> Snapshot:
        """Return the latest snapshot once its ``sequence`` (tick) is past ``after_tick``."""
        while self.latest is None or self.latest.sequence <= after_tick:
            if self._event is None:
                self._event = anyio.Event()
            await self._event.wait()
        return self.latest


def _freeze(a: npt.NDArray[np.float64]) -> F32:
    """A float32 copy, scrubbed: the one finiteness check a tick gets before it is published."""
    out = a.astype(np.float32)
    if not np.isfinite(out).all():  # only a float64 beyond float32 range can get here
        np.clip(np.nan_to_num(out, nan=0.0), -3e38, 3e38, out=out)
    return out


def _snapshot(tick: int, state: DenseState, settled: bool) -> Snapshot:
    # Scrubbed by _freeze just before, so Snapshot.create need not look at every float again.
    return Snapshot.create(
        tick,
        state.flagged.copy(),
        _freeze(state.pos),
        _freeze(state.vel),
        revision=state.revision,
        settled=settled,
        check_finite=False,
    )


class PhysicsEngine:
    """Owns the stepping loop over a GraphStore's dense arrays.

    Plain attributes the service wires (or pass ``metrics``/``health`` to have them updated):
    ``compiling``, ``settled``, ``tick``, ``nodes``, ``edges``, ``nonfinite_resets``,
    ``step_seconds`` (recent step wall times), ``backend``, ``on_step`` (callback(seconds)).
    """

    def __init__(
        self,
        store: GraphStore,
        settings: PhysicsSettings,
        *,
        metrics: Metrics | None = None,
        health: SubsystemHealth | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.health = health
        self.board = SnapshotBoard()
        self.backend: Backend | None = None
        self.compiling = False
        self.settled = False
        self.tick = 0
        self.iteration = 0  # steps since start (drives the warm-up ramp)
        self.nodes = 0
        self.edges = 0
        self.nonfinite_resets = 0
        self.kinetic_energy = 0.0
        self.placement_seconds = 0.0  # the last multilevel placement's wall time (0: none yet)
        self.step_seconds: deque[float] = deque(maxlen=STEP_HISTORY)
        self.on_step: Callable[[float], None] | None = None
        # (version, table) swapped as one object: the stepping thread reads both at once
        self._params: tuple[int, ParamTable] = (0, pack_settings(settings))
        self._awake_steps = 0  # steps since the graph or the parameters last changed
        self._last_peak = 0.0  # the previous step's largest per-node kinetic energy
        self._seen: tuple[int, int] = (-1, -1)  # (store version, params version) last stepped
        self._stepper: Stepper | None = None
        self._shown_version = -1  # store version of the newest snapshot (stepped or still)
        self._wake: anyio.Event | None = None
        # A step is wanted although nothing changed (a viewer needs a new tick). Kept apart
        # from ``settled``, which changes only with a published tick (the hub reads it there).
        self._woken = False
        self._cache_noted = False
        self._host_written = False  # the stepping thread changed host arrays (see step_blocking)
        self._thread = DaemonWorker("physics")  # compiles and steps, never two at once

    # ------------------------------------------------------------------ control API

    def set_settings(self, settings: PhysicsSettings) -> None:
        """New parameters / rate / settle threshold; they apply from the next step. Only new
        layout parameters warm the layout: every runtime settings change comes through here."""
        self.settings = settings
        table = pack_settings(settings)
        if not np.array_equal(table, self._params[1]):
            self._params = (self._params[0] + 1, table)
            self.store.heat_all(PARAMS_HEAT)
        self.wake()

    def pin(self, node_id: int, position: Iterable[float] | None = None) -> None:
        """Pin a node (raw or wire id), optionally at a finite position; GraphError if invalid."""
        self.store.pin(node_id, position)
        self.wake()

    def unpin(self, node_id: int) -> None:
        self.store.unpin(node_id)
        self.wake()

    def restart_warmup(self) -> None:
        """Run the whole schedule again: every node fully warm, the force ramp from zero
        (e.g. after replacing the whole graph)."""
        self.iteration = 0
        self.store.heat_all(1.0)
        self.wake()

    def wake(self) -> None:
        """Step at the next tick even if at rest (store changes are noticed anyway)."""
        self._woken = True
        if self._wake is not None:
            self._wake.set()

    @property
    def latest(self) -> Snapshot | None:
        return self.board.latest

    async def wait_snapshot(self, after_tick: int = -1) -> Snapshot:
        return await self.board.wait(after_tick)

    def step_stats(self) -> dict[str, float]:
        if not self.step_seconds:
            return {"count": 0.0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
        a = np.fromiter(self.step_seconds, np.float64) * 1e3
        return {
            "count": float(a.size),
            "p50_ms": float(np.percentile(a, 50)),
            "p99_ms": float(np.percentile(a, 99)),
            "max_ms": float(np.max(a)),
        }

    # ------------------------------------------------------------------ stepping (thread side)

    def _quiet(self, result: cpu.StepResult, threshold: float, rising: bool) -> bool:
        """The early rest of ``physics.settle_energy``: mean kinetic energy per node under
        ``threshold`` (> 0), no node over ``SETTLE_PEAK_FACTOR`` times it, that peak not
        ``rising`` since the previous step, and at least ``MIN_AWAKE_STEPS`` since the last
        change.  The mean alone would average one moving node away in a large graph.
        """
        return (
            threshold > 0.0
            and self._awake_steps >= MIN_AWAKE_STEPS
            and not rising
            and result.kinetic_energy < threshold
            and result.peak_kinetic_energy < SETTLE_PEAK_FACTOR * threshold
        )

    def step_blocking(self) -> tuple[Snapshot, cpu.StepResult, float]:
        """One step on the calling thread (the engine runs it on its daemon thread)."""
        if self._stepper is None:
            self._stepper = make_stepper(self.backend or "cpu")
        params_version, params = self._params
        state: DenseState = self.store.sync()
        if state.fresh.size:
            if state.fresh.size >= multilevel.MIN_NODES:
                self._place_fresh(state, params)
            state.fresh = np.zeros(0, np.int64)  # seen: placed or left where the store put it
        # device-resident steppers skip re-uploading arrays the store did not touch
        note_version = getattr(self._stepper, "note_host_version", None)
        if note_version is not None:
            # -1 after this thread wrote the host arrays itself (an early rest cooled every
            # node): no store version covers that write, so the device copy must be refreshed
            note_version(-1 if self._host_written else state.version)
        self._host_written = False
        t0 = time.perf_counter()
        result = self._stepper.step(
            StepInput(
                state.pos,
                state.vel,
                state.group,
                state.pinned,
                state.indptr,
                state.indices,
                state.weights,
                params,
                self.iteration,
                state.heat,
            )
        )
        elapsed = time.perf_counter() - t0
        self.iteration += 1
        self.tick += 1
        if (state.version, params_version) != self._seen:
            self._awake_steps = 0
        self._awake_steps += 1
        self._seen = (state.version, params_version)
        self._shown_version = state.version
        rising = result.peak_kinetic_energy > self._last_peak
        self._last_peak = result.peak_kinetic_energy
        if result.warm and self._quiet(result, self.settings.settle_energy, rising):
            state.heat[:] = 0.0  # the physics thread owns the dense arrays between syncs
            self._host_written = True
            result = dataclasses.replace(result, warm=0)
        settled = result.warm == 0
        snap = _snapshot(self.tick, state, settled)
        self.nodes = state.n
        self.edges = int(state.indices.shape[0] // 2)
        return snap, result, elapsed

    def _place_fresh(self, state: DenseState, params: ParamTable) -> None:
        """A multilevel placement of the nodes the store just added (a large import), next to
        the placed nodes they link to, if any."""
        t0 = time.perf_counter()
        fresh = state.fresh
        local = np.full(state.n, -1, np.int64)
        local[fresh] = np.arange(fresh.size)
        src = np.repeat(np.arange(state.n, dtype=np.int64), np.diff(state.indptr))
        ls, lt = local[src], local[state.indices]
        inner = (ls >= 0) & (lt >= 0) & (src < state.indices)
        anchors = state.indices[(ls >= 0) & (lt < 0)]
        if anchors.size > multilevel.ANCHORED * int(inner.sum()):
            return  # mostly links into the existing layout: the store's seeding is better
        ptr, idx, _ = csr_from_edges(fresh.size, ls[inner], lt[inner], np.ones(int(inner.sum())))
        placed = multilevel.place(cpu.CpuWorkspace(), ptr, idx, state.group[fresh], params)
        if anchors.size:
            placed += state.pos[anchors].mean(axis=0)
        state.pos[fresh] = placed
        state.vel[fresh] = 0.0
        self.placement_seconds = time.perf_counter() - t0
        log.debug(
            "multilevel placement of {} new nodes in {:.2f} s", fresh.size, self.placement_seconds
        )

    def still_blocking(self) -> Snapshot:
        """The store's current positions as a new tick, without stepping (physics thread)."""
        state: DenseState = self.store.sync()
        self._shown_version = state.version
        self.tick += 1
        self.nodes = state.n
        self.edges = int(state.indices.shape[0] // 2)
        return _snapshot(self.tick, state, settled=False)

    def _compile(self) -> None:
        """Run both repulsion paths once on tiny graphs so the first real step is fast, and
        compile the store's heat spreading (the first sync after an import runs it)."""
        graph_heat.warm_up()
        stepper = make_stepper(self.backend or "cpu")
        for n in (8, cpu.EXACT_MAX_NODES + 8):
            rng = np.random.default_rng(0)
            pos = rng.normal(size=(n, 3)) * 10.0
            vel = np.zeros((n, 3))
            src = np.arange(n - 1, dtype=np.int64)
            indptr, indices, weights = csr_from_edges(n, src, src + 1, np.ones(n - 1))
            stepper.step(
                StepInput(
                    pos,
                    vel,
                    np.zeros(n, np.int8),
                    np.zeros(n, np.uint8),
                    indptr,
                    indices,
                    weights,
                    self._params[1],
                    0,
                    np.ones(n),
                )
            )
            if self.backend == "cuda":
                break  # the GPU kernels do not depend on the size
        self._stepper = stepper

    # ------------------------------------------------------------------ loop (event-loop side)

    def _publish(self, snap: Snapshot, result: cpu.StepResult, elapsed: float) -> None:
        self.settled = snap.settled
        self.kinetic_energy = result.kinetic_energy
        self.step_seconds.append(elapsed)
        if result.nonfinite_resets:
            self.nonfinite_resets += result.nonfinite_resets
            log.warning("re-seeded {} non-finite node(s)", result.nonfinite_resets)
        if self.metrics is not None:
            self.metrics.physics_step_seconds.observe(elapsed)
            if result.nonfinite_resets:
                self.metrics.physics_nonfinite_resets.inc(result.nonfinite_resets)
        if self.on_step is not None:
            self.on_step(elapsed)
        self.board.publish(snap)
        self._report()

    def _report(self) -> None:
        if self.metrics is not None:
            # here, not per step only: a cold compile can take a minute, and the gauges read 0
            # meanwhile while the health entry already counted the graph
            self.metrics.physics_nodes.set(self.nodes)
            self.metrics.physics_edges.set(self.edges)
        if self.health is None:
            return
        self.health.detail.update(
            backend=self.backend,
            compiling=self.compiling,
            settled=self.settled,
            nodes=self.nodes,
            edges=self.edges,
            tick=self.tick,
            nonfinite_resets=self.nonfinite_resets,
            step_p50_ms=round(self.step_stats()["p50_ms"], 3),
        )

    def _needs_step(self) -> bool:
        if self._woken or not self.settled:
            return True
        return (self.store.version, self._params[0]) != self._seen

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        if self.store.version != self._shown_version:
            # Viewers get the last known positions (restored, seeded or imported since) while
            # the kernels compile, and even if stepping never works (the supervisor gives up:
            # `failed`): a still picture beats a blank one.
            self.board.publish(await self._thread.run(self.still_blocking))
        self.backend, why = choose_backend(self.settings.backend)
        log.info("physics backend: {} ({})", self.backend, why)
        if KERNEL_CACHE.note is not None and not self._cache_noted:
            self._cache_noted = True  # once per process, not again on a restart
            log.warning("numba kernel cache: {}", KERNEL_CACHE.note)
        self.compiling = True
        self._report()
        task_status.started()
        try:
            t0 = time.perf_counter()
            # A shutdown during a cold compile must not wait for LLVM (see visionflow.threads).
            await self._thread.run(self._compile)
            log.info("physics kernels ready in {:.1f} s", time.perf_counter() - t0)
        finally:
            self.compiling = False
        self._report()
        next_at = anyio.current_time()
        while True:
            if self._needs_step():
                self._woken = False
                snap, result, elapsed = await self._thread.run(self.step_blocking)
                self._publish(snap, result, elapsed)
                if snap.settled:
                    log.debug("layout settled at tick {}", snap.sequence)
            period = 1.0 / self.settings.rate_hz
            next_at += period
            now = anyio.current_time()
            if next_at < now:  # fell behind (a slow step): don't try to catch up
                next_at = now
            self._wake = anyio.Event()
            with anyio.move_on_after(next_at - now):
                if self.settled:
                    await self._wake.wait()  # settled: idle until woken or the next poll
                else:
                    await anyio.sleep(next_at - now)
            self._wake = None
