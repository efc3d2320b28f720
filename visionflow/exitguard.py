"""The program's backstop: a stop that outlasts ``server.shutdown_grace`` ends the process.

The shutdown is built to end within the grace (the listener drains for 0.75 of it, the last
layout save ends by 0.9, work in threads is abandoned), but on a starved machine the event loop
itself can be late: under two CPU burners a SIGTERM during an import ended 5.9 s after the
signal with a grace of 5 s. Orchestrators kill what overruns its stop timeout; this ends it
first, with exit code 0 and a log line saying so. Armed only by the ``visionflow`` program
(``cli.entry`` enables it), never inside a test process that calls the service.
"""

from __future__ import annotations

import os
import sys
import threading

from loguru import logger

from visionflow import threads

log = logger.bind(subsystem="main")

_enabled = False


def enable() -> None:
    """Let :func:`arm` end this process (the program's entry point calls it)."""
    global _enabled
    _enabled = True


def arm(seconds: float) -> threading.Timer | None:
    """End the process ``seconds`` from now unless it has ended by then; None when not enabled."""
    if not _enabled:
        return None
    timer = threading.Timer(seconds, _overrun, args=(seconds,))
    timer.daemon = True  # a process that ends in time does not wait for it
    timer.name = "shutdown deadline"
    timer.start()
    return timer


def _overrun(seconds: float) -> None:
    left = threads.running()
    log.warning(
        "the shutdown outlasted its {:g} s grace: exiting now{}",
        seconds,
        f", without waiting for: {', '.join(left)}" if left else "",
    )
    flush_and_exit(0)


def flush_and_exit(code: int) -> None:
    """Out with the logs, then end the process without the interpreter's finalisation."""
    logger.complete()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)
