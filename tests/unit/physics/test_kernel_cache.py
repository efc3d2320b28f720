"""Where numba's compiled kernels go when the usual places are not writable."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from visionflow.physics.kernel_cache import KernelCache, choose


@pytest.fixture
def blocker(tmp_path: Path) -> Path:
    """A regular file: nothing can be created under it, even by root."""
    path = tmp_path / "file"
    path.write_text("")
    return path


def test_writable_sources_are_numbas_own_choice(tmp_path: Path) -> None:
    assert choose({}, tmp_path) == KernelCache(True, None)


def test_a_writable_numba_cache_dir_is_used_as_given(tmp_path: Path, blocker: Path) -> None:
    assert choose({"NUMBA_CACHE_DIR": str(tmp_path / "c")}, blocker) == KernelCache(True, None)


def test_home_cache_is_used_quietly_for_a_read_only_install(tmp_path: Path, blocker: Path) -> None:
    got = choose({"HOME": str(tmp_path)}, blocker)
    assert got == KernelCache(True, str(tmp_path / ".cache" / "visionflow" / "numba"))


def test_falls_back_to_a_private_temp_dir_and_says_why(
    tmp_path: Path, blocker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    got = choose({"HOME": str(blocker / "home")}, blocker)
    temp = tmp_path / f"visionflow-numba-{os.getuid()}"
    assert got.enabled and got.directory == str(temp)
    assert got.note is not None and str(blocker / "home") in got.note and str(temp) in got.note
    assert temp.stat().st_mode & 0o777 == 0o700


def test_a_temp_dir_others_can_write_is_refused_and_nothing_is_cached(
    tmp_path: Path, blocker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    planted = tmp_path / f"visionflow-numba-{os.getuid()}"
    planted.mkdir()
    planted.chmod(0o777)  # numba loads pickled code from its cache: not from a shared dir
    got = choose({}, blocker)
    assert not got.enabled and got.directory is None
    assert got.note is not None and "not cached" in got.note and "NUMBA_CACHE_DIR" in got.note
