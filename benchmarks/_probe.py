"""``python _probe.py OUT serve --config ...``: the ``visionflow`` command line, unchanged, in a
process that also writes its live asyncio task and thread counts to ``OUT`` (a JSON line every
``PROBE_S`` seconds) for the soak benchmark.

Why a wrapper: the service exports threads (``visionflow_threads``) but not its task count, and
a running CPython 3.11 cannot be asked from outside (``python -m asyncio ps`` is 3.14). The
count is read from another thread: asyncio keeps every task in ``asyncio.tasks._all_tasks``
(a ``WeakSet``; ``asyncio.all_tasks`` reads the same set, but only for the calling thread's
loop). Not ``gc.get_objects()``: after a large import the service moves what is alive out of
the collector (``gc.freeze``), and frozen objects are not listed. A task is counted while it is
not done. trio keeps its tasks to itself: under ``--backend trio`` the count is null.

For a look at a stuck process: SIGUSR1 makes it write every thread's stack to its log
(``faulthandler``; no service code involved).
"""

from __future__ import annotations

import asyncio.tasks
import faulthandler
import json
import signal
import sys
import threading
import time

from visionflow.cli import main

PROBE_S = 2.0


def live_tasks() -> int:
    for _ in range(10):  # the loop's thread may add a task while this one iterates
        try:
            return sum(not task.done() for task in list(asyncio.tasks._all_tasks))  # type: ignore[attr-defined]
        except RuntimeError:
            continue
    return -1


def sample(out: str, trio: bool) -> None:
    with open(out, "a", encoding="utf-8") as f:
        while True:
            tasks = None if trio else live_tasks()
            f.write(
                json.dumps({"t": time.time(), "tasks": tasks, "threads": threading.active_count()})
                + "\n"
            )
            f.flush()
            time.sleep(PROBE_S)


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    argv = sys.argv[2:]
    trio = "trio" in argv[argv.index("--backend") + 1 :][:1] if "--backend" in argv else False
    threading.Thread(target=sample, args=(sys.argv[1], trio), name="probe", daemon=True).start()
    sys.exit(main(argv))
