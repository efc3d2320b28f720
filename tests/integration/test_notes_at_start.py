"""knowledge.path: a notes vault is read at start into the graph, next to what was imported."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.servicekit import JSON, running

pytestmark = pytest.mark.anyio


def vault(root: Path) -> Path:
    (root / ".obsidian").mkdir(parents=True)
    (root / ".obsidian" / "app.md").write_text("[[Nope]]")  # config: skipped
    (root / "Physics.md").write_text("---\naliases: [layout]\n---\nSee [[Swarm]] and #numba\n")
    (root / "Swarm.md").write_text("Agents, laid out by [[layout]] (an alias). [[Missing page]]")
    (root / "broken.md").write_bytes(b"\xff\xfe not utf-8 \x80")
    return root


async def test_a_vault_becomes_nodes_and_edges_with_its_problems_in_health(
    tmp_path: Path,
) -> None:
    root = vault(tmp_path / "vault")
    raw = {"state": {"dir": str(tmp_path / "state")}, "knowledge": {"path": str(root)}}
    async with running(raw) as (_, client):
        page = (await client.get("/api/graph/data")).json()
        labels = {n["label"]: n for n in page["nodes"]}
        assert {"Physics", "Swarm"} <= labels.keys()
        assert "Missing page" in labels  # a placeholder, as Obsidian shows it
        assert "Nope" not in labels and "broken" not in labels
        assert page["edge_count"] >= 3  # Physics-Swarm (both ways: one edge), the tag, Missing
        notes = (await client.get("/api/health")).json()["subsystems"]["notes"]
        assert notes["state"] == "running"
        detail = notes["detail"]
        assert detail["notes"] == 2 and detail["problems"] == 1
        assert detail["first_problems"][0].startswith("broken.md")
        assert detail["degraded"] is True
        # an imported node lives beside the notes
        r = await client.post(
            "/api/graph/import", content=b'{"nodes": [{"id": "mine"}], "edges": []}', headers=JSON
        )
        assert r.status_code == 200, r.text
    # the next start reads the vault again: a deleted page goes, the imported node stays
    (root / "Swarm.md").unlink()
    async with running(raw) as (_, client):
        page = (await client.get("/api/graph/data")).json()
        keys = {n["key"]: n for n in page["nodes"]}
        assert keys["note:physics"]["group"] == "note"
        assert keys["note:swarm"]["group"] == "placeholder"  # gone, but still linked to
        assert "note:missing page" not in keys  # only the deleted page linked to it
        assert "mine" in keys  # the imported node stayed


async def test_a_vault_that_cannot_be_read_is_a_failed_health_entry_not_a_failed_start(
    tmp_path: Path,
) -> None:
    raw = {
        "state": {"dir": str(tmp_path / "state")},
        "knowledge": {"path": str(tmp_path / "no-such-folder")},
    }
    async with running(raw) as (_, client):
        assert (await client.get("/readyz")).status_code == 200
        notes = (await client.get("/api/health")).json()["subsystems"]["notes"]
        assert notes["state"] == "failed" and "does not exist" in notes["last_error"]
