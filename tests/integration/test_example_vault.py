"""The example vault: shown by a first start with no knowledge.path and nothing imported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from support.servicekit import JSON, running

from visionflow.notes.example import EXAMPLE_VAULT

pytestmark = pytest.mark.anyio

EXAMPLE_NOTES = len(list(EXAMPLE_VAULT.glob("*.md")))


def settings(state: Path, path: str = "") -> dict[str, Any]:
    return {"state": {"dir": str(state)}, "knowledge": {"path": path}}


async def keys(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    page = (await client.get("/api/graph/data", params={"limit": 10000})).json()
    return {n["key"]: n for n in page["nodes"]}


def test_the_example_is_a_real_vault_of_a_few_dozen_linked_notes() -> None:
    assert 25 <= EXAMPLE_NOTES <= 60
    assert (EXAMPLE_VAULT / "VisionFlow.md").is_file()


async def test_a_first_start_shows_the_example_and_its_pages_can_be_read(tmp_path: Path) -> None:
    async with running(settings(tmp_path / "state")) as (_, client):
        nodes = await keys(client)
        pages = [n for n in nodes.values() if n["group"] == "note"]
        assert len(pages) == EXAMPLE_NOTES
        home = nodes["note:visionflow"]
        assert home["label"] == "VisionFlow"
        assert (await client.get("/api/graph/data", params={"q": "start here"})).json()["nodes"][0][
            "key"
        ] == "note:visionflow"  # by its alias
        note = await client.get(f"/api/notes/{home['id']}")
        assert note.status_code == 200, note.text
        assert "linked notes about VisionFlow itself" in note.json()["text"]
        health = (await client.get("/api/health")).json()["subsystems"]["notes"]
        assert health["state"] == "running"
        assert health["detail"]["example"] is True
        assert health["detail"]["notes"] == EXAMPLE_NOTES and health["detail"]["problems"] == 0
    # shown again on the next start, with the same ids
    async with running(settings(tmp_path / "state")) as (_, client):
        assert (await keys(client))["note:visionflow"]["id"] == home["id"]


async def test_none_turns_it_off_and_removes_the_notes_a_former_start_saved(
    tmp_path: Path,
) -> None:
    async with running(settings(tmp_path / "state")) as (_, client):
        assert "note:visionflow" in await keys(client)
    async with running(settings(tmp_path / "state", "none")) as (_, client):
        assert await keys(client) == {}
        health = (await client.get("/api/health")).json()["subsystems"]
        assert "notes" not in health
        r = await client.get("/api/notes/0")
        assert r.status_code == 404 and r.json()["error"]["code"] == "no_vault"


async def test_the_first_import_replaces_the_example_even_a_merge(tmp_path: Path) -> None:
    edge = b'{"source": "mine", "target": "yours"}'
    doc = b'{"nodes": [{"id": "mine"}, {"id": "yours"}], "edges": [' + edge + b"]}"
    async with running(settings(tmp_path / "state")) as (_, client):
        assert "note:visionflow" in await keys(client)
        r = await client.post("/api/graph/import", content=doc, headers=JSON)
        assert r.status_code == 200, r.text
        assert r.json()["removed"] >= EXAMPLE_NOTES
        assert set(await keys(client)) == {"mine", "yours"}
        # the answer's revision is the graph's (dropping the example took one more: it was
        # one behind, and a client comparing it with graph_changed read the graph again)
        data = (await client.get("/api/graph/data", params={"limit": 0})).json()
        assert r.json()["revision"] == data["revision"]
        assert "notes" not in (await client.get("/api/health")).json()["subsystems"]
        # a second import is an ordinary merge
        r = await client.post(
            "/api/graph/import", content=b'{"nodes": [{"id": "more"}]}', headers=JSON
        )
        assert r.json()["removed"] == 0
    # the imported graph is what the next start shows: no example beside it
    async with running(settings(tmp_path / "state")) as (_, client):
        assert set(await keys(client)) == {"mine", "yours", "more"}


async def test_a_vault_of_ones_own_is_shown_instead_of_the_example(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    root.mkdir()
    (root / "Mine.md").write_text("my own [[Other]]")
    async with running(settings(tmp_path / "state")) as (_, client):
        assert "note:visionflow" in await keys(client)
    async with running(settings(tmp_path / "state", str(root))) as (_, client):
        assert set(await keys(client)) == {"note:mine", "note:other"}
        health = (await client.get("/api/health")).json()["subsystems"]["notes"]
        assert "example" not in health["detail"]
