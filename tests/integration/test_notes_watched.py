"""knowledge.path is watched: notes written, edited, renamed and deleted reach the graph of the
running service, with every other node keeping its id and its place."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from support.servicekit import eventually, running

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

DEADLINE_S = 20.0


def settings(tmp_path: Path, root: Path) -> dict[str, Any]:
    return {
        "state": {"dir": str(tmp_path / "state")},
        "knowledge": {"path": str(root)},
        # a short cooling schedule: the layout settles within a second or two
        "physics": {"rate_hz": 240.0, "knowledge": {"cooling_steps": 40}},
    }


async def graph(client: httpx.AsyncClient) -> tuple[dict[str, Any], set[tuple[str, str]]]:
    """Nodes by key, and edges as pairs of keys."""
    page = (await client.get("/api/graph/data", params={"limit": 100000})).json()
    nodes = {n["key"]: n for n in page["nodes"]}
    by_id = {n["id"]: n["key"] for n in page["nodes"]} | {
        n["flagged_id"]: n["key"] for n in page["nodes"]
    }
    edges = {tuple(sorted((by_id[e["source"]], by_id[e["target"]]))) for e in page["edges"]}
    return nodes, edges  # type: ignore[return-value]


async def notes_health(client: httpx.AsyncClient) -> dict[str, Any]:
    health: dict[str, Any] = (await client.get("/api/health")).json()["subsystems"]["notes"]
    return health


async def settled(client: httpx.AsyncClient) -> bool:
    physics = (await client.get("/api/health")).json()["subsystems"]["physics"]["detail"]
    return bool(physics.get("settled"))


def write(root: Path, rel: str, text: str | bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # as editors save: a temporary file, renamed
    if isinstance(text, bytes):
        tmp.write_bytes(text)
    else:
        tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


async def test_notes_written_edited_renamed_and_deleted_reach_the_running_graph(
    tmp_path: Path,
) -> None:
    root = tmp_path / "vault"
    write(root, "Physics.md", "See [[Swarm]]")
    write(root, "Swarm.md", "Agents [[Physics]]")
    write(root, "Layout.md", "")
    # a part of the graph no edit below touches
    write(root, "far/X.md", "[[Y]]")
    write(root, "far/Y.md", "[[Z]]")
    write(root, "far/Z.md", "")
    async with running(settings(tmp_path, root)) as (_, client):
        nodes, edges = await graph(client)
        assert ("note:physics", "note:swarm") in edges
        ids = {key: n["id"] for key, n in nodes.items()}

        # a new note appears, with its link
        write(root, "Idea.md", "[[Layout]]")

        async def idea_is_there() -> bool:
            nodes, edges = await graph(client)
            return "note:idea" in nodes and ("note:idea", "note:layout") in edges

        await eventually(idea_is_there, DEADLINE_S)

        # an edited link moves its edge; every node keeps its id, and once the layout rests,
        # what the edit does not reach keeps its place to the bit
        await eventually(lambda: settled(client), 60.0)
        before, _ = await graph(client)
        write(root, "Physics.md", "See [[Layout]]")

        async def edge_moved() -> bool:
            _, edges = await graph(client)
            return ("note:layout", "note:physics") in edges and (
                "note:physics",
                "note:swarm",
            ) in edges  # Swarm still links to Physics

        await eventually(edge_moved, DEADLINE_S)
        write(root, "Swarm.md", "Agents, on their own now")

        async def edge_gone() -> bool:
            _, edges = await graph(client)
            return ("note:physics", "note:swarm") not in edges

        await eventually(edge_gone, DEADLINE_S)
        await eventually(lambda: settled(client), 60.0)
        after, _ = await graph(client)
        assert {k: n["id"] for k, n in after.items() if k in ids} == ids
        for key in ("note:x", "note:y", "note:z"):
            assert after[key]["position"] == before[key]["position"], key

        # a rename: a new id; the old one stays a placeholder while a link names it
        write(root, "Layout.md", "[[Swarm]]")
        os.rename(root / "Swarm.md", root / "Hive.md")

        async def renamed() -> bool:
            nodes, _ = await graph(client)
            return "note:hive" in nodes and nodes.get("note:swarm", {}).get("group") == (
                "placeholder"
            )

        await eventually(renamed, DEADLINE_S)

        # a deletion: gone, since nothing links to it
        (root / "Hive.md").unlink()

        async def deleted() -> bool:
            nodes, _ = await graph(client)
            return "note:hive" not in nodes

        await eventually(deleted, DEADLINE_S)

        # a file that cannot be read shows in health; fixed, it is a note
        write(root, "broken.md", b"\xff\xfe not utf-8")

        async def reported() -> bool:
            detail = (await notes_health(client))["detail"]
            return detail["problems"] == 1 and detail.get("degraded") is True

        await eventually(reported, DEADLINE_S)
        assert (await notes_health(client))["detail"]["first_problems"][0].startswith(
            "broken.md: not UTF-8"
        )
        write(root, "broken.md", "fixed")

        async def fixed() -> bool:
            health = await notes_health(client)
            nodes, _ = await graph(client)
            return health["detail"]["problems"] == 0 and "note:broken" in nodes

        await eventually(fixed, DEADLINE_S)
        health = await notes_health(client)
        assert health["state"] == "running" and "degraded" not in health["detail"]
        assert health["detail"]["notes"] == len(list(root.rglob("*.md")))


async def test_a_burst_of_files_is_applied_in_a_few_batches(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    write(root, "Hub.md", "")
    async with running(settings(tmp_path, root)) as (_, client):

        async def caught_up() -> int:
            health = await notes_health(client)
            return int(health["detail"].get("batches", 0))  # the start's catch-up read done

        first = await eventually(caught_up, DEADLINE_S)
        staging = tmp_path / "staging"
        for i in range(200):  # as a checkout writes them: one after the other
            write(staging, f"pulled/p{i:03}.md", f"[[Hub]] [[p{(i + 1) % 200:03}]]")
        shutil.move(staging / "pulled", root / "pulled")  # and a folder moved in at once
        for i in range(200):
            write(root, f"more/q{i:03}.md", "[[Hub]]")

        async def all_there() -> bool:
            nodes, _ = await graph(client)
            return sum(key.startswith(("note:p", "note:q")) for key in nodes) == 400

        await eventually(all_there, DEADLINE_S)
        batches = (await notes_health(client))["detail"]["batches"] - first
        assert 1 <= batches <= 3, batches


async def test_a_vault_folder_deleted_while_watched_is_reported_and_read_when_back(
    tmp_path: Path,
) -> None:
    root = tmp_path / "vault"
    write(root, "A.md", "[[B]]")
    write(root, "B.md", "")
    async with running(settings(tmp_path, root)) as (_, client):

        async def watching() -> bool:  # the start's catch-up read is done
            return bool((await notes_health(client))["detail"].get("batches"))

        await eventually(watching, DEADLINE_S)
        moved = tmp_path / "elsewhere"
        os.rename(root, moved)

        async def reported() -> bool:
            health = await notes_health(client)
            error = health["last_error"] or ""
            return health["state"] == "backoff" and "the graph keeps its notes" in error

        await eventually(reported, DEADLINE_S)
        assert (await client.get("/readyz")).status_code == 200  # degraded, still serving
        nodes, _ = await graph(client)
        assert "note:a" in nodes  # the graph keeps its notes meanwhile
        write(moved, "C.md", "[[A]]")
        os.rename(moved, root)

        async def back() -> bool:
            health = await notes_health(client)
            nodes, _ = await graph(client)
            return health["state"] == "running" and "note:c" in nodes

        await eventually(back, DEADLINE_S)


async def test_names_and_text_no_utf8_can_carry_are_problems_and_the_rest_works_on(
    tmp_path: Path,
) -> None:
    """A file name that is not UTF-8 (Linux hands it over as lone surrogates, and watchfiles
    drops the changes it comes with) and a front-matter escape of half a UTF-16 pair used to
    reach the graph: every read of it answered 500 and the layout saves crashed in a loop.
    Now each is a problem of the vault; an escaped pair is one character; the watch goes on."""
    root = tmp_path / "vault"
    write(root, "A.md", "[[B]]")
    write(root, "B.md", "")
    async with running(settings(tmp_path, root)) as (_, client):

        async def watching() -> bool:
            return bool((await notes_health(client))["detail"].get("batches"))

        await eventually(watching, DEADLINE_S)
        write(root, os.fsdecode(b"C\xe9.md"), "[[A]]")
        write(root, "D.md", '---\ntitle: "half \\ud800"\n---\n[[A]]\n')
        write(root, "E.md", '---\ntitle: "smile \\ud83d\\ude00"\n---\n[[A]]\n')

        async def reported() -> bool:
            problems = (await notes_health(client))["detail"].get("first_problems", [])
            nodes, _ = await graph(client)
            return (
                any(p.startswith("C\\xe9.md: its name is not UTF-8") for p in problems)
                and any(
                    p.startswith("D.md: line 2") and "half a UTF-16 pair" in p for p in problems
                )
                and "note:smile \U0001f600" in nodes  # a title names the note
            )

        await eventually(reported, DEADLINE_S)
        nodes, _ = await graph(client)
        assert nodes["note:smile \U0001f600"]["label"] == "smile \U0001f600"
        assert not any(key.startswith(("note:c", "note:half")) for key in nodes)
        write(root, "F.md", "[[B]]")  # the watch goes on after the changes it lost

        async def f_is_there() -> bool:
            nodes, _ = await graph(client)
            return "note:f" in nodes

        await eventually(f_is_there, DEADLINE_S)
        for path in ("/api/graph/data", "/api/graph/export", "/api/state/backup"):
            assert (await client.get(path)).status_code == 200, path
        health = (await client.get("/api/health")).json()
        # degraded for the skipped files alone: nothing failed or restarted
        assert health["subsystems"]["notes"]["detail"]["degraded"] is True
        for name, sub in health["subsystems"].items():
            assert sub["state"] == "running" and sub.get("restarts", 0) == 0, (name, sub)


async def test_an_edit_seen_through_a_folder_symlink_reaches_the_graph(tmp_path: Path) -> None:
    """watchfiles follows a symlink to a folder; inotify then reported an edit of notes/A.md
    as shortcut/A.md (one watch for both), which the vault does not read: it was lost, with
    nothing logged. The vault also holds a link to the folder that holds it (a sync root)."""
    root = tmp_path / "vault"
    write(root, "notes/A.md", "[[B]]")
    write(root, "notes/B.md", "")
    (root / "shortcut").symlink_to(root / "notes")
    (root / "parent").symlink_to(tmp_path)
    async with running(settings(tmp_path, root)) as (_, client):

        async def watching() -> bool:
            return bool((await notes_health(client))["detail"].get("batches"))

        await eventually(watching, DEADLINE_S)
        write(root, "notes/A.md", "[[B]] [[C]]")

        async def c_linked() -> bool:
            nodes, edges = await graph(client)
            return "note:c" in nodes and ("note:a", "note:c") in edges

        await eventually(c_linked, DEADLINE_S)
        nodes, _ = await graph(client)
        assert set(nodes) == {"note:a", "note:b", "note:c"}  # nothing read through the links


async def test_changes_behind_a_link_to_outside_the_vault_make_no_batch(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    outside = tmp_path / "outside"
    write(root, "A.md", "[[B]]")
    write(outside, "X.md", "")
    (root / "shared").symlink_to(outside)
    async with running(settings(tmp_path, root)) as (_, client):

        async def batches() -> int:
            return int((await notes_health(client))["detail"].get("batches") or 0)

        await eventually(batches, DEADLINE_S)
        before = await batches()
        for i in range(3):  # the watcher sees these through the link: each made a batch
            write(outside, f"Y{i}.md", "[[A]]")
        await anyio.sleep(2.0)  # ten times the watcher's debounce: a batch would be made
        assert await batches() == before
        write(root, "B.md", "")  # and a change in the vault still is one

        async def b_written() -> bool:
            nodes, _ = await graph(client)
            return nodes.get("note:b", {}).get("group") == "note"

        await eventually(b_written, DEADLINE_S)
        nodes, _ = await graph(client)
        assert not any(key.startswith("note:y") for key in nodes)
