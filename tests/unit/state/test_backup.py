"""Backups of a store and of a state dir, and restores: what goes in, what is refused, what a
restore leaves behind. (tests/e2e/test_state_backup.py runs them as commands against a real
service.)"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from visionflow import settings as s
from visionflow.graph.store import GraphStore, NodeKey, NodeKind
from visionflow.live_settings import LAYOUT_MODEL_MARK, LiveSettings
from visionflow.protocol.snapshot import Snapshot
from visionflow.state import archive as ar
from visionflow.state import backup as bk
from visionflow.state import restore, save_graph
from visionflow.state.layout import layout_path, save_layout
from visionflow.state.lockfile import StateDirBusyError, StateLock

BASE: dict[str, Any] = s.to_dict(s.Settings())


def _store() -> GraphStore:
    store = GraphStore()
    store.import_document(
        {
            "nodes": [{"id": "a", "label": "A"}, {"id": "b"}, {"id": "c"}],
            "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}],
        }
    )
    store.upsert_node(NodeKind.AGENT, "local/agent/x")
    return store


def _snapshot(store: GraphStore) -> Snapshot:
    d = store.sync()
    positions = np.arange(3 * d.n, dtype=np.float32).reshape(d.n, 3)
    return Snapshot.create(7, d.flagged.astype(np.uint32), positions, np.zeros_like(positions))


def _state_dir(tmp_path: Path, *, overrides: str | None = None) -> Path:
    """A state dir as a service leaves it: graph.json, layout.json and maybe overrides."""
    d = tmp_path / "state"
    store = _store()
    save_graph(store, str(d))
    snap = _snapshot(store)
    save_layout(
        layout_path(d), store.keys(), snap.nodes.ids, snap.nodes.positions, None, store.id_state()
    )
    if overrides is not None:
        (d / "settings-overrides.toml").write_text(overrides)
    return d


OVERRIDES = f"# header\n{LAYOUT_MODEL_MARK}\n[physics.knowledge]\nspring_k = 2.0\n"


def test_a_running_store_s_backup_restores_its_ids_places_and_graph(tmp_path: Path) -> None:
    store = _store()
    snap = _snapshot(store)
    carried = {NodeKey(NodeKind.AGENT, "gone/agent/y"): (1.0, 2.0, 3.0)}
    overrides = {"physics": {"knowledge": {"spring_k": 2.0}}}
    data = bk.service_backup(store, snap, carried, overrides)
    backup = ar.unpack(data)
    m = backup.manifest
    assert m.source == "service"
    assert m.summary == ar.Summary(knowledge_nodes=3, edges=2, positions=5, overrides=1)
    assert [i.name for i in m.members] == [
        "graph.json",
        "layout.json",
        "settings-overrides.toml",
    ]
    assert LAYOUT_MODEL_MARK.encode() in backup.members["settings-overrides.toml"]

    target = tmp_path / "restored"
    done = bk.restore_backup(backup, str(target), BASE)
    assert done.replaced is None and done.written == [i.name for i in m.members]
    # what the service does at start with those files
    again = GraphStore()
    pending = restore(again, str(target), endpoints=["local", "gone"])
    assert {n.key: n.id for n in again.nodes()} == {
        n.key: n.id for n in store.nodes() if n.key.kind is NodeKind.KNOWLEDGE
    }
    assert again.revision > store.revision - 1  # the revision continues
    assert NodeKey(NodeKind.AGENT, "gone/agent/y") in pending.carried()
    d = again.sync()
    got = {again.node(int(r)).key: p.tolist() for r, p in zip(d.ids, d.pos, strict=True)}  # type: ignore[union-attr]
    want = {
        store.node(int(r) & 0x3FFFFFFF).key: p.tolist()  # type: ignore[union-attr]
        for r, p in zip(snap.nodes.ids, snap.nodes.positions, strict=True)
    }
    assert all(got[k] == want[k] for k in got)
    live = LiveSettings(BASE, target)
    live.load_overrides()
    assert live.current.physics.knowledge.spring_k == 2.0


def test_the_graph_and_its_ids_are_read_in_one_hold_of_the_store_lock() -> None:
    store = _store()
    held: list[bool] = []
    real_keys = store.keys

    def keys() -> dict[int, NodeKey]:
        held.append(store.lock._is_owned())  # type: ignore[attr-defined]
        return real_keys()

    store.keys = keys  # type: ignore[method-assign]
    bk.service_members(store, None, {}, {})
    assert held == [True]


def test_a_stopped_service_s_files_back_up_and_restore_over_old_ones(tmp_path: Path) -> None:
    d = _state_dir(tmp_path, overrides=OVERRIDES)
    data, summary = bk.files_backup(str(d), BASE)
    assert summary == ar.Summary(knowledge_nodes=3, edges=2, positions=4, overrides=1)
    backup = ar.unpack(data)
    assert backup.manifest.source == "files"
    for name, content in backup.members.items():
        assert (d / name).read_bytes() == content
    (d / "graph.json").write_bytes(b"something newer")
    (d / "settings-overrides.toml").unlink()
    done = bk.restore_backup(backup, str(d), BASE)
    assert done.replaced is not None and done.replaced.name.startswith("replaced-")
    assert (done.replaced / "graph.json").read_bytes() == b"something newer"
    assert sorted(p.name for p in done.replaced.iterdir()) == ["graph.json", "layout.json"]
    for name, content in backup.members.items():
        assert (d / name).read_bytes() == content
    assert not list(d.glob(".*.tmp"))
    # a second restore in the same second gets its own folder
    again = bk.restore_backup(backup, str(d), BASE)
    assert again.replaced is not None and again.replaced != done.replaced


def test_a_restore_makes_the_state_exactly_the_backup_s(tmp_path: Path) -> None:
    d = _state_dir(tmp_path, overrides=OVERRIDES)
    only_graph = ar.pack(
        [ar.Member("graph.json", (d / "graph.json").read_bytes(), 2)],
        visionflow_version="0",
        created="",
        source="files",
        summary=ar.Summary(),
    )
    done = bk.restore_backup(ar.unpack(only_graph), str(d), BASE)
    assert sorted(p.name for p in d.iterdir() if p.is_file()) == ["graph.json", "visionflow.lock"]
    assert done.replaced is not None
    assert (done.replaced / "settings-overrides.toml").read_text() == OVERRIDES


def test_backing_up_nothing_or_nowhere_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ar.BackupError, match="no state directory"):
        bk.files_backup(str(tmp_path / "absent"), BASE)
    assert not (tmp_path / "absent").exists()
    with pytest.raises(ar.BackupError, match="no state files in"):
        bk.files_backup(str(tmp_path), BASE)


def test_a_damaged_state_file_is_named_not_backed_up(tmp_path: Path) -> None:
    d = _state_dir(tmp_path)
    (d / "layout.json").write_bytes(b'{"version": 2, "nodes": [{"kind": "alien"')
    with pytest.raises(ar.BackupError, match=re.escape("layout.json: not a layout file")):
        bk.files_backup(str(d), BASE)


def test_a_fifo_in_place_of_a_state_file_is_not_read(tmp_path: Path) -> None:
    d = _state_dir(tmp_path)
    (d / "graph.json").unlink()
    os.mkfifo(d / "graph.json")
    with pytest.raises(ar.BackupError, match="is not a regular file"):
        bk.files_backup(str(d), BASE)


def test_both_are_refused_while_the_dir_is_held(tmp_path: Path) -> None:
    d = _state_dir(tmp_path)
    backup = ar.unpack(bk.files_backup(str(d), BASE)[0])
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    with StateLock.take(str(d), "serve"):
        with pytest.raises(StateDirBusyError, match="a running VisionFlow service"):
            bk.files_backup(str(d), BASE)
        with pytest.raises(StateDirBusyError):
            bk.restore_backup(backup, str(d), BASE)
    assert {p.name: p.read_bytes() for p in d.iterdir() if p.name != "visionflow.lock"} == {
        k: v for k, v in before.items() if k != "visionflow.lock"
    }


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"graph.json": b'{"version": 3, "nodes": []}'}, "graph.json: format version 3 is newer"),
        (
            {"layout.json": b'{"version": 3, "nodes": []}'},
            "layout.json: unsupported layout version 3",
        ),
        ({"settings-overrides.toml": b"[physics\n"}, "settings-overrides.toml: not a TOML file"),
        ({"settings-overrides.toml": b"a = " + b"[" * 2000}, "settings-overrides.toml: "),
        (
            {"settings-overrides.toml": f"{LAYOUT_MODEL_MARK}\n[server]\nport = 1\n".encode()},
            "server.port: not a setting that changes at runtime",
        ),
        (
            {"settings-overrides.toml": f"{LAYOUT_MODEL_MARK}\n[physics]\nrate_hz = -1\n".encode()},
            "physics.rate_hz = -1",
        ),
    ],
)
def test_members_the_service_could_not_read_are_refused(
    files: dict[str, bytes], message: str
) -> None:
    with pytest.raises(ar.BackupError, match=re.escape(message)):
        bk.check_members(files, BASE)


def test_older_formats_go_in_as_they_are_and_the_service_migrates_them(tmp_path: Path) -> None:
    graph_v1 = json.dumps({"nodes": [{"id": "a"}], "edges": [], "revision": 1}).encode()
    layout_v1 = json.dumps(
        {"version": 1, "nodes": [{"kind": "knowledge", "id": "a", "p": [1, 2, 3]}]}
    ).encode()
    overrides_v1 = b"[physics.knowledge]\nspring_k = 0.5\nenabled = true\n"  # no model mark
    members, summary = bk.check_members(
        {"graph.json": graph_v1, "layout.json": layout_v1, "settings-overrides.toml": overrides_v1},
        BASE,
    )
    assert [(m.name, m.version) for m in members] == [
        ("graph.json", 1),
        ("layout.json", 1),
        ("settings-overrides.toml", 1),
    ]
    assert summary == ar.Summary(knowledge_nodes=1, edges=0, positions=1, overrides=2)
    backup = ar.unpack(
        ar.pack(members, visionflow_version="0", created="", source="files", summary=summary)
    )
    d = tmp_path / "state"
    bk.restore_backup(backup, str(d), BASE)
    store = GraphStore()
    restore(store, str(d))
    assert len(store) == 1
    assert store.sync().pos[0].tolist() == [1.0, 2.0, 3.0]
    live = LiveSettings(BASE, d)
    live.load_overrides()  # the old model's spring_k is dropped, enabled kept, file rewritten
    assert live.current.physics.knowledge.spring_k == s.Settings().physics.knowledge.spring_k
    assert LAYOUT_MODEL_MARK in (d / "settings-overrides.toml").read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root restores files for another user")
def test_a_restore_run_as_root_leaves_the_files_to_the_state_dir_s_owner(tmp_path: Path) -> None:
    # `sudo visionflow state restore` into a DynamicUser= service's state directory: files of
    # root's, mode 0600, would be unreadable to the service
    d = _state_dir(tmp_path)
    backup = ar.unpack(bk.files_backup(str(d), BASE)[0])
    for path in [d, *d.iterdir()]:
        os.chown(path, 4321, 4321)
    done = bk.restore_backup(backup, str(d), BASE)
    assert done.replaced is not None
    owned = [d / "graph.json", d / "layout.json", d / "visionflow.lock", done.replaced]
    assert {(p.stat().st_uid, p.stat().st_gid) for p in owned} == {(4321, 4321)}
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    os.chown(fresh, 4321, 4321)
    bk.restore_backup(backup, str(fresh), BASE)
    assert {p.stat().st_uid for p in fresh.iterdir()} == {4321}
