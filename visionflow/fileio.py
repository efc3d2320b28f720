"""Durable file writes, and bounded reads, shared by everything kept under ``state.dir``."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

# A state file bigger than this is not read (layout.json and graph.json of the 2M-node maximum
# take a few hundred MB); a settings overrides file is a few keys.
STATE_FILE_MAX = 1 << 30
OVERRIDES_FILE_MAX = 1 << 20


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    FileNotFoundError when it is missing; any other OSError for what cannot be read, with a
    message saying why: not a regular file (a FIFO would block the start for ever, /dev/zero
    would never end), or larger than ``limit``.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens without waiting for a writer
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path} is not a regular file")
        if st.st_size > limit:
            raise OSError(f"{path} is {st.st_size} bytes, over the limit of {limit}")
        chunks = []
        total = 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # it grew while we read
                raise OSError(f"{path} is over the limit of {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def remove_orphans(directory: Path) -> tuple[int, int]:
    """Delete the temp files ``write_atomic`` leaves when the process is killed mid-write;
    (files, bytes) removed. Call at start-up, before anything writes there."""
    count = size = 0
    try:
        names = list(directory.glob(".*.tmp"))
    except OSError:
        return 0, 0
    for tmp in names:
        try:
            st = tmp.lstat()
            if stat.S_ISREG(st.st_mode):
                tmp.unlink()
                count += 1
                size += st.st_size
        except OSError:
            continue
    return count, size


_FILE_IN_THE_WAY = "a file stands where this folder (or one above it) should be"


def make_folder(path: Path) -> None:
    """``path`` and the folders above it, made where missing. A file where one of them should
    be is NotADirectoryError saying so: mkdir's own "File exists" reads as if all were well."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # at the folder itself, or above it
        raise NotADirectoryError(errno.ENOTDIR, _FILE_IN_THE_WAY, str(path)) from None


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via temp file + fsync + rename (+ directory fsync)."""
    make_folder(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    replaced = False
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        replaced = True
    finally:
        if not replaced:  # a failed write leaves the old file and no temp file behind
            Path(tmp).unlink(missing_ok=True)
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open directories; the rename is still atomic
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
