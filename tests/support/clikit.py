"""Running the ``visionflow`` command line as a child process, for end-to-end tests."""

from __future__ import annotations

import os
import sys


def cli(*args: str) -> list[str]:
    """The argv of ``visionflow ARGS`` with this interpreter (the venv the tests run in)."""
    return [sys.executable, "-m", "visionflow", *args]


def child_env(**extra: str) -> dict[str, str]:
    """This environment without ``VISIONFLOW__*`` overrides (a developer's would leak into the
    child's settings), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISIONFLOW__")}
    env.update(extra)
    return env
