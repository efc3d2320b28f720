"""Request bodies arrive at a useful pace, and a few at a time.

1100 connections dripping a byte a second into ``POST /api/graph/import`` used to hold 1100
descriptors and tasks for ever. Now a body must keep an average of ``MIN_RATE`` bytes a second
after a ``GRACE_S`` start (else 408), and at most ``PER_CLIENT`` bodies per client address and
``TOTAL`` in all are read at once (else 503 with ``Retry-After``). Event-loop only: plain
counters, no lock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

GRACE_S = 10.0  # seconds any body gets before its rate counts
MIN_RATE = 64 * 1024  # bytes per second a body must average after that (a slow link does 1 MB/s)
PER_CLIENT = 4  # bodies read at once from one client address
TOTAL = 32  # bodies read at once in all
RETRY_AFTER_S = 1


class UploadSlots:
    """Counts the bodies being read, per client address and in all."""

    def __init__(self, per_client: int | None = None, total: int | None = None) -> None:
        self.per_client = PER_CLIENT if per_client is None else per_client
        self.total = TOTAL if total is None else total
        self._by_client: Counter[str] = Counter()
        self._open = 0

    @contextmanager
    def slot(self, client: str) -> Iterator[bool]:
        """Yields whether a body from ``client`` may be read now; frees the slot after."""
        if self._open >= self.total or self._by_client[client] >= self.per_client:
            yield False
            return
        self._open += 1
        self._by_client[client] += 1
        try:
            yield True
        finally:
            self._open -= 1
            self._by_client[client] -= 1
            if self._by_client[client] <= 0:
                del self._by_client[client]


def deadline_for(received: int) -> float:
    """Seconds after the start by which ``received`` bytes must have arrived (see above)."""
    return GRACE_S + received / MIN_RATE
