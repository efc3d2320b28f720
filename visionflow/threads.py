"""Run blocking work in daemon threads that never hold up cancellation or process exit.

``anyio.to_thread.run_sync`` threads are not daemons on asyncio, and a cancelled caller waits
for its call to return: a SIGTERM that arrives during a cold numba compile or a 150k-node import
(tens of seconds) would keep the process alive until the work finishes, far past
``server.shutdown_grace``. Work started here is abandoned when the caller is cancelled, and the
interpreter exits without it.
"""

from __future__ import annotations

import collections
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import outcome

from visionflow.errors import WorkerBusyError

T = TypeVar("T")


# Calls running now, by name (a name can run more than once at a time): what an exit leaves.
_running: collections.Counter[str] = collections.Counter()
_running_lock = threading.Lock()


def running() -> list[str]:
    """The names of the calls started here that have not returned yet."""
    with _running_lock:
        return sorted(+_running)


def _job(
    func: Callable[[], T], name: str
) -> tuple[Callable[[], None], anyio.Event, list[outcome.Outcome[T]]]:
    """``func`` wrapped to hand its outcome back to the calling event loop, if it still runs."""
    token = anyio.lowlevel.current_token()
    done = anyio.Event()
    box: list[outcome.Outcome[T]] = []

    def job() -> None:
        with _running_lock:
            _running[name] += 1
        try:
            box.append(outcome.capture(func))
        finally:
            with _running_lock:
                _running[name] -= 1
        # RuntimeError: the event loop is gone, so nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            anyio.from_thread.run_sync(done.set, token=token)

    return job, done, box


async def run_abandonable(func: Callable[[], T], *, name: str) -> T:
    """``func()`` in a new daemon thread; a cancelled caller leaves it to finish alone."""
    job, done, box = _job(func, name)
    threading.Thread(target=job, name=name, daemon=True).start()
    await done.wait()
    return box[0].unwrap()


class DaemonWorker:
    """One daemon thread that runs blocking calls one after another, abandonable like
    :func:`run_abandonable`.

    For work that must never overlap and is best kept on one thread: the physics step (numba's
    parallel runtime keeps a team of threads per calling thread, and two steps at once would
    race on the same arrays). A call abandoned by a cancelled caller still finishes before the
    next one starts; one more may wait behind it, and a call beyond that raises
    :class:`WorkerBusyError` rather than queue without bound.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.Queue[Callable[[], None]] = queue.Queue(maxsize=1)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    async def run(self, func: Callable[[], T]) -> T:
        job, done, box = _job(func, self.name)
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            raise WorkerBusyError(
                f"the {self.name} thread is still busy with an abandoned call and one waiting"
            ) from None
        self._ensure_thread()
        await done.wait()
        return box[0].unwrap()

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        while True:
            self._jobs.get()()
