"""The example vault that ships with the package: a few dozen linked notes about VisionFlow.

A first ``visionflow serve`` with no ``knowledge.path`` and no imported graph shows it, so there
is a graph to look at before anything is configured; ``knowledge.path = "none"`` turns it off.
It is read like any vault but not watched (the package's files do not change while it runs).
"""

from __future__ import annotations

from pathlib import Path

#: The folder of the example vault, inside the installed package.
EXAMPLE_VAULT = Path(__file__).with_name("example")

#: ``knowledge.path`` value that means "no vault, not even the example".
NO_VAULT = "none"
