from __future__ import annotations

import threading
import time

import anyio
import pytest

from visionflow.errors import WorkerBusyError
from visionflow.threads import DaemonWorker, run_abandonable, running

pytestmark = pytest.mark.anyio


async def test_returns_the_result() -> None:
    assert await run_abandonable(lambda: 41 + 1, name="t") == 42


async def test_raises_the_exception() -> None:
    def boom() -> None:
        raise ValueError("nope")

    with pytest.raises(ValueError, match="nope"):
        await run_abandonable(boom, name="t")


async def test_cancel_does_not_wait_and_the_thread_is_a_daemon() -> None:
    release = threading.Event()
    seen: list[threading.Thread] = []

    def slow() -> None:
        seen.append(threading.current_thread())
        release.wait(10)

    began = time.monotonic()
    with anyio.move_on_after(0.1):
        await run_abandonable(slow, name="slow")
    assert time.monotonic() - began < 2
    assert seen and seen[0].daemon and seen[0].is_alive()
    release.set()
    # The thread hands its result to the (running) event loop before it ends: join off-loop.
    await anyio.to_thread.run_sync(seen[0].join, 5)
    assert not seen[0].is_alive()


async def test_a_daemon_worker_runs_calls_in_order_on_one_daemon_thread() -> None:
    worker = DaemonWorker("w")
    threads = [await worker.run(threading.current_thread) for _ in range(3)]
    assert len({t.ident for t in threads}) == 1
    assert threads[0].daemon and threads[0].name == "w"
    assert threads[0] is not threading.current_thread()
    with pytest.raises(ValueError, match="nope"):
        await worker.run(lambda: int("nope"))
    assert await worker.run(lambda: 7) == 7  # an exception does not end the thread


async def test_an_abandoned_call_finishes_before_the_next_and_the_backlog_is_bounded() -> None:
    worker = DaemonWorker("w")
    release = threading.Event()
    order: list[str] = []

    def slow() -> None:
        order.append("slow begins")
        release.wait(10)
        order.append("slow ends")

    with anyio.move_on_after(0.1):
        await worker.run(slow)  # abandoned: still running
    assert order == ["slow begins"]
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run, lambda: order.append("next"))  # waits behind it
        await anyio.sleep(0.1)
        with pytest.raises(WorkerBusyError, match="w thread is still busy"):
            await worker.run(lambda: order.append("refused"))
        release.set()
    assert order == ["slow begins", "slow ends", "next"]


async def test_running_names_the_calls_not_yet_returned_abandoned_or_not() -> None:
    # names of their own: other tests' abandoned calls may still be running in this process
    release = threading.Event()
    worker = DaemonWorker("test worker")
    with anyio.move_on_after(0.1):
        await run_abandonable(lambda: release.wait(10), name="test call")
    with anyio.move_on_after(0.1):
        await worker.run(lambda: release.wait(10))
    assert {"test call", "test worker"} <= set(running())
    release.set()
    await worker.run(lambda: None)  # after the abandoned one
    with anyio.fail_after(10):
        while {"test call", "test worker"} & set(running()):
            await anyio.sleep(0.01)
