"""Watching the vault folder: what changes on disk reaches the graph, in batches.

:class:`VaultWatcher` is the supervised ``notes`` child. Two tasks:

- the pump reads the folder's changes (watchfiles' ``awatch``: inotify, FSEvents or
  ReadDirectoryChangesW in a Rust thread, polling where there is none) and adds the paths to a
  :class:`ChangeBatcher`;
- the applier takes a batch once the folder has been quiet for ``quiet`` seconds, or ``max_wait``
  after the batch's first change when changes keep coming, and hands it to ``apply`` (the
  service's: the files read again in a worker thread, one change of the store, the engine
  woken). Changes that arrive meanwhile wait for the next batch, so a ``git pull`` of a thousand
  files is one batch or a few, never a thousand.

Every start (and restart after a failure) begins with a batch of everything, read once the
watch is set up: whatever changed while nothing watched is caught up (unchanged files are not
parsed again; see ``notes.live``). The pump sets up its watch in its first step, before that
batch's quiet period is over.

A vault folder that goes away (deleted, moved, unmounted, unreadable) is a health state, not a
failure: the graph keeps the notes it has, the entry says ``backoff`` with the reason, and the
folder is looked for every ``missing_poll`` seconds; once it is back it is read in full and
watched again. A watch that fails (the system's limit of watches reached) raises, and the
supervisor restarts the child with its backoff.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Protocol, TypeVar

import anyio
import anyio.abc
from loguru import logger
from watchfiles import awatch

# not re-exported by the package, but declared in its typed stub (_rust_notify.pyi)
from watchfiles._rust_notify import WatchfilesRustInternalError

from visionflow.notes.parse import NoteError
from visionflow.supervisor import SubsystemHealth, sole_exception

__all__ = [
    "MAX_PENDING",
    "MAX_WAIT_S",
    "QUIET_S",
    "Batch",
    "ChangeBatcher",
    "ChangeSource",
    "VaultWatcher",
    "watch_folder",
]

log = logger.bind(subsystem="notes")

#: The folder must be quiet this long before a batch is applied: an editor's save (a temporary
#: file, a rename) and a checkout's files come as one batch.
QUIET_S = 0.2
#: A batch waits at most this long after its first change, so a steady stream still shows.
MAX_WAIT_S = 2.0
#: Paths held for the next batch; beyond it the batch reads the whole vault again instead.
MAX_PENDING = 10_000
#: With nothing changing, how often the watcher checks that the folder is still there (a
#: moved folder may say nothing).
CHECK_S = 5.0
#: How often a vault folder that is gone is looked for.
MISSING_POLL_S = 2.0

# watchfiles' own grouping: it reports once nothing new came for _STEP_MS, at the latest after
# _DEBOUNCE_MS; the batcher does the rest (in anyio's time, so tests run it on a mock clock).
_STEP_MS = 50
_DEBOUNCE_MS = 200


@dataclass(frozen=True, slots=True)
class Batch:
    """Absolute paths that changed (files or folders, there or gone), or ``everything``: read
    the whole vault (a start, or more than :data:`MAX_PENDING` paths)."""

    paths: frozenset[str] = frozenset()
    everything: bool = False


class ChangeBatcher:
    """Collects changed paths into batches (see the module docstring). ``add`` is called by the
    pump, ``next_batch`` by the applier; times are anyio's clock."""

    def __init__(
        self,
        *,
        quiet: float = QUIET_S,
        max_wait: float = MAX_WAIT_S,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.quiet = quiet
        self.max_wait = max_wait
        self.max_pending = max_pending
        self._paths: set[str] = set()
        self._everything = False
        self._first = self._last = 0.0
        self._wake: anyio.Event | None = None

    @property
    def pending(self) -> bool:
        return self._everything or bool(self._paths)

    def add(self, paths: Iterable[str]) -> None:
        """Paths seen changed (none: nothing happens)."""
        paths = list(paths)
        if not paths:
            return
        if self._everything:
            pass  # the whole vault is read anyway
        else:
            self._paths.update(paths)
            if len(self._paths) > self.max_pending:  # bounded: read everything instead
                self._paths.clear()
                self._everything = True
        self._touched()

    def add_everything(self) -> None:
        """Read the whole vault in the next batch."""
        self._paths.clear()
        self._everything = True
        self._touched()

    def _touched(self) -> None:
        now = anyio.current_time()
        if not self._first:
            self._first = now
        self._last = now
        if self._wake is not None:
            self._wake.set()

    async def next_batch(self) -> Batch:
        """Wait for a change, then for ``quiet`` seconds without one (or ``max_wait`` after the
        first), and take what was collected. Cancelling it loses nothing."""
        while not self.pending:
            self._wake = anyio.Event()
            await self._wake.wait()
        while True:
            deadline = min(self._last + self.quiet, self._first + self.max_wait)
            now = anyio.current_time()
            if now >= deadline:
                break
            await anyio.sleep(deadline - now)
        batch = Batch(frozenset(self._paths), self._everything)
        self._paths = set()
        self._everything = False
        self._first = self._last = 0.0
        return batch


#: Where changes come from: (folder, stop event) -> sets of absolute paths that changed, or
#: None when some changes could not be told (read the whole vault again). Stops once the event
#: is set.
ChangeSource = Callable[[str, anyio.Event], AsyncGenerator[set[str] | None, None]]


async def watch_folder(top: str, stop: anyio.Event) -> AsyncGenerator[set[str] | None, None]:
    """The paths that change under ``top``, every file and folder (the vault's rules are
    applied when they are read), as watchfiles reports them; None when a set of changes was
    lost. NoteError when the folder cannot be watched."""
    # watchfiles logs every set of changes at INFO; the service logs each batch it applies
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    real_top = await anyio.to_thread.run_sync(os.path.realpath, top)  # a file system call
    while not stop.is_set():
        try:
            async for changes in awatch(
                top,
                watch_filter=None,
                stop_event=stop,
                step=_STEP_MS,
                debounce=_DEBOUNCE_MS,
                ignore_permission_denied=True,  # an unreadable folder is the scan's to report
            ):
                paths = [path for _change, path in changes]
                # realpath reads the file system: off the event loop
                held = await anyio.to_thread.run_sync(_held_paths, top, real_top, paths)
                if held:  # only changes behind a link to outside: no batch for them
                    yield held
            return
        except OSError as exc:
            raise NoteError(top, f"cannot watch the vault folder: {exc}") from exc
        except (WatchfilesRustInternalError, BaseExceptionGroup) as exc:
            # awatch raises it inside a task group, which wraps it in an exception group
            lost = sole_exception(exc)
            if not isinstance(lost, WatchfilesRustInternalError):
                raise
            # a path that is not UTF-8 ("Unable to decode path"): watchfiles drops the whole
            # set of changes and ends the watch. The scan reports such a name; here the lost
            # changes are made up for by reading everything, and the folder is watched again.
            log.warning("notes vault: {}; reading the whole vault again", lost)
            yield None


def held_path(top: str, real_top: str, path: str) -> str | None:
    """``path`` as the vault holds it. watchfiles follows a symlink to a folder, and inotify
    then reports a change under the link's path (``top/shortcut/A.md`` for ``top/notes/A.md``,
    ``shortcut -> notes``), which the vault does not read: the edit was lost. The folder's
    real path, if it lies in the vault, names the file as the vault holds it; the file's own
    name is kept (a file that is a symlink stays one, for the vault's rules). None for a path
    behind a link to outside the vault (watchfiles watches there too: it cannot be told not to
    follow links), which the vault does not read."""
    folder, name = os.path.split(path)
    real = os.path.realpath(folder)
    if real == folder:
        return path
    try:
        inside = os.path.commonpath([real, real_top]) == real_top
    except ValueError:  # another drive (Windows)
        return path
    if not inside:
        return None
    rel = os.path.relpath(real, real_top)
    return os.path.join(top, name) if rel == "." else os.path.join(top, rel, name)


def _held_paths(top: str, real_top: str, paths: list[str]) -> set[str]:
    return {held for path in paths if (held := held_path(top, real_top, path)) is not None}


T = TypeVar("T")


class RunSync(Protocol):
    """Runs blocking work off the event loop (``anyio.to_thread.run_sync``)."""

    def __call__(self, func: Callable[[], T], /) -> Awaitable[T]: ...


class WatchedVault(Protocol):
    """What the watcher asks of the vault (``notes.live.LiveVault``); blocking calls, run in a
    worker thread."""

    def locate(self) -> str:
        """The folder to watch; NoteError when there is none."""
        ...

    def check_top(self) -> str:
        """NoteError when the folder read last is gone or another one now."""
        ...

    def present(self) -> bool: ...


class VaultWatcher:
    """The ``notes`` child: watches ``vault`` and hands batches to ``apply`` (which raises
    NoteError when the folder cannot be read any more). See the module docstring."""

    def __init__(
        self,
        vault: WatchedVault,
        health: SubsystemHealth,
        apply: Callable[[Batch], Awaitable[None]],
        *,
        source: ChangeSource = watch_folder,
        quiet: float = QUIET_S,
        max_wait: float = MAX_WAIT_S,
        max_pending: int = MAX_PENDING,
        check_every: float = CHECK_S,
        missing_poll: float = MISSING_POLL_S,
        run_sync: RunSync = anyio.to_thread.run_sync,
    ) -> None:
        self.vault = vault
        self.health = health
        self.apply = apply
        self.source = source
        self.quiet = quiet
        self.max_wait = max_wait
        self.max_pending = max_pending
        self.check_every = check_every
        self.missing_poll = missing_poll
        self.run_sync = run_sync

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            gone = await self._watch()
            self.health.state = "backoff"
            self.health.last_error = f"{gone.detail}; the graph keeps its notes until it is back"
            log.warning("notes vault: {}; looking for it every {:g} s", gone, self.missing_poll)
            # polled: nothing announces a folder that comes back
            while True:
                if await self.run_sync(self.vault.present):
                    break
                await anyio.sleep(self.missing_poll)
            self.health.state = "running"
            self.health.last_error = None
            log.info("notes vault: the folder is back; reading it again")

    async def _watch(self) -> NoteError:
        """Watch until the folder cannot be read any more; returns why."""
        try:
            top = await self.run_sync(self.vault.locate)
        except NoteError as exc:
            return exc
        batcher = ChangeBatcher(
            quiet=self.quiet, max_wait=self.max_wait, max_pending=self.max_pending
        )
        batcher.add_everything()  # catch up with what changed while nothing watched
        gone: NoteError | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._pump, top, batcher)
            try:
                await self._apply_batches(batcher)
            except NoteError as exc:
                gone = exc
            tg.cancel_scope.cancel()
        assert gone is not None  # _apply_batches only ever ends by raising
        return gone

    async def _pump(self, top: str, batcher: ChangeBatcher) -> None:
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def stop_when_cancelled() -> None:
                # awatch waits for its thread, which returns once this is set (within a step):
                # without it a cancelled watch would hang on for up to its timeout
                try:
                    await anyio.sleep_forever()
                finally:
                    stop.set()

            tg.start_soon(stop_when_cancelled)
            async with aclosing(self.source(top, stop)) as changes:
                async for paths in changes:
                    if paths is None:
                        batcher.add_everything()
                    else:
                        batcher.add(paths)
            if stop.is_set():  # we are cancelled: awatch saw the event first and ended
                await anyio.sleep_forever()
            raise NoteError(top, "the watch of the vault folder ended")

    async def _apply_batches(self, batcher: ChangeBatcher) -> None:
        while True:
            with anyio.move_on_after(self.check_every) as waited:
                batch = await batcher.next_batch()
            if waited.cancelled_caught:  # quiet for a while: is the folder still there?
                await self.run_sync(self.vault.check_top)
                continue
            await self.apply(batch)
