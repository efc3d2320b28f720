"""The layout saver under trio's MockClock: a failing save is reported once, retried with a
capped exponential backoff, shown in health, and its recovery logged once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from loguru import logger
from support.clock import anyio_backend  # noqa: F401  (every test here runs on trio's MockClock)

from visionflow.graph.store import GraphStore, NodeKind
from visionflow.physics.engine import PhysicsEngine
from visionflow.protocol.snapshot import Snapshot
from visionflow.settings import PhysicsSettings
from visionflow.state import layout as persist
from visionflow.supervisor import HealthRegistry

pytestmark = pytest.mark.anyio


@pytest.fixture
def log_lines() -> Iterator[list[tuple[str, str]]]:
    lines: list[tuple[str, str]] = []
    sink = logger.add(
        lambda m: lines.append((m.record["level"].name, m.record["message"])),
        level="DEBUG",
        filter=lambda r: r["extra"].get("subsystem") == "physics",
    )
    yield lines
    logger.remove(sink)


def _publish(engine: PhysicsEngine, store: GraphStore, tick: int) -> None:
    d = store.sync()
    pos = d.pos.astype(np.float32)
    engine.board.publish(Snapshot.create(tick, d.flagged.copy(), pos, pos * 0, revision=d.revision))


def _one_node_saver(tmp_path: Path, interval: float) -> tuple[GraphStore, persist.LayoutSaver]:
    """A saver of a one-node graph whose engine has published tick 1 (not saved yet)."""
    store = GraphStore()
    store.import_document({"nodes": [{"id": "a"}]})
    engine = PhysicsEngine(store, PhysicsSettings(backend="cpu"))
    _publish(engine, store, tick=1)
    return store, persist.LayoutSaver(engine, store, str(tmp_path), interval)


class Attempts:
    """Wraps ``saver.save_now``: records each attempt's virtual time and result."""

    def __init__(self, saver: persist.LayoutSaver) -> None:
        self.times: list[float] = []
        self.results: list[bool] = []
        self.on_attempt: dict[int, Any] = {}  # attempt number -> callback before it
        self._original = saver.save_now
        self._changed = anyio.Event()
        saver.save_now = self.save_now  # type: ignore[method-assign]

    async def save_now(self) -> bool:
        self.times.append(anyio.current_time())
        hook = self.on_attempt.get(len(self.times))
        if hook is not None:
            hook()
        ok = await self._original()
        self.results.append(ok)
        self._changed.set()
        return ok

    async def wait_for(self, count: int) -> None:
        # no deadline here: MockClock would jump to it while a save runs in a worker thread
        while len(self.results) < count:
            self._changed = anyio.Event()
            await self._changed.wait()


async def test_failing_saves_back_off_are_reported_once_and_recovery_is_logged(
    tmp_path: Path, log_lines: list[tuple[str, str]]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    state_dir = blocker / "state"  # under a regular file: cannot be created, even by root
    store = GraphStore()
    store.import_document({"nodes": [{"id": "a"}, {"id": "b"}]})
    engine = PhysicsEngine(store, PhysicsSettings(backend="cpu"))
    _publish(engine, store, tick=1)
    registry = HealthRegistry("t")
    health = registry.register("layout")
    saver = persist.LayoutSaver(engine, store, str(state_dir), 5.0, health=health)
    attempts = Attempts(saver)

    def make_writable() -> None:
        blocker.unlink()
        blocker.mkdir()

    attempts.on_attempt[11] = make_writable
    async with anyio.create_task_group() as tg:
        await tg.start(saver.run)
        start = anyio.current_time()
        await attempts.wait_for(10)
        assert attempts.results == [False] * 10
        assert registry.status() == "degraded"
        detail = registry.as_json()["subsystems"]["layout"]["detail"]
        assert detail["degraded"] is True
        assert detail["error"] == "a file stands where this folder (or one above it) should be"
        assert detail["path"] == str(state_dir / "layout.json")
        assert detail["failures"] == 10

        await attempts.wait_for(11)  # the state dir is writable again
        assert attempts.results[-1] is True
        assert registry.status() == "ok"
        assert registry.as_json()["subsystems"]["layout"]["detail"]["error"] is None
        assert persist.load_layout(state_dir / "layout.json").error is None

        _publish(engine, store, tick=2)  # something new to save: the normal interval again
        await attempts.wait_for(12)
        tg.cancel_scope.cancel()

    gaps = np.diff([start, *attempts.times[:12]]).round(6).tolist()
    # 5 s interval; after each failure 5, 10, 20, ... capped at RETRY_MAX (300 s)
    assert gaps == [5, 5, 10, 20, 40, 80, 160, 300, 300, 300, 300, 5]
    warnings = [m for level, m in log_lines if level in ("WARNING", "ERROR")]
    assert len(warnings) == 1, warnings
    assert (
        str(state_dir / "layout.json") in warnings[0]
        and "a file stands where this folder" in warnings[0]
    )
    recovered = [m for level, m in log_lines if level == "INFO" and "again" in m]
    assert len(recovered) == 1 and "after 10 failed attempt(s)" in recovered[0]


async def test_a_different_error_is_reported_again(
    tmp_path: Path, log_lines: list[tuple[str, str]]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = GraphStore()
    store.add_node(NodeKind.KNOWLEDGE, "a")
    engine = PhysicsEngine(store, PhysicsSettings(backend="cpu"))
    _publish(engine, store, tick=1)
    saver = persist.LayoutSaver(engine, store, str(blocker / "state"), 1.0)
    assert not await saver.save_now()
    assert not await saver.save_now()  # the same error: quiet
    blocker.unlink()
    (blocker / "state" / "layout.json").mkdir(parents=True)  # a directory where the file goes
    assert not await saver.save_now()
    warnings = [m for level, m in log_lines if level == "WARNING"]
    assert len(warnings) == 2 and "a file stands where this folder" in warnings[0]
    assert "Is a directory" in warnings[1]


async def test_the_save_at_shutdown_is_cut_short_after_its_time_bound(
    tmp_path: Path, log_lines: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A hung disk: the shielded last save must not hold the shutdown back for ever.
    release = threading.Event()

    def hung(*args: object) -> int:
        release.wait(30)  # real seconds, a backstop; the mock clock jumps while it waits
        return 0

    monkeypatch.setattr(persist, "save_layout", hung)
    _, saver = _one_node_saver(tmp_path, 1000.0)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(saver.run)
            stopped_at = anyio.current_time()
            tg.cancel_scope.cancel()  # shutdown: the saver saves once more, shielded
        waited = anyio.current_time() - stopped_at
    finally:
        release.set()
    assert waited == pytest.approx(persist.FINAL_SAVE_TIMEOUT_S)
    assert saver.saved_tick == -1  # not saved
    warnings = [m for level, m in log_lines if level == "WARNING"]
    assert len(warnings) == 1 and "did not finish within 5.0 s" in warnings[0]


async def test_the_save_at_shutdown_ends_with_the_grace_when_an_import_holds_the_store(
    tmp_path: Path, log_lines: list[tuple[str, str]]
) -> None:
    # A 150k-node import holds the store's lock for seconds: the last save waits for it only
    # until the end of the shutdown's grace (stop_by), not FINAL_SAVE_TIMEOUT_S beyond it.
    store, saver = _one_node_saver(tmp_path, 1000.0)
    store.lock.acquire()  # the import's
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(saver.run)
            stopped_at = anyio.current_time()
            saver.stop_by = stopped_at + 1.25
            tg.cancel_scope.cancel()
        waited = anyio.current_time() - stopped_at
    finally:
        store.lock.release()
    assert waited == pytest.approx(1.25)
    assert not (tmp_path / "layout.json").exists()
    warnings = [m for level, m in log_lines if level == "WARNING"]
    assert len(warnings) == 1 and "within 1.2 s (the rest of the shutdown's grace)" in warnings[0]


async def test_a_periodic_save_waiting_for_the_store_does_not_hold_the_shutdown(
    tmp_path: Path, log_lines: list[tuple[str, str]]
) -> None:
    # An import holds the store's lock as a periodic save begins: the stop must not wait for
    # that save's thread (it held a real stop 1.2 s past its grace), and the last save still
    # ends at stop_by. The holder lets go after 30 real seconds, so a regression fails, not hangs.
    store, saver = _one_node_saver(tmp_path, 1.0)
    attempts = Attempts(saver)
    held, done = threading.Event(), threading.Event()

    def an_import() -> None:
        with store.lock:
            held.set()
            done.wait(30)

    holder = threading.Thread(target=an_import, daemon=True)
    holder.start()
    held.wait(30)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(saver.run)
            while not attempts.times:  # the first periodic save begins at 1.0
                await anyio.sleep(0.5)
            await anyio.to_thread.run_sync(time.sleep, 0.2)  # its thread blocks on the lock
            assert len(attempts.times) == 1 and not attempts.results
            stopped_at = anyio.current_time()
            saver.stop_by = stopped_at + 2.0
            tg.cancel_scope.cancel()
        waited = anyio.current_time() - stopped_at
        assert not done.is_set() and holder.is_alive(), "the stop waited for the import"
    finally:
        done.set()
    assert waited == pytest.approx(2.0)
    warnings = [m for level, m in log_lines if level == "WARNING"]
    assert len(warnings) == 1 and "the rest of the shutdown's grace" in warnings[0]
