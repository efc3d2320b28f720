"""A vault read in full once, then kept current path by path (blocking: a worker thread).

:class:`LiveVault` holds what the last read found: the parsed notes (in an
:class:`~visionflow.notes.incremental.IncrementalGraph`, which keeps the graph document) and the
problems, both keyed by vault-relative path. :meth:`LiveVault.update` takes the paths a watcher
saw change, forgets what was at or under each of them, reads each again as a full scan would
(a note, a folder walked, a symlink reported; :func:`~visionflow.notes.vault.read_entry`) and
returns the graph's delta. A saved note costs one file read and a few dictionary updates, not
a scan of the vault.

One call at a time: the watcher serialises them.
"""

from __future__ import annotations

import heapq
import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from visionflow.notes.incremental import GraphDelta, IncrementalGraph
from visionflow.notes.parse import Note, NoteError
from visionflow.notes.vault import (
    DEFAULT_MAX_ENTRIES,
    MAX_PROBLEMS_KEPT,
    Problem,
    read_entry,
    vault_root,
    walk_folder,
)

__all__ = ["LiveVault", "VaultGoneError", "VaultRead"]


class VaultGoneError(NoteError):
    """The vault folder that was read is gone (deleted, moved, or replaced by another folder):
    watching it is over until it is back and read again in full."""


@dataclass(frozen=True, slots=True)
class VaultRead:
    """What a read gave: pages, graph nodes and edges (placeholders included) as they stand,
    the first problems (by path) and how many there are, whether the last full walk and every
    update since stayed within the limits, the graph's ``delta`` from before the read, how many
    notes were parsed and how long it took."""

    notes: int
    nodes: int
    edges: int
    problems: tuple[Problem, ...]
    problem_count: int
    complete: bool
    delta: GraphDelta
    parsed: int
    seconds: float


#: A note read is served again from memory by the next walk only if its file did not change
#: (same device, inode, size, modification and change times) and was last changed this long
#: before that read began: a file written again within the file system's timestamp
#: granularity of being read would look unchanged (git calls this "racy").
RACY_NS = 2_000_000_000

Stamp = tuple[int, int, int, int, int]


def _stamp(st: os.stat_result) -> Stamp:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class _Cache:
    """The notes of the files a walk finds unchanged (see :data:`RACY_NS`): ``old`` stamps are
    consulted, those of the notes this walk keeps go to ``new``."""

    def __init__(self, notes: dict[str, Note], old: dict[str, Stamp]) -> None:
        self.notes = notes
        self.old = old
        self.new: dict[str, Stamp] = {}
        self.served = 0
        self.trusted_before = time.time_ns() - RACY_NS

    def get(self, rel: str, st: os.stat_result) -> Note | None:
        stamp = _stamp(st)
        note = self.notes.get(rel)
        if note is None or self.old.get(rel) != stamp:
            return None
        self.new[rel] = stamp
        self.served += 1
        return note

    def put(self, rel: str, st: os.stat_result, note: Note) -> None:
        if max(st.st_mtime_ns, st.st_ctime_ns) < self.trusted_before:
            self.new[rel] = _stamp(st)


class _Problems:
    """Every problem, by path (a walk reports each path once)."""

    def __init__(self) -> None:
        self.by_path: dict[str, str] = {}

    def add(self, path: str, reason: str) -> None:
        self.by_path[path] = reason


class LiveVault:
    """The vault at ``root``, read by :meth:`read_all` and kept current by :meth:`update`."""

    def __init__(
        self,
        root: Path,
        *,
        max_file_bytes: int,
        max_notes: int,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        if max_file_bytes < 0 or max_notes < 0 or max_entries < 0:
            raise ValueError("limits must be >= 0")
        self.root = root
        self.max_file_bytes = max_file_bytes
        self.max_notes = max_notes
        self.max_entries = max_entries
        self.graph = IncrementalGraph()
        self._top: str | None = None  # the real path read, once read
        self._identity: tuple[int, int] | None = None  # its (device, inode)
        self._problems: dict[str, str] = {}
        # folder -> notes and problems under it, so that a changed path that is no folder of
        # the vault is forgotten without going through every note
        self._folders: Counter[str] = Counter()
        self._stamps: dict[str, Stamp] = {}  # the notes a walk may take as they are
        self._complete = True

    @property
    def top(self) -> str | None:
        """The vault folder's real path as last read in full (what a watcher watches)."""
        return self._top

    def locate(self) -> str:
        """The real path of the vault folder as it is now (NoteError when there is none)."""
        return vault_root(self.root)

    def present(self) -> bool:
        """Whether ``root`` is a folder that can be listed (blocking, but a few system calls)."""
        try:
            top = vault_root(self.root)
        except NoteError:
            return False
        return os.access(top, os.R_OK | os.X_OK)

    def read_all(self) -> VaultRead:
        """Walk the whole vault again (NoteError when it cannot be read; nothing changes then).
        Notes no longer there go from the graph, the others are compared with what they were:
        the delta holds only what differs."""
        t0 = time.perf_counter()
        top = vault_root(self.root)
        try:
            st = os.stat(top)
        except OSError as exc:
            raise NoteError(
                str(self.root), f"the vault folder cannot be read: {exc.strerror}"
            ) from exc
        notes: list[Note] = []
        problems = _Problems()
        cache = _Cache(self.graph.notes, self._stamps)
        complete = walk_folder(
            top,
            "",
            notes,
            problems,
            max_file_bytes=self.max_file_bytes,
            max_notes=self.max_notes,
            max_entries=self.max_entries,
            shown=str(self.root),
            cache=cache,
        )
        changed: dict[str, Note | None] = dict.fromkeys(self.graph.notes)
        changed.update((note.path, note) for note in notes)
        delta = self.graph.update(changed)
        self._top, self._identity = top, (st.st_dev, st.st_ino)
        self._problems = problems.by_path
        self._folders = Counter(
            a for p in (*self.graph.notes, *self._problems) for a in _ancestors(p)
        )
        self._stamps = cache.new
        self._complete = complete
        return self._result(delta, len(notes) - cache.served, t0)

    def update(self, paths: Iterable[str]) -> VaultRead | None:
        """Read again what is at the absolute ``paths`` a watcher reported (files or folders,
        there or gone); None when nothing that the graph or the problems hold changed.
        :class:`VaultGoneError` when the vault folder read last is gone or another folder now
        (nothing changes: :meth:`read_all` once it is back)."""
        t0 = time.perf_counter()
        top = self.check_top()
        rels: set[str] = set()
        for path in paths:
            rel = _relative(path, top)
            if rel == "":
                # the folder itself was deleted, moved, replaced (its inode may be reused, so
                # check_top cannot always tell) or had its attributes changed: the watch on it
                # may be dead, so watch it again, and read it whole
                raise VaultGoneError(str(self.root), "the vault folder itself changed")
            if rel is not None:
                rels.add(rel)
        # a path under another one in the set is read with it
        rels = {rel for rel in rels if not any(a in rels for a in _ancestors(rel))}
        if not rels:
            return None
        if any(self._folders[rel] for rel in rels):  # a folder: whatever lies under it
            gone_notes = [p for p in self.graph.notes if _at_or_under(p, rels)]
            gone_problems = [p for p in self._problems if _at_or_under(p, rels)]
        else:
            gone_notes = [rel for rel in rels if rel in self.graph.notes]
            gone_problems = [rel for rel in rels if rel in self._problems]
        cache = _Cache(
            self.graph.notes, {p: s for p in gone_notes if (s := self._stamps.pop(p, None))}
        )
        notes: list[Note] = []
        problems = _Problems()
        held = len(self.graph.notes) - len(gone_notes)
        complete = True
        for rel in sorted(rels):
            complete &= read_entry(
                top,
                rel,
                notes,
                problems,
                max_file_bytes=self.max_file_bytes,
                max_notes=self.max_notes,
                max_entries=self.max_entries,
                cache=cache,
                held=held,
            )
        changed: dict[str, Note | None] = dict.fromkeys(gone_notes)
        changed.update((note.path, note) for note in notes)
        old_problems = {p: self._problems.pop(p) for p in gone_problems}
        self._problems.update(problems.by_path)
        _count(self._folders, (*gone_notes, *gone_problems), -1)
        _count(self._folders, (*(n.path for n in notes), *problems.by_path), 1)
        self._stamps.update(cache.new)
        self._complete = self._complete and complete
        if not changed and old_problems == problems.by_path:
            return None
        return self._result(self.graph.update(changed), len(notes) - cache.served, t0)

    def check_top(self) -> str:
        """The vault folder's real path, or :class:`VaultGoneError` when the folder read last
        is gone or another one now (blocking, but a ``stat``)."""
        top = self._top
        if top is None:
            raise RuntimeError("read_all() first")
        try:
            real = vault_root(self.root)
            st = os.stat(real)
        except (NoteError, OSError) as exc:
            raise VaultGoneError(str(self.root), "the vault folder is gone") from exc
        if real != top or (st.st_dev, st.st_ino) != self._identity:
            raise VaultGoneError(str(self.root), "the vault folder was replaced")
        return top

    def _result(self, delta: GraphDelta, parsed: int, t0: float) -> VaultRead:
        first = heapq.nsmallest(MAX_PROBLEMS_KEPT, self._problems)
        return VaultRead(
            notes=len(self.graph.notes),
            nodes=len(self.graph.nodes),
            edges=len(self.graph.edges),
            problems=tuple(Problem(p, self._problems[p]) for p in first),
            problem_count=len(self._problems),
            complete=self._complete,
            delta=delta,
            parsed=parsed,
            seconds=time.perf_counter() - t0,
        )


def _relative(path: str, top: str) -> str | None:
    """``path`` from ``top`` with '/', or None when it is not inside ``top``."""
    if path == top:
        return ""
    prefix = top if top.endswith(os.sep) else top + os.sep
    return path[len(prefix) :].replace(os.sep, "/") if path.startswith(prefix) else None


def _ancestors(rel: str) -> Iterable[str]:
    """``a/b/c`` -> ``a/b``, ``a``."""
    end = rel.rfind("/")
    while end > 0:
        rel = rel[:end]
        yield rel
        end = rel.rfind("/")


def _count(folders: Counter[str], paths: Iterable[str], step: int) -> None:
    """Add ``step`` to the count of every folder above each of ``paths`` (none left at 0)."""
    for path in paths:
        for folder in _ancestors(path):
            folders[folder] += step
            if not folders[folder]:
                del folders[folder]


def _at_or_under(rel: str, rels: set[str]) -> bool:
    return rel in rels or any(a in rels for a in _ancestors(rel))
