"""Who is using a state directory: ``state.dir/visionflow.lock``.

``visionflow serve`` holds an exclusive ``flock`` on this file for as long as it runs, and
writes into it its pid and, once ready, the URL it answers at. ``visionflow state backup`` and
``restore`` take the same lock while they read or write the state files, so that:

- ``state backup`` of a stopped service reads files nothing is writing; when the service holds
  the lock it asks the service instead, at the URL the file names (``GET /api/state/backup``);
- ``state restore`` never replaces the files under a running service (which would overwrite
  them with its own state at its next save) and says which process holds them;
- two services never share one state directory.

The kernel drops the lock when its holder exits, however it exits (SIGKILL included), so a
stale file is never mistaken for a live holder: what it says is read only when the lock is
taken. A state directory that cannot be locked at all (read-only, a file in its place) does not
stop the service: it starts without the lock, as it starts without saving (see ``take``).
Advisory, on a local file system (NFS may not pass ``flock`` on).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

import msgspec
from loguru import logger

from visionflow import jsonsafe
from visionflow.errors import StartupError, VisionflowError
from visionflow.fileio import make_folder

log = logger.bind(subsystem="state")

LOCK_FILE = "visionflow.lock"
_INFO_MAX = 4096


class Holder(msgspec.Struct, omit_defaults=True):
    """What the lock file says about the process holding it."""

    pid: int
    role: str  # "serve", "backup" or "restore"
    url: str | None = None  # serve, once it is ready


_HOLDER = msgspec.json.Decoder(Holder)


class StateDirBusyError(VisionflowError):
    """Another process holds the state directory; ``holder`` is what it wrote (None: unknown,
    e.g. caught between its lock and its write)."""

    def __init__(self, state_dir: str, holder: Holder | None) -> None:
        self.state_dir = state_dir
        self.holder = holder
        super().__init__(f"{state_dir} is in use by {describe(holder)}")


def describe(holder: Holder | None) -> str:
    if holder is None:
        return "another process"
    if holder.role == "serve":
        where = f" at {holder.url}" if holder.url else " (starting)"
        return f"a running VisionFlow service (pid {holder.pid}{where})"
    return f"'visionflow state {holder.role}' (pid {holder.pid})"


def lock_path(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / LOCK_FILE


@dataclass
class StateLock:
    """A held lock; ``release`` (or the process ending) lets it go."""

    path: Path
    fd: int
    holder: Holder

    @classmethod
    def take(cls, state_dir: str, role: str, *, create: bool = True) -> StateLock:
        """Blocking. Lock ``state_dir`` (made first when ``create``) without waiting.

        StateDirBusyError when another process holds it; FileNotFoundError when the directory
        does not exist and ``create`` is false; another OSError when it cannot be locked.
        """
        directory = Path(state_dir)
        if create:
            make_folder(directory)
        path = lock_path(directory)
        # no O_TRUNC: the holder's words stay readable until the lock is ours
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise StateDirBusyError(state_dir, _read_holder(fd)) from None
                raise
            give_to_owner(fd, directory.stat())
            lock = cls(path, fd, Holder(os.getpid(), role))
            lock._write()
        except BaseException:
            os.close(fd)
            raise
        return lock

    def announce(self, url: str) -> None:
        """Blocking (a small write). Say where the holder (a service) answers; a failed write
        is a warning (``state backup`` then says the service is starting, or takes --url)."""
        self.holder = Holder(self.holder.pid, self.holder.role, url)
        try:
            self._write()
        except OSError as exc:
            log.warning("cannot write {}: {}", self.path, exc.strerror or exc)

    def _write(self) -> None:
        data = msgspec.json.encode(self.holder) + b"\n"
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def release(self) -> None:
        if self.fd < 0:
            return
        fd, self.fd = self.fd, -1
        # nobody holds it now; the next holder writes its own words (a failure changes
        # nothing: closing drops the lock all the same)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)

    def __enter__(self) -> StateLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> Holder | None:
    try:
        data = os.pread(fd, _INFO_MAX, 0)
        return jsonsafe.decode(data, _HOLDER)
    except (OSError, msgspec.DecodeError):
        return None  # caught mid-write, or not ours: the message says "another process"


def hold_for_service(state_dir: str) -> StateLock | None:
    """Blocking, at the start of ``visionflow serve``: hold ``state_dir`` for this process.

    StartupError when another process holds it. None, with a warning, when it cannot be locked
    at all: the service then starts as it would without a writable ``state.dir``.
    """
    try:
        return StateLock.take(state_dir, "serve")
    except StateDirBusyError as exc:
        raise StartupError(
            f"state.dir {exc}: one state directory serves one process (stop that one, or give "
            "this one its own state.dir)"
        ) from None
    except OSError as exc:
        log.warning(
            "cannot lock {} ({}): 'visionflow state backup' and 'restore' cannot tell that this "
            "service uses it",
            lock_path(state_dir),
            exc.strerror or exc,
        )
        return None


def give_to_owner(target: int | Path, owner: os.stat_result) -> None:
    """Run as root (``sudo visionflow state restore``), make what we create the state
    directory's owner's, as the service made it: a file of root's, mode 0600, is one the
    service (``DynamicUser=``, say) cannot read. Elsewhere nothing to do (or allowed)."""
    if os.geteuid() != 0:
        return
    if isinstance(target, int):
        os.fchown(target, owner.st_uid, owner.st_gid)
    else:
        os.chown(target, owner.st_uid, owner.st_gid, follow_symlinks=False)
