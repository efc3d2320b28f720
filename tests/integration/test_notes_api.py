"""GET /api/notes/{id}: a page's text, and nothing outside the vault, whatever a node says."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from support.servicekit import JSON, running

pytestmark = pytest.mark.anyio


def make_vault(tmp_path: Path) -> Path:
    root = tmp_path / "vault"
    (root / "sub").mkdir(parents=True)
    (root / "Physics.md").write_text(
        "---\naliases: [layout]\n---\n# Physics\nSee [[Nowhere]] #sim\n"
    )
    (root / "sub" / "deep page.md").write_text("in a folder, with a space")
    (tmp_path / "secret.md").write_text("TOP SECRET")
    os.symlink(tmp_path / "secret.md", root / "leak.md")  # a symlink out of the vault
    return root


async def by_key(client: Any) -> dict[str, dict[str, Any]]:
    page = (await client.get("/api/graph/data")).json()
    return {n["key"]: n for n in page["nodes"]}


async def test_a_page_is_served_and_nothing_outside_the_vault(tmp_path: Path) -> None:
    root = make_vault(tmp_path)
    raw = {"state": {"dir": str(tmp_path / "state")}, "knowledge": {"path": str(root)}}
    async with running(raw) as (_, client):
        nodes = await by_key(client)
        physics = nodes["note:physics"]
        r = await client.get(f"/api/notes/{physics['id']}")
        assert r.status_code == 200, r.text
        note = r.json()
        assert note["label"] == "Physics" and note["path"] == "Physics.md"
        assert note["aliases"] == ["layout"] and "sim" in note["tags"]
        assert "See [[Nowhere]]" in note["text"]
        assert (await client.get(f"/api/notes/{physics['flagged_id']}")).status_code == 200
        deep = nodes["note:deep page"]
        assert (await client.get(f"/api/notes/{deep['id']}")).json()["text"] == (
            "in a folder, with a space"
        )
        placeholder = nodes["note:nowhere"]
        r = await client.get(f"/api/notes/{placeholder['id']}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_a_note"
        # imported nodes that claim a path: the vault check refuses every way out
        evil = [
            "../secret.md",
            "/etc/passwd",
            "%2e%2e/secret.md",
            "sub/../../secret.md",
            "leak.md",
            "sub%2f..%2f..%2fsecret.md",
            "..\\secret.md",
            ".obsidian/x.md",
        ]
        doc = {
            "nodes": [{"id": f"note:evil{i}", "metadata": {"path": p}} for i, p in enumerate(evil)],
            "edges": [],
        }
        r = await client.post("/api/graph/import", json=doc, headers=JSON)
        assert r.status_code == 200, r.text
        nodes = await by_key(client)
        for i, path in enumerate(evil):
            r = await client.get(f"/api/notes/{nodes[f'note:evil{i}']['id']}")
            assert r.status_code == 404, (path, r.text)
            assert r.json()["error"]["code"] == "note_unreadable", path
            assert "TOP SECRET" not in r.text and "root:" not in r.text
        assert (await client.get("/api/notes/999999")).status_code == 404
        assert (await client.get("/api/notes/abc")).status_code == 404  # not a number: no route


async def test_without_a_vault_every_note_is_404(tmp_path: Path) -> None:
    async with running({"state": {"dir": str(tmp_path / "state")}}) as (_, client):
        r = await client.get("/api/notes/1")
        assert r.status_code == 404 and r.json()["error"]["code"] == "no_vault"
