"""Request bodies arrive at a useful pace, and a few at a time.

1100 connections dripping a byte a second into ``POST /api/graph/import`` used to hold 1100
descriptors and tasks for ever. Now a body must keep an average of ``MIN_RATE`` bytes a second
after a ``GRACE_S`` start (else 408), and at most ``PER_CLIENT`` bodies per client address and
``TOTAL`` in all are read at once (else 503 with ``Retry-After``).

Memory: 16 concurrent 63 MiB imports took the process to 1.3-1.6 GB. The bodies being read
share a budget of ``BYTE_BUDGET`` bytes (or one ``server.max_request_bytes``, if larger: a single
body of the allowed size always fits); the body whose next chunk would pass it gets 503. Event-
loop only: plain counters, no lock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

GRACE_S = 10.0  # seconds any body gets before its rate counts
MIN_RATE = 64 * 1024  # bytes per second a body must average after that (a slow link does 1 MB/s)
PER_CLIENT = 4  # bodies read at once from one client address
TOTAL = 32  # bodies read at once in all
BYTE_BUDGET = 256 * 1024 * 1024  # bytes of bodies held at once, all uploads together
RETRY_AFTER_S = 1


class Upload:
    """One body being read: charges its size so far against the shared byte budget."""

    def __init__(self, slots: UploadSlots) -> None:
        self._slots = slots
        self.charged = 0

    def charge(self, received: int, limit: int) -> bool:
        """Record ``received`` bytes held for this body; False when that would pass the budget
        (``limit``: the largest body allowed, which always fits when it is alone)."""
        others = self._slots.held - self.charged
        if others + received > max(self._slots.byte_budget, limit):
            return False
        self._slots.held = others + received
        self.charged = received
        return True


class UploadSlots:
    """Counts the bodies being read, per client address and in all, and the bytes they hold."""

    def __init__(
        self,
        per_client: int | None = None,
        total: int | None = None,
        byte_budget: int | None = None,
    ) -> None:
        self.per_client = PER_CLIENT if per_client is None else per_client
        self.total = TOTAL if total is None else total
        self.byte_budget = BYTE_BUDGET if byte_budget is None else byte_budget
        self.held = 0  # bytes of the bodies being read
        self._by_client: Counter[str] = Counter()
        self._open = 0

    @contextmanager
    def slot(self, client: str) -> Iterator[Upload | None]:
        """Yields the upload if a body from ``client`` may be read now (else None); frees its
        slot and its bytes after."""
        if self._open >= self.total or self._by_client[client] >= self.per_client:
            yield None
            return
        self._open += 1
        self._by_client[client] += 1
        upload = Upload(self)
        try:
            yield upload
        finally:
            self.held -= upload.charged
            self._open -= 1
            self._by_client[client] -= 1
            if self._by_client[client] <= 0:
                del self._by_client[client]


def deadline_for(received: int) -> float:
    """Seconds after the start by which ``received`` bytes must have arrived (see above)."""
    return GRACE_S + received / MIN_RATE
