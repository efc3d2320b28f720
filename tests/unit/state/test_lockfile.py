"""state.dir's lock: one holder at a time, what it says about itself, freed when it dies."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from visionflow.errors import StartupError
from visionflow.state.lockfile import (
    Holder,
    StateDirBusyError,
    StateLock,
    hold_for_service,
    lock_path,
)


def test_one_holder_at_a_time_and_what_it_says(tmp_path: Path) -> None:
    d = str(tmp_path / "state")
    with StateLock.take(d, "serve") as lock:
        with pytest.raises(StateDirBusyError) as busy:
            StateLock.take(d, "restore")
        assert busy.value.holder == Holder(os.getpid(), "serve")
        assert "(starting)" in str(busy.value)
        lock.announce("http://127.0.0.1:4321")
        with pytest.raises(StateDirBusyError, match=re.escape("at http://127.0.0.1:4321")):
            StateLock.take(d, "backup")
    with StateLock.take(d, "backup"):  # released: free again
        pass
    assert lock_path(d).read_bytes() == b""  # nobody's words left behind


def test_a_missing_dir_is_made_only_when_asked(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        StateLock.take(str(tmp_path / "nope"), "backup", create=False)
    assert not (tmp_path / "nope").exists()


def test_a_killed_holder_frees_it(tmp_path: Path) -> None:
    d = str(tmp_path)
    code = (
        "import sys, time; from visionflow.state.lockfile import StateLock; "
        f"lock = StateLock.take({d!r}, 'serve'); print('held', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"held\n"
        with pytest.raises(StateDirBusyError) as busy:
            StateLock.take(d, "restore")
        assert busy.value.holder is not None and busy.value.holder.pid == child.pid
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    deadline = time.monotonic() + 10
    while True:  # the kernel drops a dead process's flock at once; allow for a slow reap
        try:
            StateLock.take(d, "restore").release()
            break
        except StateDirBusyError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_a_foreign_lock_file_is_another_process(tmp_path: Path) -> None:
    lock_path(tmp_path).write_bytes(b"\x00garbage")
    with StateLock.take(str(tmp_path), "serve"):
        with pytest.raises(StateDirBusyError, match="in use by another process") as busy:
            # what a holder caught between its lock and its write looks like
            os.truncate(lock_path(tmp_path), 0)
            StateLock.take(str(tmp_path), "backup")
        assert busy.value.holder is None


def test_the_service_start(tmp_path: Path) -> None:
    d = str(tmp_path / "state")
    lock = hold_for_service(d)
    assert lock is not None
    try:
        with pytest.raises(StartupError, match="one state directory serves one process"):
            hold_for_service(d)
    finally:
        lock.release()
    # a file where the directory should be: a warning, and the service starts without a lock
    (tmp_path / "file").write_text("x")
    assert hold_for_service(str(tmp_path / "file")) is None


def test_a_file_where_the_state_folder_should_be_is_named_as_such(tmp_path: Path) -> None:
    """mkdir says "File exists" there, which read as if all were well."""
    from visionflow.fileio import write_atomic

    (tmp_path / "state").write_text("x")
    with pytest.raises(NotADirectoryError) as caught:
        StateLock.take(str(tmp_path / "state" / "deeper"), "serve")
    assert caught.value.strerror == "a file stands where this folder (or one above it) should be"
    assert caught.value.filename == str(tmp_path / "state" / "deeper")
    with pytest.raises(NotADirectoryError, match="a file stands where"):
        write_atomic(tmp_path / "state" / "layout.json", b"{}")
    assert (tmp_path / "state").read_text() == "x"
