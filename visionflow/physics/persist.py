"""Layout persistence: save positions atomically, restore them for nodes that still exist.

Positions are keyed by each node's stable key (kind + external id), not by its u32 id, which is
only stable within one process.  The file is JSON (msgspec): ``{"version": 1, "nodes":
[{"kind": "knowledge", "id": "...", "p": [x, y, z]}, ...]}``.  Saving writes a temporary file in
the same directory, fsyncs it, renames it over the old one and fsyncs the directory, so a crash
leaves either the old or the new file.  A corrupt, truncated or foreign file is reported (a
LoadReport with ``error`` set, and a log line) and ignored: never fatal.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
from visionflow.fileio import write_atomic
from visionflow.graph.store import ID_MASK, GraphStore, NodeKey, NodeKind, check_position

if TYPE_CHECKING:
    from visionflow.physics.engine import PhysicsEngine

log = logger.bind(subsystem="physics")

LAYOUT_FILE = "layout.json"
FORMAT_VERSION = 1


class _Entry(msgspec.Struct, array_like=False, forbid_unknown_fields=True):
    kind: str
    id: str
    p: tuple[float, float, float]


class _Layout(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    nodes: list[_Entry]


_LAYOUT = msgspec.json.Decoder(_Layout)


@dataclass(frozen=True, slots=True)
class LoadReport:
    positions: dict[NodeKey, tuple[float, float, float]]
    error: str | None = None  # set when the file was unusable; positions is then empty
    missing: bool = False  # no file yet (first run)


@dataclass(frozen=True, slots=True)
class RestoreReport:
    restored: int
    skipped: int  # saved nodes that no longer exist
    error: str | None = None


def layout_path(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / LAYOUT_FILE


def encode_layout(
    keys: Mapping[int, NodeKey],
    ids: npt.NDArray[np.uint32],
    positions: npt.NDArray[np.floating],
    carried: Mapping[NodeKey, tuple[float, float, float]] | None = None,
) -> tuple[bytes, int]:
    """Serialise positions (rows aligned with raw or wire ``ids``) for nodes in ``keys``.

    ``carried`` adds saved positions of nodes that are absent now but may come back; a node
    present in the snapshot wins over a carried entry for the same key.
    """
    entries = []
    written: set[NodeKey] = set()
    for raw_id, row in zip(ids.tolist(), positions.tolist(), strict=True):
        key = keys.get(int(raw_id) & ID_MASK)
        if key is None or not all(math.isfinite(c) for c in row):
            continue
        written.add(key)
        entries.append(_Entry(key.kind.name.lower(), key.external_id, (row[0], row[1], row[2])))
    for key, p in (carried or {}).items():
        if key not in written:
            entries.append(_Entry(key.kind.name.lower(), key.external_id, p))
    return msgspec.json.encode(_Layout(FORMAT_VERSION, entries)), len(entries)


def save_layout(
    path: Path,
    keys: Mapping[int, NodeKey],
    ids: npt.NDArray[np.uint32],
    positions: npt.NDArray[np.floating],
    carried: Mapping[NodeKey, tuple[float, float, float]] | None = None,
) -> int:
    """Save atomically; return the number of nodes written.  OSError propagates (caller logs)."""
    data, count = encode_layout(keys, ids, positions, carried)
    write_atomic(path, data)
    return count


def decode_layout(data: bytes) -> dict[NodeKey, tuple[float, float, float]]:
    """Parse a layout file; raise ValueError saying what is wrong."""
    try:
        layout = jsonsafe.decode(data, _LAYOUT)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a layout file: {exc}") from exc
    if layout.version != FORMAT_VERSION:
        raise ValueError(f"unsupported layout version {layout.version}")
    out: dict[NodeKey, tuple[float, float, float]] = {}
    for i, e in enumerate(layout.nodes):
        try:
            kind = NodeKind[e.kind.upper()]
        except KeyError:
            raise ValueError(f"nodes[{i}].kind: unknown kind {e.kind!r}") from None
        try:
            out[NodeKey(kind, e.id)] = check_position(e.p, f"nodes[{i}].p")
        except GraphError as exc:
            raise ValueError(str(exc)) from None
    return out


def load_layout(path: Path) -> LoadReport:
    """Read a layout file; problems come back as ``error`` (and a warning), never raised."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return LoadReport({}, missing=True)
    except OSError as exc:
        log.warning("cannot read layout {}: {}", path, exc)
        return LoadReport({}, error=f"cannot read {path}: {exc}")
    try:
        positions = decode_layout(data)
    except ValueError as exc:
        log.warning("ignoring layout {}: {}", path, exc)
        return LoadReport({}, error=f"{path}: {exc}")
    return LoadReport(positions)


def restore_layout(store: GraphStore, path: Path) -> RestoreReport:
    """Queue saved positions for nodes of ``store`` that still exist (applied on next sync)."""
    report = load_layout(path)
    if report.error is not None:
        return RestoreReport(0, 0, report.error)
    by_key = {key: raw for raw, key in store.keys().items()}
    wanted = {by_key[k]: p for k, p in report.positions.items() if k in by_key}
    restored = store.set_positions(wanted) if wanted else 0
    return RestoreReport(restored, len(report.positions) - len(wanted))


class LayoutSaver:
    """Supervised child: saves the engine's latest snapshot every ``interval`` seconds and once
    more when cancelled (shutdown).  File work runs in a worker thread.
    """

    def __init__(
        self,
        engine: PhysicsEngine,
        store: GraphStore,
        state_dir: str,
        interval: float,
        carried: Callable[[], Mapping[NodeKey, tuple[float, float, float]]] | None = None,
    ) -> None:
        self.engine = engine
        self.carried = carried
        self.store = store
        self.path = layout_path(state_dir)
        self.interval = interval
        self.saved_tick = -1
        self.last_error: str | None = None

    async def save_now(self) -> bool:
        snap = self.engine.latest
        if snap is None or snap.tick == self.saved_tick:
            return False
        keys = self.store.keys()
        carried = self.carried() if self.carried is not None else None
        try:
            await anyio.to_thread.run_sync(
                save_layout, self.path, keys, snap.ids, snap.positions, carried
            )
        except OSError as exc:
            self.last_error = f"cannot save layout to {self.path}: {exc}"
            log.warning(self.last_error)
            return False
        self.saved_tick = snap.tick
        self.last_error = None
        return True

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        try:
            while True:
                await anyio.sleep(self.interval)
                await self.save_now()
        finally:
            with anyio.CancelScope(shield=True):
                await self.save_now()
