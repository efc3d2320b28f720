"""LiveSettings.patch under trio's MockClock: the shielded overrides write is time-bounded.

A write that works is covered by tests/integration/test_settings_api.py (the mock clock would
jump past the bound while a real write runs in its thread).
"""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest
from loguru import logger
from support.clock import anyio_backend  # noqa: F401  (every test here runs on trio's MockClock)

from visionflow import live_settings
from visionflow import settings as s
from visionflow.live_settings import LiveSettings

pytestmark = pytest.mark.anyio


async def test_a_write_that_hangs_is_given_up_and_nothing_is_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = LiveSettings.from_settings(s.validate({"state": {"dir": str(tmp_path)}}))
    release = threading.Event()
    monkeypatch.setattr(live, "_write", lambda overrides: release.wait(30))  # a hung disk
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="WARNING")
    before = live.current
    started = anyio.current_time()
    try:
        with pytest.raises(TimeoutError) as info:
            await live.patch({"physics": {"rate_hz": 30}})
    finally:
        release.set()
        logger.remove(sink)
    assert anyio.current_time() - started == pytest.approx(live_settings.WRITE_TIMEOUT_S)
    assert info.value.strerror == "no answer within 10 s"  # the 503 says "cannot save ...: "
    assert live.current is before and live.revision == 0
    assert len(lines) == 1 and "the patch is not applied" in lines[0]
