from __future__ import annotations

import threading
import time

import anyio
import pytest

from visionflow.threads import run_abandonable

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
