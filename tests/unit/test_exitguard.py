"""The program's backstop at the end of the shutdown's grace (visionflow/exitguard.py)."""

from __future__ import annotations

import subprocess
import sys
import time

from visionflow import exitguard

# A process whose stop hangs: the main thread never returns (as a starved event loop would not).
_HANGS = """
import time
from visionflow import exitguard, threads
{enable}
exitguard.arm(0.3)
time.sleep(60)
"""


def test_not_armed_unless_the_program_enabled_it() -> None:
    # a test process that runs the service must never be ended by it
    assert exitguard.arm(0.01) is None


def test_a_stop_that_outlasts_the_grace_ends_the_process_with_0_and_says_so() -> None:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _HANGS.format(enable="exitguard.enable()")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "the shutdown outlasted its 0.3 s grace: exiting now" in done.stderr
    assert time.monotonic() - began < 50  # not the 60 s the main thread sleeps


def test_without_enable_the_hang_runs_its_course() -> None:
    script = _HANGS.format(enable="").replace("time.sleep(60)", "time.sleep(2)")
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "outlasted" not in done.stderr
    assert time.monotonic() - began >= 2
