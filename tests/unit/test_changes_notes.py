"""GraphChanges and a notes vault: the first read replaces the notes, every later one applies
only its delta, so only what a change reaches is reheated and every other note keeps its id."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from visionflow.changes import GraphChanges
from visionflow.errors import GraphError
from visionflow.graph.agents import AgentGraph
from visionflow.graph.store import GraphStore, NodeKind
from visionflow.notes.build import build_graph
from visionflow.notes.live import LiveVault
from visionflow.notes.vault import scan_vault
from visionflow.protocol.messages import ServerMessage


class Quiet:
    def wake(self) -> None: ...

    def restart_warmup(self) -> None: ...

    def publish(self, message: ServerMessage) -> None: ...


def setup(tmp_path: Path, *, max_nodes: int = 1000) -> tuple[GraphChanges, GraphStore, LiveVault]:
    root = tmp_path / "vault"
    root.mkdir()
    # a chain a - b - c, and far away a chain x - y - z
    for name, text in {
        "a": "[[b]]",
        "b": "[[c]]",
        "c": "",
        "x": "[[y]]",
        "y": "[[z]]",
        "z": "",
    }.items():
        (root / f"{name}.md").write_text(text)
    store = GraphStore(max_nodes=max_nodes)
    quiet = Quiet()
    changes = GraphChanges(store, AgentGraph(store), quiet, quiet)
    vault = LiveVault(root, max_file_bytes=1 << 16, max_notes=100)
    changes.load_notes(vault)
    return changes, store, vault


def heat(store: GraphStore) -> dict[str, float]:
    d = store.sync()
    keys = store.keys()
    return {keys[int(raw)].external_id: float(h) for raw, h in zip(d.ids, d.heat, strict=True)}


def cool(store: GraphStore) -> None:
    store.sync().heat[:] = 0.0


def notes_in_store(store: GraphStore) -> dict[str, int]:
    return {n.key.external_id: n.id for n in store.nodes() if n.key.kind is NodeKind.KNOWLEDGE}


def test_an_edit_reheats_only_around_what_it_touches(tmp_path: Path) -> None:
    changes, store, vault = setup(tmp_path)
    ids = notes_in_store(store)
    cool(store)
    root = vault.root
    (root / "a.md").write_text("[[c]]")  # a - b becomes a - c
    read = changes.update_notes(vault, [str(root / "a.md")])
    assert read is not None and read.delta
    warm = heat(store)
    assert warm["note:a"] > 0 and warm["note:b"] > 0 and warm["note:c"] > 0
    assert warm["note:x"] == warm["note:y"] == warm["note:z"] == 0.0  # out of reach
    assert notes_in_store(store) == ids  # every note kept its id
    doc = build_graph(scan_vault(root, max_file_bytes=1 << 16, max_notes=100).notes)
    assert {(e["source"], e["target"]) for e in doc["edges"]} == {
        (s.key.external_id, t.key.external_id)
        for s, t in ((store.node(e.source), store.node(e.target)) for e in store.edges())
        if s is not None and t is not None
    }


def test_nothing_read_changes_nothing(tmp_path: Path) -> None:
    changes, store, vault = setup(tmp_path)
    revision = store.revision
    assert changes.update_notes(vault, [str(vault.root / "picture.png")]) is None
    read = changes.update_notes(vault, None)  # everything again: the same notes
    assert read is not None and not read.delta
    cool(store)
    assert store.revision == revision and not np.any(store.sync().heat)


def test_notes_an_import_removed_come_back_whole(tmp_path: Path) -> None:
    changes, store, vault = setup(tmp_path)
    store.import_document({"nodes": [{"id": "mine"}], "edges": []}, "replace")
    assert "note:a" not in notes_in_store(store)
    (vault.root / "d.md").write_text("[[a]]")
    changes.update_notes(vault, [str(vault.root / "d.md")])
    assert {"note:a", "note:d", "note:z", "mine"} <= notes_in_store(store).keys()


def test_a_graph_too_full_leaves_it_as_it_was_and_the_next_read_applies_whole(
    tmp_path: Path,
) -> None:
    changes, store, vault = setup(tmp_path, max_nodes=7)
    before = notes_in_store(store)
    for name in ("d", "e"):
        (vault.root / f"{name}.md").write_text("")
    with pytest.raises(GraphError):
        changes.update_notes(vault, [str(vault.root / "d.md"), str(vault.root / "e.md")])
    assert notes_in_store(store) == before
    (vault.root / "e.md").unlink()
    changes.update_notes(vault, [str(vault.root / "e.md")])
    assert set(notes_in_store(store)) == set(before) | {"note:d"}
