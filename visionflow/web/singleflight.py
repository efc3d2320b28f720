"""One costly response at a time, shared by the requests that want the same one; and one
import at a time, a bounded number waiting (:class:`OneAtATime`).

``GET /api/graph/export`` of a large graph is seconds of Python work in a worker thread, and
every such thread competes with the event loop for the GIL: two clients exporting in a loop
kept ``/healthz`` waiting hundreds of milliseconds. Through a :class:`SingleFlight` at most one
runs at a time, and a request for the state being exported right now waits for that run and
gets the same bytes. Nothing is kept after the last waiter has them (no cache to bound).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio


@dataclass
class _Flight:
    key: Hashable
    done: anyio.Event = field(default_factory=anyio.Event)
    data: bytes | None = None  # None when done: the run failed or was cancelled


class SingleFlight:
    """Runs ``compute`` in a worker thread, one at a time, sharing a run between same keys."""

    def __init__(self) -> None:
        self._lock: anyio.Lock | None = None  # made on first use, inside the event loop
        self._flight: _Flight | None = None

    async def run(self, key: Hashable, compute: Callable[[], bytes]) -> bytes:
        while True:
            flight = self._flight
            if flight is not None and flight.key == key:
                await flight.done.wait()
                if flight.data is not None:
                    return flight.data
                continue  # that run failed: try our own
            if self._lock is None:
                self._lock = anyio.Lock()
            async with self._lock:
                flight = _Flight(key)
                self._flight = flight
                try:
                    flight.data = await anyio.to_thread.run_sync(compute)
                    return flight.data
                finally:
                    self._flight = None
                    flight.done.set()


class OneAtATime:
    """One import at a time, the next ones waiting their turn in order, a bounded number of them.

    For imports: decoding a document takes about ten times its size in Python objects (a 63 MiB
    body of small nodes: ~600 MB), so four admitted at once reached 2.8 GB; one at a time keeps
    the peak to one parse plus the bodies waiting. Those are bounded twice: while received, by
    ``web/uploads.py``; once received, by ``max_waiting`` (``server.max_queued_imports``): a
    request that would be one more waiter is refused at once (503) instead of holding its body
    for an unbounded time. Event-loop only: plain counters, no lock around them.
    """

    def __init__(self) -> None:
        self._lock: anyio.Lock | None = None  # made on first use, inside the event loop
        self.admitted = 0  # the one running (if any) and those waiting

    def full(self, max_waiting: int) -> bool:
        """Whether one more would be refused now (one runs and ``max_waiting`` wait)."""
        return self.admitted >= 1 + max_waiting

    @asynccontextmanager
    async def turn(self, max_waiting: int) -> AsyncIterator[bool]:
        """Wait for this one's turn and yield True for its run; yield False at once when
        :meth:`full`. Turns go in arrival order (anyio's lock is fair)."""
        if self.full(max_waiting):
            yield False
            return
        if self._lock is None:
            self._lock = anyio.Lock()
        self.admitted += 1
        try:
            async with self._lock:
                yield True
        finally:
            self.admitted -= 1
