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


def enabled() -> bool:
    """Whether this is the ``visionflow`` program (not a test process calling the service)."""
    return _enabled


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
    log.warning(
        "the shutdown outlasted its {:g} s grace: exiting now{}", seconds, _left(threads.running())
    )
    flush_and_exit(0)


def exit_if_threads_left(code: int) -> None:
    """After a stop that abandoned work in daemon threads (``threads.running()``): say what, and
    end the process with ``code`` now. Python's own exit would still wait for each of those
    threads to give up the GIL, and a large import's parse holds it a second or more at a time
    on a busy machine (a SIGTERM during a 150k-node import ended 1-1.7 s after ``stopped``).
    Returns when nothing was left."""
    left = threads.running()
    if left:
        log.info("exiting{}", _left(left))
        flush_and_exit(code)


def _left(names: list[str]) -> str:
    return f" without waiting for: {', '.join(names)}" if names else ""


def flush_and_exit(code: int) -> None:
    """Out with the logs, then end the process without the interpreter's finalisation."""
    logger.complete()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)
