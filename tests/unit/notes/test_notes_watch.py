"""The vault watcher's batching and its life under the supervisor, on trio's MockClock with a
fake change source: the timings are exact and cost no real time."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import TypeVar

import anyio
import pytest
from support.clock import anyio_backend  # noqa: F401  (every test here runs on trio's MockClock)

from visionflow.notes.parse import NoteError
from visionflow.notes.watch import Batch, ChangeBatcher, VaultWatcher
from visionflow.supervisor import HealthRegistry, RestartPolicy, Supervisor

pytestmark = pytest.mark.anyio

T = TypeVar("T")
TOP = "/vault"


async def direct(func: Callable[[], T]) -> T:
    """Blocking calls run inline: a worker thread would let the mock clock jump meanwhile."""
    return func()


class Source:
    """The first time it is opened, yields ``script``'s paths at its times (seconds from then)
    and fails at ``fail_at`` if given; then, and on later openings at once, waits to be
    stopped as awatch does (its thread only returns once the stop event is set: a cancelled
    watch whose event nobody sets hangs here)."""

    def __init__(self, script: list[tuple[float, list[str] | None]], fail_at: float | None = None):
        self.script = script
        self.fail_at = fail_at
        self.opened: list[float] = []
        self.stopped = 0

    async def __call__(self, top: str, stop: anyio.Event) -> AsyncGenerator[set[str] | None, None]:
        t0 = anyio.current_time()
        self.opened.append(t0)
        try:
            for at, paths in self.script if len(self.opened) == 1 else ():
                await anyio.sleep(max(0.0, t0 + at - anyio.current_time()))
                yield None if paths is None else set(paths)
            if self.fail_at is not None and len(self.opened) == 1:
                await anyio.sleep(max(0.0, t0 + self.fail_at - anyio.current_time()))
                raise NoteError(top, "cannot watch the vault folder: watch limit reached")
            with anyio.CancelScope(shield=True):
                await stop.wait()
        finally:
            self.stopped += stop.is_set()


class Vault:
    def __init__(self) -> None:
        self.there = True
        self.checks = 0

    def locate(self) -> str:
        if not self.there:
            raise NoteError(TOP, "the vault folder does not exist")
        return TOP

    def check_top(self) -> str:
        self.checks += 1
        return self.locate()

    def present(self) -> bool:
        return self.there


class Applied:
    """The watcher's ``apply``: records each batch with its time; takes ``cost`` seconds."""

    def __init__(self, vault: Vault, cost: float = 0.0) -> None:
        self.vault = vault
        self.cost = cost
        self.batches: list[tuple[float, Batch]] = []

    async def __call__(self, batch: Batch) -> None:
        self.batches.append((round(anyio.current_time(), 6), batch))
        await anyio.sleep(self.cost)
        if not self.vault.there:
            raise NoteError(TOP, "the vault folder is gone")

    def paths(self) -> list[set[str]]:
        return [set(b.paths) for _, b in self.batches if not b.everything]


def watcher(source: Source, applied: Applied, **kw: float) -> VaultWatcher:
    registry = HealthRegistry("t")
    return VaultWatcher(
        applied.vault, registry.register("notes"), applied, source=source, run_sync=direct, **kw
    )


# -- the batcher alone --------------------------------------------------------------------------


async def test_one_change_is_a_batch_once_the_folder_was_quiet() -> None:
    batcher = ChangeBatcher(quiet=0.2, max_wait=2.0)
    await anyio.sleep(1.0)
    batcher.add(["/vault/a.md"])
    batch = await batcher.next_batch()
    assert anyio.current_time() == pytest.approx(1.2)
    assert batch == Batch(frozenset({"/vault/a.md"}))


async def test_a_burst_is_one_batch_and_a_stream_one_every_max_wait() -> None:
    batcher = ChangeBatcher(quiet=0.2, max_wait=2.0)
    taken: list[tuple[float, int]] = []

    async def stream(n: int, every: float) -> None:
        for i in range(n):
            batcher.add([f"/vault/{i}.md"])
            await anyio.sleep(every)

    async with anyio.create_task_group() as tg:
        tg.start_soon(stream, 200, 0.005)  # a git pull: 200 files in one second
        for _ in range(1):
            batch = await batcher.next_batch()
            taken.append((anyio.current_time(), len(batch.paths)))
    assert taken == [(pytest.approx(0.995 + 0.2), 200)]
    t0 = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(stream, 100, 0.05)  # a steady stream: 5 s
        while sum(n for _, n in taken) < 300:
            batch = await batcher.next_batch()
            taken.append((anyio.current_time() - t0, len(batch.paths)))
    # one batch every max_wait, the rest once the stream stops
    # (each batch's wait starts at its first change: 0, 2.05, 4.1)
    assert [round(t, 2) for t, _ in taken[1:]] == [2.0, 4.05, 5.15]


async def test_changes_while_a_batch_is_applied_wait_for_the_next() -> None:
    batcher = ChangeBatcher(quiet=0.2, max_wait=2.0)
    batcher.add(["/vault/a.md"])
    first = await batcher.next_batch()
    batcher.add(["/vault/b.md"])  # meanwhile
    await anyio.sleep(3.0)  # a long apply
    batcher.add(["/vault/c.md"])
    second = await batcher.next_batch()
    assert first.paths == {"/vault/a.md"} and second.paths == {"/vault/b.md", "/vault/c.md"}
    # (waited long enough already: max_wait after b)
    assert anyio.current_time() == pytest.approx(0.2 + 3.0)


async def test_more_paths_than_max_pending_become_a_read_of_everything() -> None:
    batcher = ChangeBatcher(quiet=0.2, max_wait=2.0, max_pending=10)
    batcher.add(f"/vault/{i}.md" for i in range(11))
    batcher.add(["/vault/more.md"])
    assert await batcher.next_batch() == Batch(frozenset(), everything=True)
    batcher.add([])  # nothing: no batch
    with anyio.move_on_after(10):
        await batcher.next_batch()
        pytest.fail("an empty add made a batch")


async def test_a_cancelled_wait_loses_nothing() -> None:
    batcher = ChangeBatcher(quiet=0.2, max_wait=2.0)
    batcher.add(["/vault/a.md"])
    with anyio.move_on_after(0.1):
        await batcher.next_batch()
    assert (await batcher.next_batch()).paths == {"/vault/a.md"}


# -- the watcher ---------------------------------------------------------------------------------


async def watched_for(seconds: float, source: Source) -> Applied:
    """A watcher of ``source`` (quiet 0.2 s, max_wait 2 s) run for ``seconds``; its batches."""
    applied = Applied(Vault())
    w = watcher(source, applied, quiet=0.2, max_wait=2.0)
    async with anyio.create_task_group() as tg:
        await tg.start(w.run)
        await anyio.sleep(seconds)
        tg.cancel_scope.cancel()
    return applied


async def test_the_watcher_catches_up_first_then_applies_batches() -> None:
    source = Source(
        [(1.0, ["/vault/a.md"]), (1.1, ["/vault/a.md", "/vault/b.md"]), (5.0, ["/vault/c.md"])]
    )
    applied = await watched_for(10, source)
    assert [(t, b.everything) for t, b in applied.batches] == [
        (0.2, True),  # what changed while nothing watched (opened at 0)
        (1.3, False),
        (5.2, False),
    ]
    assert applied.paths() == [{"/vault/a.md", "/vault/b.md"}, {"/vault/c.md"}]
    assert source.opened == [0.0] and source.stopped == 1  # awatch's thread was told to stop


async def test_changes_the_source_lost_are_a_read_of_everything() -> None:
    """watch_folder yields None when watchfiles dropped a set of changes (a path that is not
    UTF-8): the next batch reads the whole vault, and the watch goes on."""
    source = Source([(1.0, ["/vault/a.md"]), (1.1, None), (5.0, ["/vault/c.md"])])
    applied = await watched_for(10, source)
    assert [(t, b.everything) for t, b in applied.batches] == [
        (0.2, True),
        (1.3, True),
        (5.2, False),
    ]
    assert applied.paths() == [{"/vault/c.md"}]
    assert source.opened == [0.0]  # the same watch went on


async def test_a_folder_gone_is_backoff_in_health_until_it_is_back() -> None:
    vault = Vault()
    source = Source([(1.0, ["/vault/a.md"])])
    applied = Applied(vault)
    w = watcher(source, applied, quiet=0.2, missing_poll=2.0)
    async with anyio.create_task_group() as tg:
        await tg.start(w.run)
        await anyio.sleep(0.5)
        vault.there = False  # deleted: the next batch finds out
        await anyio.sleep(1.0)
        assert w.health.state == "backoff"
        assert "gone; the graph keeps its notes" in (w.health.last_error or "")
        assert source.stopped == 1  # the dead watch was closed
        await anyio.sleep(3.0)
        vault.there = True
        await anyio.sleep(2.5)  # seen at the next poll, then read whole and watched again
        assert w.health.state == "running" and w.health.last_error is None
        tg.cancel_scope.cancel()
    assert [b.everything for _, b in applied.batches] == [True, False, True]
    assert len(source.opened) == 2


async def test_a_folder_moved_away_in_silence_is_found_by_the_periodic_check() -> None:
    vault = Vault()
    applied = Applied(vault)
    w = watcher(Source([]), applied, quiet=0.2, check_every=5.0)
    async with anyio.create_task_group() as tg:
        await tg.start(w.run)
        await anyio.sleep(6.0)
        assert vault.checks == 1  # 5 s of quiet after the catch-up
        vault.there = False
        await anyio.sleep(5.0)
        assert w.health.state == "backoff"
        tg.cancel_scope.cancel()


async def test_a_watch_that_fails_is_restarted_by_the_supervisor_with_backoff() -> None:
    registry = HealthRegistry("t")
    applied = Applied(Vault())
    source = Source([(0.5, ["/vault/a.md"])], fail_at=1.0)
    w = VaultWatcher(
        applied.vault, registry.register("notes"), applied, source=source, run_sync=direct
    )
    policy = RestartPolicy(initial=1.0, maximum=8.0, jitter=0.0, budget=3, window=60.0)
    async with anyio.create_task_group() as tg:
        sup = Supervisor(tg, registry, policy)
        await sup.start("notes", w.run)
        await anyio.sleep(1.5)
        notes = registry.subsystems["notes"]
        assert notes.state == "backoff" and notes.restarts == 1
        assert "watch limit reached" in (notes.last_error or "")
        assert registry.status() == "degraded"
        await anyio.sleep(1.0)  # 1 s of backoff: started again, caught up again
        assert notes.state == "running"
        assert source.opened == [0.0, 2.0]
        tg.cancel_scope.cancel()
    assert [(t, b.everything) for t, b in applied.batches] == [
        (0.2, True),
        (0.7, False),
        (2.2, True),  # caught up after the restart
    ]
