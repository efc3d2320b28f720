"""State files are read only when they are regular files of a sane size; deep TOML is refused;
temp files of an interrupted save are removed at start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from loguru import logger

from visionflow import settings as s
from visionflow.errors import ConfigError
from visionflow.fileio import read_bounded, remove_orphans, write_atomic
from visionflow.graph.store import GraphStore
from visionflow.live_settings import OVERRIDES_FILE, LiveSettings
from visionflow.state import graph_path, layout_path, restore


def test_read_bounded_refuses_what_is_not_a_regular_small_file(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * 100)
    assert read_bounded(f, 100) == b"x" * 100
    with pytest.raises(OSError, match="over the limit of 99"):
        read_bounded(f, 99)
    with pytest.raises(OSError, match="not a regular file"):
        read_bounded(Path("/dev/zero"), 1 << 20)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):  # and it did not block
        read_bounded(fifo, 100)
    with pytest.raises(FileNotFoundError):
        read_bounded(tmp_path / "missing", 100)


def test_restore_survives_devzero_a_fifo_and_leftover_temp_files(tmp_path: Path) -> None:
    layout_path(str(tmp_path)).parent.mkdir(parents=True, exist_ok=True)
    layout_path(str(tmp_path)).symlink_to("/dev/zero")
    os.mkfifo(graph_path(str(tmp_path)))
    junk = tmp_path / ".layout.json.abc123.tmp"
    junk.write_bytes(b"\0" * 4096)
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO")
    try:
        store = GraphStore()
        restore(store, str(tmp_path))
    finally:
        logger.remove(sink)
    assert len(store) == 0
    assert not junk.exists()
    assert any("removed 1 temp file(s) (4096 bytes)" in line for line in lines)
    assert any("not a regular file" in line for line in lines), lines


def test_remove_orphans_keeps_real_files(tmp_path: Path) -> None:
    write_atomic(tmp_path / "layout.json", b"{}")
    (tmp_path / ".graph.json.x.tmp").write_bytes(b"12")
    assert remove_orphans(tmp_path) == (1, 2)
    assert (tmp_path / "layout.json").read_bytes() == b"{}"


def test_deeply_nested_toml_is_a_clear_error_not_a_crash(tmp_path: Path) -> None:
    deep = "x = " + "[" * 5000 + "]" * 5000 + "\n"
    f = tmp_path / "s.toml"
    f.write_text(deep)
    with pytest.raises(ConfigError, match="nested too deeply"):
        s.load(f, environ={})
    (tmp_path / OVERRIDES_FILE).write_text(deep)
    live = LiveSettings(s.to_dict(s.Settings()), tmp_path)
    live.load_overrides()  # reported and ignored
    assert live.current == s.Settings()
    # an environment value that deep is taken as a string, then refused by validation
    with pytest.raises(ConfigError):
        s.load(None, environ={"VISIONFLOW__SERVER__PORT": "[" * 5000})
