"""The layout file: save positions atomically, read them back; the LayoutSaver child.

Restoring them is :func:`visionflow.state.restore` (through ``PendingLayout``), the one path.

Positions are keyed by each node's stable key (kind + external id).  The file is JSON (msgspec):

    {"version": 2, "revision": 57, "next_id": 231,
     "nodes": [{"kind": "knowledge", "id": "...", "n": 17, "p": [x, y, z]}, ...]}

``n`` is the node's u32 id (raw, without the kind flag), ``next_id`` the store's id counter and
``revision`` its topology revision: with them a restart keeps every saved node's id and moves
the revision on instead of starting it again at 0 (``GraphStore.restore_ids``).  ``n`` may be
absent (a carried entry whose id is unknown).  Version 1 files (no ids, no counter) still load:
their nodes get new ids, as before, and the next save writes version 2.

Saving writes a temporary file in the same directory, fsyncs it, renames it over the old one
and fsyncs the directory, so a crash leaves either the old or the new file.  A corrupt,
truncated or foreign file is reported (a LoadReport with ``error`` set, and a log line) and
ignored: never fatal.  The LayoutSaver reports failing saves once, retries them with a capped
exponential backoff and shows the ``layout`` subsystem degraded until a save works again.  Its
last save, at shutdown, gets at most ``FINAL_SAVE_TIMEOUT_S``: a hung disk does not hold the
process back (the write is abandoned, and the file stays the old one or the new one).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import msgspec
import numpy as np
import numpy.typing as npt
from loguru import logger

from visionflow import jsonsafe
from visionflow.errors import GraphError
from visionflow.fileio import STATE_FILE_MAX, read_bounded, write_atomic
from visionflow.graph.store import (
    GraphStore,
    IdState,
    NodeKey,
    NodeKind,
    check_position,
)
from visionflow.protocol.wire import ID_MASK
from visionflow.threads import run_abandonable

if TYPE_CHECKING:
    from visionflow.physics.engine import PhysicsEngine
    from visionflow.supervisor import SubsystemHealth

log = logger.bind(subsystem="physics")

LAYOUT_FILE = "layout.json"
FORMAT_VERSION = 2  # 2: node ids, id counter and revision; 1: positions only
READABLE_VERSIONS = (1, 2)
# Retries after a failed save wait save_interval, then twice that, ... up to this (seconds).
RETRY_MAX = 300.0
# The save at shutdown runs shielded from the cancellation that stops the saver; this bounds it
# (and so does the end of the shutdown's grace, ``LayoutSaver.stop_by``).
FINAL_SAVE_TIMEOUT_S = 5.0


class _Entry(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    kind: str
    id: str
    p: tuple[float, float, float]
    n: int | None = None  # version 2: the node's raw u32 id


class _Layout(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    version: int
    nodes: list[_Entry]
    revision: int | None = None  # version 2
    next_id: int | None = None  # version 2


_LAYOUT = msgspec.json.Decoder(_Layout)

Position = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class LoadReport:
    positions: dict[NodeKey, Position]
    error: str | None = None  # set when the file was unusable; everything is then empty
    missing: bool = False  # no file yet (first run)
    ids: dict[NodeKey, int] = field(default_factory=dict)  # empty for a version 1 file
    next_id: int = 1
    revision: int = 0


def layout_path(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / LAYOUT_FILE


def encode_layout(
    keys: Mapping[int, NodeKey],
    ids: npt.NDArray[np.uint32],
    positions: npt.NDArray[np.floating],
    carried: Mapping[NodeKey, Position] | None = None,
    id_state: IdState | None = None,
) -> tuple[bytes, int]:
    """Serialise positions (rows aligned with raw or wire ``ids``) for nodes in ``keys``.

    ``carried`` adds saved positions of nodes that are absent now but may come back; a node
    present in the snapshot wins over a carried entry for the same key.  ``id_state`` (the
    store's) supplies the revision, the id counter and the ids of carried entries.
    """
    entries = []
    written: set[NodeKey] = set()
    top = 0
    for raw_id, row in zip(ids.tolist(), positions.tolist(), strict=True):
        raw = int(raw_id) & ID_MASK
        key = keys.get(raw)
        if key is None or not all(math.isfinite(c) for c in row):
            continue
        written.add(key)
        top = max(top, raw)
        entries.append(
            _Entry(key.kind.name.lower(), key.external_id, (row[0], row[1], row[2]), raw)
        )
    reserved = id_state.reserved if id_state is not None else {}
    for key, p in (carried or {}).items():
        if key not in written:
            n = reserved.get(key)
            top = max(top, n or 0)
            entries.append(_Entry(key.kind.name.lower(), key.external_id, p, n))
    next_id = max(top + 1, id_state.next_id if id_state is not None else 1)
    revision = id_state.revision if id_state is not None else 0
    layout = _Layout(FORMAT_VERSION, entries, revision=revision, next_id=next_id)
    return msgspec.json.encode(layout), len(entries)


def save_layout(
    path: Path,
    keys: Mapping[int, NodeKey],
    ids: npt.NDArray[np.uint32],
    positions: npt.NDArray[np.floating],
    carried: Mapping[NodeKey, Position] | None = None,
    id_state: IdState | None = None,
) -> int:
    """Save atomically; return the number of nodes written.  OSError propagates (caller logs)."""
    data, count = encode_layout(keys, ids, positions, carried, id_state)
    write_atomic(path, data)
    return count


def decode_layout(data: bytes) -> LoadReport:
    """Parse a layout file (version 1 or 2); raise ValueError saying what is wrong."""
    try:
        layout = jsonsafe.decode(data, _LAYOUT)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a layout file: {exc}") from exc
    if layout.version not in READABLE_VERSIONS:
        raise ValueError(f"unsupported layout version {layout.version}")
    positions: dict[NodeKey, Position] = {}
    ids: dict[NodeKey, int] = {}
    owner: dict[int, int] = {}  # raw id -> index of the entry that has it
    for i, e in enumerate(layout.nodes):
        try:
            kind = NodeKind[e.kind.upper()]
        except KeyError:
            raise ValueError(f"nodes[{i}].kind: unknown kind {e.kind!r}") from None
        key = NodeKey(kind, e.id)
        try:
            positions[key] = check_position(e.p, f"nodes[{i}].p")
        except GraphError as exc:
            raise ValueError(str(exc)) from None
        if e.n is None or layout.version < 2:
            continue  # version 1 had no ids: the node gets a new one, as before
        if not 1 <= e.n <= ID_MASK:
            raise ValueError(f"nodes[{i}].n: {e.n} is not a node id (1 to {ID_MASK})")
        if owner.get(e.n, i) != i:
            raise ValueError(f"nodes[{i}].n: id {e.n} already used by nodes[{owner[e.n]}]")
        owner[e.n] = i
        ids[key] = e.n
    if layout.version < 2:
        return LoadReport(positions)
    revision = layout.revision or 0
    if revision < 0:
        raise ValueError(f"revision: {revision} is negative")
    next_id = max(layout.next_id or 1, max(ids.values(), default=0) + 1)
    return LoadReport(positions, ids=ids, next_id=next_id, revision=revision)


def load_layout(path: Path) -> LoadReport:
    """Read a layout file; problems come back as ``error`` (the caller says it: once), never
    raised."""
    try:
        data = read_bounded(path, STATE_FILE_MAX)
    except FileNotFoundError:
        return LoadReport({}, missing=True)
    except OSError as exc:
        return LoadReport({}, error=f"cannot read {path}: {exc.strerror or exc}")
    try:
        return decode_layout(data)
    except ValueError as exc:
        return LoadReport({}, error=f"{path}: {exc}")


class LayoutSaver:
    """Supervised child: saves the engine's latest snapshot every ``interval`` seconds and once
    more when cancelled (shutdown).  File work runs in a worker thread.

    A failing save (an unwritable ``state.dir``, a full disk) is logged once as a warning, and
    again only when the error changes; it is retried after ``interval``, then twice that, up
    to ``RETRY_MAX``; meanwhile ``health`` says degraded, with the error and the path.  The
    first save that works again is logged once and clears it.
    """

    def __init__(
        self,
        engine: PhysicsEngine,
        store: GraphStore,
        state_dir: str,
        interval: float,
        carried: Callable[[], Mapping[NodeKey, Position]] | None = None,
        health: SubsystemHealth | None = None,
    ) -> None:
        self.engine = engine
        self.carried = carried
        self.store = store
        self.path = layout_path(state_dir)
        self.interval = interval
        self.health = health
        self.saved_tick = -1
        self.last_error: str | None = None
        self.failures = 0  # consecutive failed saves
        # anyio time by which the final save must be done or left behind: the end of the
        # shutdown's grace, set by the service when it begins (an import holding the store's
        # lock would otherwise hold the exit FINAL_SAVE_TIMEOUT_S past the grace)
        self.stop_by = math.inf
        self._writing = threading.Lock()  # one save's thread at a time, abandoned ones included
        self._report()

    def next_delay(self) -> float:
        """Seconds until the next save: ``interval``, or the backoff after failures."""
        if not self.failures:
            return self.interval
        cap = max(self.interval, RETRY_MAX)
        return min(cap, self.interval * 2.0 ** min(self.failures - 1, 32))

    async def save_now(self) -> bool:
        """Save the latest snapshot unless it was saved already.

        The save runs in a daemon thread that a cancel does not wait for: it waits for the
        store's lock, which an import holds for seconds, and a shutdown must not wait for that
        (a periodic save caught there held a stop 1.2 s past its grace). An abandoned save
        still finishes before the next one writes (``_writing``), so an older snapshot never
        replaces a newer one."""
        snap = self.engine.latest
        if snap is None or snap.sequence == self.saved_tick:
            return False
        carried = self.carried() if self.carried is not None else None
        store = self.store

        def save() -> int:
            # The keys are read in the worker: they need the store's lock, which an import or
            # an export may hold for seconds, and the event loop must not wait for it.
            with self._writing:
                with store.lock:
                    keys, id_state = store.keys(), store.id_state()
                return save_layout(
                    self.path, keys, snap.nodes.ids, snap.nodes.positions, carried, id_state
                )

        try:
            await run_abandonable(save, name="layout save")
        except OSError as exc:
            self._failed(exc)
            return False
        self.saved_tick = snap.sequence
        self._saved()
        return True

    def _failed(self, exc: OSError) -> None:
        # strerror without the file name: the temporary file's name changes on every try
        error = exc.strerror or str(exc) or type(exc).__name__
        self.failures += 1
        if error != self.last_error:
            log.warning(
                "cannot save the layout to {}: {}; health shows layout degraded, retrying "
                "with backoff (at most every {:g} s) until a save works",
                self.path,
                error,
                max(self.interval, RETRY_MAX),
            )
        else:
            log.debug("layout save failed again ({}): {}", self.failures, error)
        self.last_error = error
        self._report()

    def _saved(self) -> None:
        if self.last_error is not None:
            log.info(
                "layout saved to {} again, after {} failed attempt(s)", self.path, self.failures
            )
        self.last_error = None
        self.failures = 0
        self._report()

    def _report(self) -> None:
        if self.health is None:
            return
        self.health.detail.update(
            degraded=self.last_error is not None,
            error=self.last_error,
            path=str(self.path),
            failures=self.failures,
        )

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        try:
            while True:
                await anyio.sleep(self.next_delay())
                await self.save_now()
        finally:
            with anyio.CancelScope(shield=True):
                began = anyio.current_time()
                with anyio.move_on_at(min(began + FINAL_SAVE_TIMEOUT_S, self.stop_by)) as bounded:
                    await self.save_now()
                if bounded.cancelled_caught:
                    log.warning(
                        "the last layout save to {} did not finish within {:.1f} s (the rest of "
                        "the shutdown's grace); left behind (the file holds the previous save)",
                        self.path,
                        anyio.current_time() - began,
                    )
