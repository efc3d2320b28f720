"""Accept errors (out of descriptors, out of memory) logged once per burst, not per attempt.

When the process runs out of file descriptors, every accept fails until some close: asyncio
reports each failure through the loop's exception handler and trio's ``serve_listeners`` logs
each retry (every 100 ms) with a traceback. 1100 slow clients once filled the log with 52 MB of
these in 25 s. Here the first failure of a burst is one warning line, later ones are counted
and summed up at most once a minute, and no traceback is written: the cause is the load, not a
bug, and `/healthz` says whether the service still answers.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable

from loguru import logger

log = logger.bind(subsystem="http")

#: Seconds between two lines about the same burst of accept failures.
REPORT_EVERY_S = 60.0


class AcceptErrors:
    """Counts accept failures and logs them at most once per ``REPORT_EVERY_S``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_report: float | None = None
        self._unreported = 0

    def note(self, reason: str) -> None:
        now = self._clock()
        self._unreported += 1
        if self._last_report is not None and now - self._last_report < REPORT_EVERY_S:
            return
        count, self._unreported = self._unreported, 0
        self._last_report = now
        more = "" if count == 1 else f" ({count} failed accepts since the last report)"
        log.warning(
            "cannot accept connections: {}{}; new connections wait until some close "
            "(raise the descriptor limit, ulimit -n, or lower websocket.max_connections)",
            reason,
            more,
        )


class TrioAcceptFilter(logging.Filter):
    """Stands in for trio's per-retry accept error (logger ``trio.serve_listeners``)."""

    def __init__(self, errors: AcceptErrors) -> None:
        super().__init__()
        self.errors = errors

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("accept returned"):
            self.errors.note(record.getMessage().split(";")[0].removeprefix("accept returned "))
            return False
        return True


def is_asyncio_accept_error(context: dict[str, object]) -> bool:
    """Whether an asyncio exception-handler context is the loop's failed ``accept()``."""
    return str(context.get("message", "")).startswith("socket.accept() out of system resource")


def is_asyncio_stale_accept_retry(context: dict[str, object]) -> bool:
    """Whether the context is an accept retry that found its listener closed.

    After each failed accept asyncio schedules ``_start_serving`` a second later (up to 100 of
    them per wake-up: CPython 3.11-3.13 go on looping after EMFILE). A server closed in that
    second leaves them to run on a closed socket, and each reported "Exception in callback
    BaseSelectorEventLoop._start_serving" with a traceback: 100 tracebacks in the log of a
    service stopped while out of descriptors. The listener is gone, so there is nothing to
    retry; anything else about ``_start_serving`` is still reported.
    """
    exc = context.get("exception")
    if "._start_serving(" not in str(context.get("message", "")):
        return False
    if isinstance(exc, ValueError):  # fileno() -1: "Invalid file descriptor: -1"
        return "file descriptor" in str(exc)
    return isinstance(exc, OSError) and exc.errno == errno.EBADF
