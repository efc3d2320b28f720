"""trio's MockClock for a whole test module: ``from support.clock import anyio_backend``.

Imported into a module, the fixture overrides the two-backend one of tests/conftest.py: every
async test there runs on trio only, on a fresh MockClock that jumps ahead as soon as all tasks
are blocked, so timers and backoff cost no real time.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio.testing


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
