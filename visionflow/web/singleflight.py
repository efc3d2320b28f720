"""One costly response at a time, shared by the requests that want the same one; and one
import at a time (:class:`OneAtATime`).

``GET /api/graph/export`` of a large graph is seconds of Python work in a worker thread, and
every such thread competes with the event loop for the GIL: two clients exporting in a loop
kept ``/healthz`` waiting hundreds of milliseconds. Through a :class:`SingleFlight` at most one
runs at a time, and a request for the state being exported right now waits for that run and
gets the same bytes. Nothing is kept after the last waiter has them (no cache to bound).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
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
    """An async lock made on first use (inside the event loop): ``async with gate: ...``.

    For imports: decoding a document takes about ten times its size in Python objects (a 63 MiB
    body of small nodes: ~600 MB), so four admitted at once reached 2.8 GB; one at a time keeps
    the peak to one parse plus the bodies waiting (``web/uploads.py`` bounds those).
    """

    def __init__(self) -> None:
        self._lock: anyio.Lock | None = None

    async def __aenter__(self) -> None:
        if self._lock is None:
            self._lock = anyio.Lock()
        await self._lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        assert self._lock is not None
        self._lock.release()
