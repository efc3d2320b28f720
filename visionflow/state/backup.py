"""Backing up and restoring ``state.dir``: what ``visionflow state backup|restore`` and
``GET /api/state/backup`` do (docs/operations.md, "Backup and restore"). All blocking: call
from a worker thread or the command line.

A backup is one file (``state/archive.py``) made either

- from a running service (:func:`service_members`, run by the route): the graph, the node ids,
  the id counter and the revision are read in one hold of the store's lock (the export the
  service itself saves after an import, plus the keys and ids the layout saver reads), the
  positions from the engine's latest published snapshot, the overrides from the live settings.
  So the three agree with each other as of one moment, newer than the files on disk (the layout
  file may be ``state.save_interval`` seconds old). The lock is held by a worker thread; the
  event loop never waits for it (every loop-side user of the store only tries it);
- or from the files of a stopped service (:func:`files_backup`), under ``state.dir``'s lock
  (``state/lockfile.py``), so that no service starts and writes them meanwhile.

Either way each state file is checked with the same reader the service starts with before it
goes into the backup, so a backup that was made can be restored. A restore
(:func:`restore_backup`) checks every member again (and the overrides against the settings in
use), takes the state directory's lock (refused while a service runs on it), writes the new
files next to the old ones, moves the old ones into ``replaced-<UTC time>/`` and renames the new
ones in. Older formats in a backup are written as they are: the service reads them and writes
the current format at its next save (``graph.json`` 1, ``layout.json`` 1, an overrides file
without the layout-model mark); newer ones are refused, naming the file and the versions.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from visionflow import __version__, jsonsafe
from visionflow.errors import ConfigError
from visionflow.fileio import read_bounded
from visionflow.graph.store import GraphStore, NodeKey
from visionflow.live_settings import LAYOUT_MODEL_MARK, OVERRIDES_FILE, RUNTIME_KEYS
from visionflow.protocol.snapshot import Snapshot
from visionflow.settings import merge, to_toml_table, validate
from visionflow.state.archive import (
    MEMBER_LIMITS,
    MEMBER_ORDER,
    Backup,
    BackupError,
    Member,
    Summary,
    pack,
)
from visionflow.state.graphfile import FORMAT_VERSION as GRAPH_VERSION
from visionflow.state.graphfile import GRAPH_FILE, decode_graph, encode_graph
from visionflow.state.layout import FORMAT_VERSION as LAYOUT_VERSION
from visionflow.state.layout import LAYOUT_FILE, Position, decode_layout, encode_layout
from visionflow.state.lockfile import StateLock, give_to_owner

OVERRIDES_VERSION = 2  # 2: marked with LAYOUT_MODEL_MARK; 1: unmarked (before Dec 2026)


class _Version(msgspec.Struct):
    version: int | None = None


_VERSION = msgspec.json.Decoder(_Version)


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- checking


def _leaves(doc: Mapping[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, value in doc.items():
        path = f"{prefix}{key}"
        out.extend(_leaves(value, path + ".") if isinstance(value, Mapping) else [path])
    return out


def check_overrides(data: bytes, base: Mapping[str, Any] | None) -> tuple[int, int]:
    """(version, number of settings) of an overrides file; ValueError saying what is wrong.

    With ``base`` (the settings in use, as a dict) the overrides are validated over it, as the
    service does at start; a version 1 file is only parsed (the service drops its layout values
    at start, see ``live_settings.LAYOUT_MODEL_MARK``).
    """
    try:
        text = data.decode("utf-8")
        doc = tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"not a TOML file: {exc}") from None
    except RecursionError:  # tomllib recurses per nesting level
        raise ValueError("nested too deeply") from None
    version = OVERRIDES_VERSION if LAYOUT_MODEL_MARK in text else 1
    keys = _leaves(doc)
    if version < OVERRIDES_VERSION or base is None:
        return version, len(keys)
    fixed = [k for k in keys if not any(k == r or k.startswith(r) for r in RUNTIME_KEYS)]
    if fixed:
        raise ValueError(f"{', '.join(fixed[:5])}: not a setting that changes at runtime")
    try:
        validate(merge(dict(base), doc), OVERRIDES_FILE)
    except ConfigError as exc:
        raise ValueError(exc.render()) from None
    return version, len(keys)


def check_members(
    files: Mapping[str, bytes], base: Mapping[str, Any] | None
) -> tuple[list[Member], Summary]:
    """Each state file read as the service reads it at start; BackupError naming the file and
    what is wrong with it (a newer format version included)."""
    members: list[Member] = []
    summary = Summary()
    for name in MEMBER_ORDER:
        data = files.get(name)
        if data is None:
            continue
        try:
            if name == GRAPH_FILE:
                version, doc = decode_graph(data)
                summary.knowledge_nodes, summary.edges = len(doc.nodes), len(doc.edges)
            elif name == LAYOUT_FILE:
                report = decode_layout(data)
                version = jsonsafe.decode(data, _VERSION).version or 1
                summary.positions = len(report.positions)
            else:
                version, summary.overrides = check_overrides(data, base)
        except (ValueError, msgspec.DecodeError) as exc:
            raise BackupError(f"{name}: {exc}") from None
        members.append(Member(name, data, version))
    return members, summary


# --------------------------------------------------------------------------- making one


def read_state_files(state_dir: str) -> dict[str, bytes]:
    """The state files there are, each read with the service's own checks (a regular file,
    within its size cap); BackupError for one that cannot be read."""
    found: dict[str, bytes] = {}
    for name, limit in MEMBER_LIMITS.items():
        path = Path(state_dir) / name
        try:
            found[name] = read_bounded(path, limit)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise BackupError(f"cannot read {path}: {exc.strerror or exc}") from None
    return found


def files_backup(state_dir: str, base: Mapping[str, Any] | None) -> tuple[bytes, Summary]:
    """A backup of a stopped service's files. StateDirBusyError when a service (or another
    backup or restore) holds the directory; BackupError when there is nothing to back up or a
    file is unreadable or damaged."""
    try:
        lock = StateLock.take(state_dir, "backup", create=False)
    except FileNotFoundError:
        raise BackupError(f"no state directory {state_dir} (is state.dir right?)") from None
    except PermissionError as exc:
        raise BackupError(
            f"cannot lock {state_dir}: {exc.strerror} (run this as the service's user)"
        ) from None
    except OSError as exc:
        raise BackupError(f"cannot lock {state_dir}: {exc.strerror or exc}") from None
    with lock:
        files = read_state_files(state_dir)
    if not files:
        raise BackupError(f"no state files in {state_dir}: nothing to back up")
    members, summary = check_members(files, base)
    return _pack(members, "files", summary), summary


def _overrides_text(overrides: Mapping[str, Any]) -> bytes:
    # the file as live_settings writes it, marked for the current layout model
    head = "# Written by visionflow state backup from a running service; applied over "
    head += "settings.toml.\n" + LAYOUT_MODEL_MARK + "\n"
    return (head + to_toml_table(overrides)).encode()


def service_members(
    store: GraphStore,
    snapshot: Snapshot | None,
    carried: Mapping[NodeKey, Position],
    overrides: Mapping[str, Any],
) -> tuple[list[Member], Summary]:
    """The state of a running service, as the files it would write now (see the module doc).

    ``carried`` (saved positions of agents not back yet) and ``overrides`` are read by the
    caller on the event loop, where they change; ``snapshot`` is immutable.
    """
    with store.lock:  # one moment: the graph, its ids and its revision agree
        exported = store.export({})
        keys, id_state = store.keys(), store.id_state()
    if snapshot is None:
        ids, positions = np.empty(0, np.uint32), np.empty((0, 3), np.float32)
    else:
        ids, positions = snapshot.nodes.ids, snapshot.nodes.positions
    layout, count = encode_layout(keys, ids, positions, carried, id_state)
    members = [
        Member(GRAPH_FILE, encode_graph(exported), GRAPH_VERSION),
        Member(LAYOUT_FILE, layout, LAYOUT_VERSION),
    ]
    summary = Summary(len(exported.nodes), len(exported.edges), count, len(_leaves(overrides)))
    if overrides:
        members.append(Member(OVERRIDES_FILE, _overrides_text(overrides), OVERRIDES_VERSION))
    return members, summary


def service_backup(
    store: GraphStore,
    snapshot: Snapshot | None,
    carried: Mapping[NodeKey, Position],
    overrides: Mapping[str, Any],
) -> bytes:
    members, summary = service_members(store, snapshot, carried, overrides)
    return _pack(members, "service", summary)


def _pack(members: list[Member], source: str, summary: Summary) -> bytes:
    return pack(
        members,
        visionflow_version=__version__,
        created=now_utc(),
        source=source,
        summary=summary,
    )


# --------------------------------------------------------------------------- restoring


@dataclass(frozen=True, slots=True)
class Restored:
    written: list[str]  # the state files now there
    replaced: Path | None  # where the files they replaced went (None: there were none)
    summary: Summary


def restore_backup(backup: Backup, state_dir: str, base: Mapping[str, Any] | None) -> Restored:
    """Make ``state_dir`` hold exactly the backup's state files (see the module doc).

    BackupError for a member the service could not read; StateDirBusyError when a service (or
    another backup or restore) holds the directory; OSError when it cannot be written (nothing
    replaced then, unless the error came while moving files: the message says where they are).
    """
    members, summary = check_members(backup.members, base)
    with StateLock.take(state_dir, "restore") as lock:
        directory = lock.path.parent
        staged: dict[str, Path] = {}
        owner = directory.stat()
        try:
            for m in members:
                staged[m.name] = _stage(directory, m.name, m.data, owner)
            replaced = _move_old(directory)
            for name, tmp in staged.items():
                os.replace(tmp, directory / name)
            staged.clear()
            _fsync_dir(directory)
        finally:
            for tmp in staged.values():
                tmp.unlink(missing_ok=True)
    return Restored([m.name for m in members], replaced, summary)


def _stage(directory: Path, name: str, data: bytes, owner: os.stat_result) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        give_to_owner(fd, owner)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _move_old(directory: Path) -> Path | None:
    """Move the state files there are into a new ``replaced-<UTC time>`` folder; its path."""
    old = [name for name in MEMBER_ORDER if (directory / name).exists()]
    if not old:
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = directory / f"replaced-{stamp}"
    n = 1
    while True:
        try:
            target.mkdir(mode=0o700)
            break
        except FileExistsError:
            n += 1
            target = directory / f"replaced-{stamp}-{n}"
    give_to_owner(target, directory.stat())
    for name in old:
        os.replace(directory / name, target / name)
    return target


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
