"""LiveSettings.patch on a real clock (the write runs in a thread: under trio's MockClock the
clock would jump past its bound while it runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionflow import settings as s
from visionflow.live_settings import LiveSettings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_a_patch_that_changes_nothing_is_not_saved_nor_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = LiveSettings.from_settings(s.validate({"state": {"dir": str(tmp_path)}}))
    writes: list[object] = []
    monkeypatch.setattr(live, "_write", writes.append)  # instant: no thread, no real time
    told: list[object] = []
    live.subscribe(told.append)
    await live.patch({"physics": {"rate_hz": 30}})
    assert (live.revision, len(writes), len(told)) == (1, 1, 1)
    # {} and empty sections used to bump the revision, rewrite the file and tell every viewer
    for same in ({}, {"log": {}}, {"physics": {}}, {"physics": {"rate_hz": 30}}):
        assert await live.patch(same) is live.current
    assert (live.revision, len(writes), len(told)) == (1, 1, 1)
    await live.patch({"physics": {"rate_hz": 20}})
    assert (live.revision, len(writes), len(told)) == (2, 2, 2)
