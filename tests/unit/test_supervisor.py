"""Supervisor behaviour under trio's MockClock: backoff timing costs no real time."""

from __future__ import annotations

import errno
import random

import anyio
import anyio.abc
import pytest
from loguru import logger
from support.clock import anyio_backend  # noqa: F401  (every test here runs on trio's MockClock)

from visionflow.errors import StartupError
from visionflow.supervisor import HealthRegistry, RestartPolicy, Supervisor, find_in_group

POLICY = RestartPolicy(initial=1.0, maximum=8.0, jitter=0.0, budget=3, window=60.0)


class Flaky:
    """Fails ``failures`` times after starting, then runs until told to stop."""

    def __init__(self, failures: int, stopping: anyio.Event | None = None) -> None:
        self.failures = failures
        self.starts: list[float] = []
        self.stopping = stopping

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        self.starts.append(anyio.current_time())
        task_status.started()
        await anyio.sleep(0.5)
        if len(self.starts) <= self.failures:
            raise RuntimeError(f"boom {len(self.starts)}")
        if self.stopping is not None:
            await self.stopping.wait()
        else:
            await anyio.sleep_forever()


class Steady:
    def __init__(self) -> None:
        self.ticks = 0

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        while True:
            await anyio.sleep(0.1)
            self.ticks += 1


@pytest.mark.anyio
async def test_child_failing_twice_is_restarted_twice_with_backoff() -> None:
    registry = HealthRegistry("t")
    restarts: list[str] = []
    flaky, steady = Flaky(failures=2), Steady()
    async with anyio.create_task_group() as tg:
        sup = Supervisor(tg, registry, POLICY, on_restart=restarts.append)
        await sup.start("steady", steady.run)
        await sup.start("flaky", flaky.run)
        await anyio.sleep(20)
        assert len(flaky.starts) == 3
        t0, t1, t2 = flaky.starts
        # crash 0.5 s after each start, then wait 1 s, then 2 s (doubling, no jitter)
        assert t1 - t0 == pytest.approx(0.5 + 1.0)
        assert t2 - t1 == pytest.approx(0.5 + 2.0)
        assert registry.subsystems["flaky"].state == "running"
        assert registry.subsystems["flaky"].restarts == 2
        assert registry.subsystems["flaky"].last_error == "boom 2"
        assert restarts == ["flaky", "flaky"]
        # the sibling never noticed: it ticked the whole time and was never restarted
        assert steady.ticks >= 199
        assert registry.subsystems["steady"].state == "running"
        assert registry.subsystems["steady"].restarts == 0
        assert registry.status() == "ok"
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_child_over_budget_is_failed_and_health_degrades() -> None:
    registry = HealthRegistry("t")
    flaky, steady = Flaky(failures=1000), Steady()
    async with anyio.create_task_group() as tg:
        sup = Supervisor(tg, registry, POLICY)
        await sup.start("steady", steady.run)
        await sup.start("flaky", flaky.run)
        await anyio.sleep(40)
        # budget 3: the 4th failure within the window gives up
        assert len(flaky.starts) == 4
        assert registry.subsystems["flaky"].state == "failed"
        assert registry.status() == "degraded"
        ready, reasons = registry.readiness()
        assert ready and reasons == []  # a non-critical child down does not make us unready
        assert registry.subsystems["steady"].state == "running"
        assert registry.as_json()["subsystems"]["flaky"]["state"] == "failed"
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_an_essential_child_that_failed_makes_the_service_unready() -> None:
    # physics: it is not critical (the rest serves on), but with the layout stopped for good
    # /readyz said ready.
    registry = HealthRegistry("t")
    flaky = Flaky(failures=1000)
    async with anyio.create_task_group() as tg:
        sup = Supervisor(tg, registry, POLICY)
        registry.register("flaky", essential=True)
        await sup.start("flaky", flaky.run)
        await anyio.sleep(1.0)
        assert registry.subsystems["flaky"].state == "backoff"
        assert registry.readiness() == (True, [])  # it may still come back
        await anyio.sleep(40)
        assert registry.subsystems["flaky"].state == "failed"
        assert registry.status() == "degraded"
        ready, reasons = registry.readiness()
        assert not ready and reasons == [
            f"flaky is failed: {registry.subsystems['flaky'].last_error}"
        ]
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_backoff_is_capped_and_jitter_only_shortens() -> None:
    policy = RestartPolicy(initial=1.0, maximum=4.0, jitter=0.5, budget=100, window=1.0)
    rng = random.Random(7)
    delays = [policy.delay(n, rng) for n in range(1, 10)]
    bases = [1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    for d, base in zip(delays, bases, strict=True):
        assert base * 0.5 <= d <= base


@pytest.mark.anyio
async def test_critical_child_failing_at_start_raises_startup_error() -> None:
    async def broken(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        raise OSError("port busy")

    registry = HealthRegistry("t")
    with pytest.raises(BaseExceptionGroup) as info:
        async with anyio.create_task_group() as tg:
            sup = Supervisor(tg, registry, POLICY)
            await sup.start("http", broken, critical=True)
    error = find_in_group(info.value, StartupError)
    assert error is not None and "port busy" in str(error)
    assert registry.subsystems["http"].state == "failed"


@pytest.mark.anyio
async def test_critical_child_down_after_start_means_failing_and_unready() -> None:
    registry = HealthRegistry("t")
    flaky = Flaky(failures=1)
    async with anyio.create_task_group() as tg:
        sup = Supervisor(tg, registry, POLICY)
        await sup.start("http", flaky.run, critical=True)
        await anyio.sleep(0.75)  # crashed at 0.5, restarts at 1.5
        assert registry.subsystems["http"].state == "backoff"
        assert registry.status() == "failing"
        ready, reasons = registry.readiness()
        assert not ready and "http is backoff" in reasons
        await anyio.sleep(1.0)
        assert registry.status() == "ok"
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_non_critical_child_failing_before_start_does_not_block_startup() -> None:
    attempts = 0

    async def never_starts(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionRefusedError("connection refused")

    registry = HealthRegistry("t")
    async with anyio.create_task_group() as tg:
        sup = Supervisor(tg, registry, POLICY)
        await sup.start("mcp:local", never_starts)
        assert registry.subsystems["mcp:local"].state == "backoff"
        assert registry.subsystems["mcp:local"].last_error == "connection refused"
        await anyio.sleep(100)
        assert registry.subsystems["mcp:local"].state == "failed"
        assert attempts == POLICY.budget + 1
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_shutdown_drains_within_grace() -> None:
    """Children that honour ``stopping`` finish inside the grace; a stuck one is cancelled."""
    registry = HealthRegistry("t")
    drained = anyio.Event()

    async def polite(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        await sup.stopping.wait()
        await anyio.sleep(1.0)  # flush something
        drained.set()

    async def stuck(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        await anyio.sleep_forever()

    grace = 3.0
    async with anyio.create_task_group() as tg:
        sup = Supervisor(tg, registry, POLICY)
        await sup.start("polite", polite)
        await sup.start("stuck", stuck)
        began = anyio.current_time()
        sup.begin_shutdown()
        assert registry.readiness() == (False, ["shutting down"])
        with anyio.move_on_after(grace):
            await sup.wait_stopped()
        tg.cancel_scope.cancel()
    elapsed = anyio.current_time() - began
    assert drained.is_set()
    assert elapsed == pytest.approx(grace)
    assert registry.subsystems["polite"].state == "stopped"


@pytest.mark.anyio
async def test_shutdown_returns_early_when_everyone_drains() -> None:
    registry = HealthRegistry("t")
    async with anyio.create_task_group() as tg:
        sup = Supervisor(tg, registry, POLICY)
        flaky = Flaky(failures=0, stopping=sup.stopping)
        await sup.start("a", flaky.run)
        began = anyio.current_time()
        sup.begin_shutdown()
        with anyio.move_on_after(10):
            await sup.wait_stopped()
        assert anyio.current_time() - began < 1.0
    assert registry.subsystems["a"].state == "stopped"


@pytest.mark.anyio
async def test_no_restart_during_shutdown() -> None:
    registry = HealthRegistry("t")
    flaky = Flaky(failures=5)
    async with anyio.create_task_group() as tg:
        sup = Supervisor(tg, registry, POLICY)
        await sup.start("a", flaky.run)
        await anyio.sleep(0.6)  # crashed, now in backoff
        sup.begin_shutdown()
        with anyio.move_on_after(10):
            await sup.wait_stopped()
    assert len(flaky.starts) == 1
    assert registry.subsystems["a"].state == "stopped"


@pytest.mark.anyio
async def test_a_child_that_returns_on_its_own_is_restarted_not_reported_ok() -> None:
    # Before: it was marked "stopped" and health stayed ok with the subsystem gone.
    registry = HealthRegistry("t")
    starts: list[float] = []

    async def quitter(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        starts.append(anyio.current_time())
        task_status.started()
        if len(starts) == 1:
            await anyio.sleep(0.5)
            return  # a bug: children run until cancelled
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        sup = Supervisor(tg, registry, POLICY)
        await sup.start("hub", quitter)
        await anyio.sleep(0.6)
        assert registry.subsystems["hub"].state == "backoff"
        assert registry.status() == "degraded"
        await anyio.sleep(5)
        assert len(starts) == 2 and registry.subsystems["hub"].state == "running"
        assert registry.subsystems["hub"].last_error == "returned on its own"
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_critical_child_returning_before_it_started_fails_start_up() -> None:
    async def gone(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        return

    with pytest.raises(BaseExceptionGroup) as info:
        async with anyio.create_task_group() as tg:
            sup = Supervisor(tg, HealthRegistry("t"), POLICY)
            await sup.start("http", gone, critical=True)
    error = find_in_group(info.value, StartupError)
    assert error is not None and "returned before it started" in str(error)


class OutOfDescriptors:
    """Crashes once as numba did when a connection storm used every descriptor, then runs."""

    def __init__(self) -> None:
        self.starts = 0

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        self.starts += 1
        task_status.started()
        if self.starts == 1:
            try:
                raise OSError(errno.EMFILE, "Too many open files")
            except OSError as exc:  # wrapped, as a library reports it
                raise RuntimeError("cannot read the kernel's source") from exc
        await anyio.sleep_forever()


@pytest.mark.anyio
async def test_a_crash_from_running_out_of_descriptors_is_one_line_then_a_restart() -> None:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="ERROR", format="{message}")
    registry = HealthRegistry("t")
    child, bug = OutOfDescriptors(), Flaky(failures=1)
    try:
        async with anyio.create_task_group() as tg:
            sup = Supervisor(tg, registry, POLICY)
            await sup.start("physics", child.run)
            await sup.start("buggy", bug.run)
            await anyio.sleep(5)
            assert child.starts == 2 and registry.subsystems["physics"].state == "running"
            tg.cancel_scope.cancel()
    finally:
        logger.remove(sink)
    out_of_files = [line for line in lines if "cannot read the kernel's source" in line]
    assert out_of_files == [
        "crashed: cannot read the kernel's source (the system is out of a resource)\n"
    ]
    # an ordinary exception still gets its traceback: that is a bug to fix
    assert any("boom 1" in line and "Traceback" in line for line in lines), lines


class NoDevice:
    """Refuses to start as physics.backend = "cuda" does on a machine without a GPU."""

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        raise StartupError("physics.backend = 'cuda' but no usable CUDA device: use 'auto'")


@pytest.mark.anyio
async def test_a_startup_error_at_each_restart_is_one_line_without_a_traceback() -> None:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="ERROR", format="{message}")
    registry = HealthRegistry("t")
    try:
        async with anyio.create_task_group() as tg:
            sup = Supervisor(tg, registry, POLICY)
            await sup.start("physics", NoDevice().run)
            await anyio.sleep(60)
            assert registry.subsystems["physics"].state == "failed"
            tg.cancel_scope.cancel()
    finally:
        logger.remove(sink)
    crashes = [line for line in lines if "no usable CUDA device" in line]
    # each restart printed a 9-line traceback for a setting it had explained in full
    assert crashes and all(line.count("\n") == 1 for line in crashes), crashes
