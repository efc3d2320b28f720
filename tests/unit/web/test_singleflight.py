"""SingleFlight: one run at a time, shared between requests for the same key, nothing kept."""

from __future__ import annotations

import threading

import anyio
import pytest

from visionflow.web.singleflight import OneAtATime, SingleFlight

pytestmark = pytest.mark.anyio


class Work:
    """A compute function that blocks (in its worker thread) until released, and counts."""

    def __init__(self, data: bytes = b"doc") -> None:
        self.data = data
        self.started = threading.Semaphore(0)
        self.release = threading.Event()
        self.runs = 0
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def __call__(self) -> bytes:
        with self._lock:
            self.runs += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        self.started.release()
        try:
            if not self.release.wait(30):
                raise TimeoutError("never released")
            return self.data
        finally:
            with self._lock:
                self.running -= 1


async def wait_started(work: Work) -> None:
    with anyio.fail_after(30):
        while not work.started.acquire(blocking=False):
            await anyio.sleep(0.005)


async def test_requests_for_the_same_key_share_one_run() -> None:
    flight, work = SingleFlight(), Work()
    results: list[bytes] = []

    async def ask() -> None:
        results.append(await flight.run(("v1", 7), work))

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask)
        await wait_started(work)
        for _ in range(3):
            tg.start_soon(ask)
        await anyio.sleep(0.05)  # they are waiting on the run, not starting their own
        work.release.set()
    assert results == [b"doc"] * 4 and work.runs == 1
    assert flight._flight is None  # nothing kept once answered


async def test_different_keys_run_one_at_a_time() -> None:
    flight, work = SingleFlight(), Work()
    async with anyio.create_task_group() as tg:
        for key in range(3):
            tg.start_soon(flight.run, key, work)
        await wait_started(work)
        await anyio.sleep(0.05)
        assert work.running == 1  # the others wait for the lock
        work.release.set()
    assert work.runs == 3 and work.most_at_once == 1


async def test_a_failed_run_lets_a_waiter_run_its_own() -> None:
    flight = SingleFlight()
    gate = threading.Event()
    calls: list[str] = []

    def failing() -> bytes:
        calls.append("failing")
        gate.wait(30)
        raise OSError("disk gone")

    def working() -> bytes:
        calls.append("working")
        return b"ok"

    got: list[bytes] = []

    async def first() -> None:
        with pytest.raises(OSError, match="disk gone"):
            await flight.run("k", failing)

    async def second() -> None:
        got.append(await flight.run("k", working))

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        with anyio.fail_after(30):
            while not calls:
                await anyio.sleep(0.005)
        tg.start_soon(second)
        await anyio.sleep(0.05)
        gate.set()
    assert got == [b"ok"] and calls == ["failing", "working"]


async def test_one_at_a_time_lets_one_in_and_the_next_after() -> None:
    gate = OneAtATime()
    inside = 0
    most = 0

    async def work() -> None:
        nonlocal inside, most
        async with gate.turn(max_waiting=10) as admitted:
            assert admitted
            inside += 1
            most = max(most, inside)
            await anyio.sleep(0.01)
            inside -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(work)
    assert most == 1 and inside == 0 and gate.admitted == 0


async def test_one_at_a_time_refuses_past_the_waiting_bound_and_keeps_arrival_order() -> None:
    gate = OneAtATime()
    release = anyio.Event()
    order: list[int] = []
    answers: dict[int, bool] = {}

    async def work(i: int) -> None:
        async with gate.turn(max_waiting=2) as admitted:
            answers[i] = admitted
            if admitted:
                order.append(i)
                if i == 0:
                    await release.wait()

    async with anyio.create_task_group() as tg:
        for i in range(5):  # 0 runs, 1 and 2 wait, 3 and 4 are refused at once
            tg.start_soon(work, i)
            await anyio.sleep(0.01)
        assert gate.full(2) and not gate.full(3)
        assert answers == {0: True, 3: False, 4: False}
        release.set()
    assert order == [0, 1, 2] and answers[1] and answers[2]
    assert gate.admitted == 0 and not gate.full(0)  # an idle gate takes one even with no queue


async def test_no_queue_means_one_at_a_time_and_the_rest_refused() -> None:
    gate = OneAtATime()
    async with gate.turn(max_waiting=0) as first:
        assert first and gate.full(0)
        async with gate.turn(max_waiting=0) as second:
            assert not second
    assert not gate.full(0)
