"""Run blocking work in a daemon thread that never holds up cancellation or process exit.

``anyio.to_thread.run_sync`` threads are not daemons on asyncio: a SIGTERM that arrives during a
cold numba compile (tens of seconds) would keep the process alive until LLVM finishes. Work
started here is abandoned when the caller is cancelled, and the interpreter exits without it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import outcome

T = TypeVar("T")


async def run_abandonable(func: Callable[[], T], *, name: str) -> T:
    token = anyio.lowlevel.current_token()
    done = anyio.Event()
    box: list[outcome.Outcome[T]] = []

    def target() -> None:
        box.append(outcome.capture(func))
        # RuntimeError: the event loop is gone, so nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            anyio.from_thread.run_sync(done.set, token=token)

    threading.Thread(target=target, name=name, daemon=True).start()
    await done.wait()
    return box[0].unwrap()
