"""A vault folder read from disk: the blocking shell around :mod:`visionflow.notes.parse`.

Meant for a worker thread (``anyio.to_thread.run_sync``): it walks and reads files and never
touches the event loop. Nothing in a vault can make :func:`scan_vault` raise or read outside the
vault; each file that breaks a rule is a :class:`Problem` and the rest still load:

- only ``*.md`` files; hidden files and folders (``.obsidian/``, ``.trash/``, ``.git/``) and
  Logseq's configuration folder ``logseq/`` at the top (with its ``bak/`` copies) are skipped;
- a symlink is never followed: one to outside the vault is reported (when it stands for a
  note or a folder), and one inside it needs no following, since what it points to is read at
  its own path (or is in a skipped folder). A folder met twice (a bind mount of a parent) is
  read once, so no walk loops;
- a file is opened without following a symlink in its last part, and where ``/proc`` tells,
  the path actually opened is checked to lie in the vault, so a folder swapped for a symlink
  mid-walk cannot lead outside either;
- each file is read up to ``max_file_bytes`` (larger: skipped), must be UTF-8 (a BOM is fine)
  and must parse (malformed front matter is skipped with its line).

:func:`walk_folder` and :func:`read_entry` are the same walk for part of a vault (a folder, or
one path a watcher saw change: ``notes.live``), with an optional cache of notes whose files did
not change.

:func:`read_note_text` reads one note named by a path that came from outside (a URL), refusing
anything that could leave the vault.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote

from visionflow.notes.parse import Note, NoteError, parse_note

__all__ = [
    "MAX_PROBLEMS_KEPT",
    "NoteCache",
    "Problem",
    "ProblemSink",
    "VaultScan",
    "read_entry",
    "read_note_text",
    "scan_vault",
    "vault_root",
    "walk_folder",
]

#: Problems kept word for word in a :class:`VaultScan`; the rest are counted.
MAX_PROBLEMS_KEPT = 20

#: Folder entries a scan looks at (files of any kind, folders) before it stops: a vault folder
#: that holds millions of other files is not walked to its end.
DEFAULT_MAX_ENTRIES = 1_000_000

#: Longest path (in characters, after decoding) that :func:`read_note_text` accepts.
MAX_PATH_CHARS = 4096

_CONFIG_FOLDER = "logseq"  # at the top of a Logseq graph: config.edn, custom.css, bak/
_PROC_FD = Path("/proc/self/fd")
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_READ_CHUNK = 1 << 20
# after one decoding, an escape that would decode to '.', '/', '\', '%' or NUL is an attempt
# on a second decoder somewhere: refused
_DOUBLE_ENCODED = re.compile(r"%(?:2e|2f|5c|25|00)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Problem:
    """A file (or folder) of the vault that was not loaded, and why. ``path`` is vault-relative."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class VaultScan:
    """What a scan found: the notes that loaded (in walk order: a folder's files by name, then
    its folders by name), the first :data:`MAX_PROBLEMS_KEPT` problems, how many problems there
    were in all, and whether the whole vault was walked (False when a limit stopped it)."""

    notes: tuple[Note, ...]
    problems: tuple[Problem, ...]
    problem_count: int
    complete: bool


class ProblemSink(Protocol):
    """Where a walk reports a file it did not load: ``add(vault-relative path, reason)``."""

    def add(self, path: str, reason: str) -> None: ...


class NoteCache(Protocol):
    """Notes parsed before, for a walk to take instead of reading a file again: ``get`` gives
    the note at ``rel`` if the file's ``lstat`` shows it unchanged, ``put`` records a note just
    read with the ``lstat`` taken before reading it."""

    def get(self, rel: str, st: os.stat_result) -> Note | None: ...

    def put(self, rel: str, st: os.stat_result, note: Note) -> None: ...


class _Problems:
    def __init__(self) -> None:
        self.kept: list[Problem] = []
        self.count = 0

    def add(self, path: str, reason: str) -> None:
        self.count += 1
        if len(self.kept) < MAX_PROBLEMS_KEPT:
            self.kept.append(Problem(path, reason))


def scan_vault(
    root: Path,
    *,
    max_file_bytes: int,
    max_notes: int,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> VaultScan:
    """Walk the vault at ``root`` and parse every note in it (blocking: call it in a worker
    thread). Raises :class:`NoteError` only when ``root`` is not a folder that can be read;
    everything else wrong is a :class:`Problem` in the result. At most ``max_notes`` notes are
    loaded and ``max_entries`` folder entries looked at; reaching either ends the walk with a
    problem saying so (``complete`` False)."""
    if max_file_bytes < 0 or max_notes < 0 or max_entries < 0:
        raise ValueError("limits must be >= 0")
    top = vault_root(root)
    notes: list[Note] = []
    problems = _Problems()
    complete = walk_folder(
        top,
        "",
        notes,
        problems,
        max_file_bytes=max_file_bytes,
        max_notes=max_notes,
        max_entries=max_entries,
        shown=str(root),
    )
    return VaultScan(tuple(notes), tuple(problems.kept), problems.count, complete)


def walk_folder(
    top: str,
    rel_start: str,
    notes: list[Note],
    problems: ProblemSink,
    *,
    max_file_bytes: int,
    max_notes: int,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    shown: str = "",
    cache: NoteCache | None = None,
    held: int = 0,
) -> bool:
    """Walk the folder ``rel_start`` (vault-relative, "" for the top) of the vault whose real
    path is ``top``, appending the notes it holds to ``notes`` (until they and ``held`` notes
    held elsewhere make ``max_notes``) and reporting the rest to ``problems``. Returns False
    when a limit stopped the walk. The top folder that cannot be listed is a
    :class:`NoteError` (``shown`` names it); any other folder is a problem. ``cache`` gives the
    notes of files that did not change."""
    start = os.path.join(top, rel_start) if rel_start else top
    try:
        start_stat = os.stat(start)
    except OSError as exc:
        if not rel_start:
            raise NoteError(shown, f"the vault folder cannot be read: {exc.strerror}") from exc
        problems.add(rel_start, f"folder cannot be read: {exc.strerror}")
        return True
    seen_folders = {(start_stat.st_dev, start_stat.st_ino)}
    entries = 0
    # (real folder path, its vault-relative path); popped last first, pushed in reverse
    stack: list[tuple[str, str]] = [(start, rel_start)]
    complete = True
    while stack and complete:
        folder, rel_folder = stack.pop()
        listing: list[os.DirEntry[str]] = []
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    entries += 1
                    if entries > max_entries:
                        problems.add(
                            rel_folder or ".",
                            f"more than {max_entries} folder entries: the walk stopped here",
                        )
                        complete = False
                        break
                    listing.append(entry)
        except OSError as exc:
            if not rel_folder:
                raise NoteError(shown, f"the vault folder cannot be read: {exc.strerror}") from exc
            problems.add(rel_folder, f"folder cannot be read: {exc.strerror}")
            continue
        listing.sort(key=lambda e: e.name)
        subfolders: list[tuple[str, str]] = []
        for entry in listing if complete else ():
            name = entry.name
            rel = f"{rel_folder}/{name}" if rel_folder else name
            if _skipped(name, top_level=not rel_folder):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                problems.add(rel, f"cannot be read: {exc.strerror}")
                continue
            if not _is_utf8(name):
                # os.scandir hands an undecodable name over as lone surrogates, which nothing
                # downstream (ids, JSON, the layout file) can carry: said, and left alone
                if name.endswith(".md") or stat.S_ISDIR(st.st_mode):
                    problems.add(_shown(rel), _NOT_UTF8)
                continue
            if stat.S_ISLNK(st.st_mode):
                _check_symlink(entry.path, top, rel, problems)
            elif stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) in seen_folders:
                    problems.add(rel, "folder already read at another path (a loop)")
                else:
                    seen_folders.add((st.st_dev, st.st_ino))
                    subfolders.append((entry.path, rel))
            elif name.endswith(".md") and not _add_note(
                entry.path, top, rel, st, notes, problems, max_file_bytes, max_notes, held, cache
            ):
                complete = False  # max_notes reached
                break
        stack.extend(reversed(subfolders))
    return complete


def read_entry(
    top: str,
    rel: str,
    notes: list[Note],
    problems: ProblemSink,
    *,
    max_file_bytes: int,
    max_notes: int,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    cache: NoteCache | None = None,
    held: int = 0,
) -> bool:
    """Read what is at ``rel`` (vault-relative) in the vault whose real path is ``top`` as
    :func:`scan_vault` would read it there: a note, a folder (walked), a symlink (reported when
    it stands for a note or a folder) or nothing (gone, hidden, not a note, or only reached
    through a symlink or a hidden folder, which a scan never follows). Notes go to ``notes``
    (until they and ``held`` others make ``max_notes``), the rest to ``problems``; False when a
    limit stopped it. ``cache`` serves the notes of a folder's files that did not change (the
    file at ``rel`` itself is always read: it was reported changed)."""
    parts = rel.split("/")
    if not rel or any(p in ("", ".", "..") for p in parts) or _hidden_part(parts):
        return True
    if not _is_utf8(rel):
        problems.add(_shown(rel), _NOT_UTF8)
        return True
    path = os.path.join(top, rel)
    parent = os.path.dirname(path)
    try:
        if os.path.realpath(parent) != parent:  # reached through a symlink: a scan is not
            return True
        st = os.lstat(path)
    except (OSError, ValueError):  # gone (or a parent is not a folder); ValueError: a NUL
        return True
    if stat.S_ISLNK(st.st_mode):
        _check_symlink(path, top, rel, problems)
    elif stat.S_ISDIR(st.st_mode):
        return walk_folder(
            top,
            rel,
            notes,
            problems,
            max_file_bytes=max_file_bytes,
            max_notes=max_notes,
            max_entries=max_entries,
            cache=cache,
            held=held,
        )
    elif rel.endswith(".md"):
        fresh = _Fresh(cache) if cache is not None else None
        return _add_note(
            path, top, rel, st, notes, problems, max_file_bytes, max_notes, held, fresh
        )
    return True


class _Fresh:
    """A cache that records but never serves: for a file reported changed."""

    def __init__(self, cache: NoteCache) -> None:
        self._cache = cache

    def get(self, rel: str, st: os.stat_result) -> Note | None:
        return None

    def put(self, rel: str, st: os.stat_result, note: Note) -> None:
        self._cache.put(rel, st, note)


def _add_note(
    path: str,
    top: str,
    rel: str,
    st: os.stat_result,
    notes: list[Note],
    problems: ProblemSink,
    max_file_bytes: int,
    max_notes: int,
    held: int,
    cache: NoteCache | None,
) -> bool:
    """Load the note at ``path`` (lstat ``st``) into ``notes``; False when ``notes`` and
    ``held`` notes held elsewhere make ``max_notes`` already."""
    if not stat.S_ISREG(st.st_mode):
        problems.add(rel, "not a regular file")
        return True
    if held + len(notes) >= max_notes:
        problems.add(rel, f"more than {max_notes} notes: the walk stopped here")
        return False
    note = cache.get(rel, st) if cache is not None else None
    if note is None:
        note = _load(path, top, rel, max_file_bytes, problems)
        if note is not None and cache is not None:
            cache.put(rel, st, note)
    if note is not None:
        notes.append(note)
    return True


def vault_root(root: Path) -> str:
    """The vault's real path (symlinks of the root itself resolved: the user chose it), or
    NoteError when it is missing or not a folder."""
    try:
        real = os.path.realpath(root)
        st = os.stat(real)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise NoteError(str(root), "the vault folder does not exist") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise NoteError(str(root), "the vault is not a folder")
    return real


def _skipped(name: str, *, top_level: bool) -> bool:
    return name.startswith(".") or (top_level and name == _CONFIG_FOLDER)


def _hidden_part(rel_parts: list[str]) -> bool:
    return any(p.startswith(".") for p in rel_parts) or rel_parts[:1] == [_CONFIG_FOLDER]


def _inside(real: str, top: str) -> str | None:
    """``real`` relative to ``top`` with '/', or None when it is not inside ``top``."""
    if real == top:
        return ""
    prefix = top if top.endswith(os.sep) else top + os.sep
    return real[len(prefix) :].replace(os.sep, "/") if real.startswith(prefix) else None


def _check_symlink(path: str, top: str, rel: str, problems: ProblemSink) -> None:
    """Report a symlink that stands for a note or a folder; none is followed (see the module
    docstring). One to a picture outside the vault is no loss to the graph: not reported."""
    note_like = rel.endswith(".md")
    try:
        real = os.path.realpath(path, strict=True)
    except OSError:
        if note_like:
            problems.add(rel, "broken symlink (or a symlink loop): not followed")
        return
    if _inside(real, top) is None and (note_like or os.path.isdir(real)):
        problems.add(rel, "symlink to outside the vault: not followed")


def _load(path: str, top: str, rel: str, limit: int, problems: ProblemSink) -> Note | None:
    try:
        return parse_note(_decode(_read(path, top, rel, limit), rel), rel)
    except NoteError as exc:
        problems.add(rel, exc.detail)
        return None


def _read(path: str, top: str, rel: str, limit: int) -> bytes:
    """At most ``limit`` bytes of the regular file at ``path``, which must lie in ``top``."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NoteError(rel, "is a symlink: not followed") from exc
        raise NoteError(rel, f"cannot be read: {exc.strerror}") from exc
    try:
        if _PROC_FD.is_dir():  # what was opened, whatever happened to the path meanwhile
            try:
                opened = os.readlink(_PROC_FD / str(fd))
            except OSError as exc:
                raise NoteError(rel, f"cannot be read: {exc.strerror}") from exc
            if opened != path:
                where = "outside the vault" if _inside(opened, top) is None else "elsewhere"
                raise NoteError(rel, f"changed while being opened: led {where}, not read")
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NoteError(rel, "not a regular file")
        if st.st_size > limit:
            raise NoteError(rel, f"{st.st_size} bytes, over the limit of {limit}: not read")
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, min(_READ_CHUNK, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # it grew while we read
                raise NoteError(rel, f"over the limit of {limit} bytes: not read")
        return b"".join(chunks)
    except OSError as exc:
        raise NoteError(rel, f"cannot be read: {exc.strerror}") from exc
    finally:
        os.close(fd)


def _decode(data: bytes, rel: str) -> str:
    try:
        return data.decode("utf-8-sig")  # a BOM is dropped
    except UnicodeDecodeError as exc:
        raise NoteError(rel, f"not UTF-8 (byte {exc.start}): not read") from exc


# --------------------------------------------------------------------------- one note


def read_note_text(root: Path, rel: str, max_bytes: int) -> str:
    """The text of the note at ``rel`` in the vault at ``root`` (blocking).

    ``rel`` is percent-encoded, as in a URL (``notes/my%20page.md``), and is decoded once. It is
    refused (:class:`NoteError`) unless, once decoded, it is a relative ``/``-separated path
    with no empty, ``.`` or ``..`` part, no backslash, NUL or control character, no escape left
    that decodes to ``.``, ``/``, ``\\``, ``%`` or NUL (double encoding), no hidden part and not
    in ``logseq/``, ending in ``.md``; and unless the file it names, symlinks resolved, is a
    regular file inside the vault (and not hidden) of at most ``max_bytes`` bytes of UTF-8.
    """
    decoded = _check_rel(rel)
    top = vault_root(root)
    target = os.path.realpath(os.path.join(top, decoded))
    real_rel = _inside(target, top)
    if real_rel is None:
        raise NoteError(_shown(rel), "resolves outside the vault")
    if not real_rel or _hidden_part(real_rel.split("/")) or not real_rel.endswith(".md"):
        raise NoteError(_shown(rel), "resolves to a file that is not a note of the vault")
    return _decode(_read(target, top, _shown(rel), max_bytes), _shown(rel))


_NOT_UTF8 = "its name is not UTF-8: not read (renamed, it would be)"


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: a byte of the name that was not UTF-8
        return False
    return True


def _shown(rel: str) -> str:
    if not _is_utf8(rel):  # the bytes of the name as they are on disk: 'B\\xe9.md'
        return os.fsencode(rel).decode("utf-8", "backslashreplace")
    return rel if rel.isprintable() else ascii(rel)


def _check_rel(rel: str) -> str:
    shown = _shown(rel)
    if not rel:
        raise NoteError(shown, "empty path")
    if len(rel) > 3 * MAX_PATH_CHARS:
        raise NoteError(shown[:80], "path too long")
    try:
        decoded = unquote(rel, errors="strict")
    except UnicodeDecodeError as exc:
        raise NoteError(shown, "percent-encoding that is not UTF-8") from exc
    if len(decoded) > MAX_PATH_CHARS:
        raise NoteError(shown[:80], "path too long")
    for text in (rel, decoded):
        if "\\" in text:
            raise NoteError(shown, "backslash in the path")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            raise NoteError(shown, "NUL or control character in the path")
    if _DOUBLE_ENCODED.search(decoded):
        raise NoteError(shown, "percent-encoded twice ('%2e', '%2f', '%5c', '%25' or '%00')")
    if decoded.startswith("/"):
        raise NoteError(shown, "absolute path")
    parts = decoded.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise NoteError(shown, "empty, '.' or '..' part in the path")
    if _hidden_part(parts):
        raise NoteError(shown, "hidden or configuration folder")
    if not decoded.endswith(".md"):
        raise NoteError(shown, "not a .md note")
    return decoded
