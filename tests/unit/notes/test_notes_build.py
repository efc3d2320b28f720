"""Notes to a graph document: ids, placeholders, how links find their page, weights, and a
document that our import takes as it is."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from visionflow.graph import document
from visionflow.graph.store import GraphStore
from visionflow.notes.build import MAX_EDGE_WEIGHT, build_graph
from visionflow.notes.parse import Link, Note, parse_note
from visionflow.notes.vault import scan_vault


def notes(**texts: str) -> list[Note]:
    """Notes from path=text pairs; '__' in a keyword is '/', and '.md' is added."""
    assert not any("___" in path for path in texts)
    return [parse_note(text, f"{path.replace('__', '/')}.md") for path, text in texts.items()]


def edges(doc: dict[str, Any]) -> dict[tuple[str, str], float]:
    return {(e["source"], e["target"]): e["weight"] for e in doc["edges"]}


def nodes(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in doc["nodes"]}


def test_pages_placeholders_and_weights() -> None:
    doc = build_graph(
        notes(
            Alpha="[[Beta]] [[Beta|again]] [[Missing Page]] [[alpha]] #topic",
            Beta="---\ntitle: Beta\naliases: [B]\n---\n[[Alpha]] [[MISSING  page]]",
            Gamma="[[b]] [[B]] #Topic #[[Other Tag]]",
        )
    )
    assert document.parse(doc).nodes  # our import format, as it is
    assert doc["nodes"] == [
        {
            "id": "note:alpha",
            "label": "Alpha",
            "group": "note",
            "metadata": {"path": "Alpha.md", "aliases": [], "tags": ["topic"]},
        },
        {
            "id": "note:beta",
            "label": "Beta",
            "group": "note",
            "metadata": {"path": "Beta.md", "aliases": ["B"], "tags": []},
        },
        {
            "id": "note:gamma",
            "label": "Gamma",
            "group": "note",
            "metadata": {"path": "Gamma.md", "aliases": [], "tags": ["Topic", "Other Tag"]},
        },
        {
            "id": "note:missing page",
            "label": "Missing Page",  # the first spelling met
            "group": "placeholder",
            "metadata": {"placeholder": True},
        },
        {
            "id": "note:other tag",
            "label": "Other Tag",
            "group": "placeholder",
            "metadata": {"placeholder": True},
        },
        {
            "id": "note:topic",
            "label": "topic",
            "group": "placeholder",
            "metadata": {"placeholder": True},
        },
    ]
    assert doc["edges"] == [
        # two links one way, one back: one undirected edge; [[alpha]] to itself is dropped
        {"source": "note:alpha", "target": "note:beta", "weight": 3.0},
        {"source": "note:alpha", "target": "note:missing page", "weight": 1.0},
        {"source": "note:alpha", "target": "note:topic", "weight": 1.0},
        {"source": "note:beta", "target": "note:gamma", "weight": 2.0},  # through the alias
        {"source": "note:beta", "target": "note:missing page", "weight": 1.0},
        {"source": "note:gamma", "target": "note:other tag", "weight": 1.0},
        {"source": "note:gamma", "target": "note:topic", "weight": 1.0},
    ]


def test_a_placeholder_keeps_its_id_once_its_page_is_written() -> None:
    before = build_graph(notes(A="[[New Idea]]"))
    after = build_graph(notes(A="[[New Idea]]", **{"new idea": "written"}))
    assert nodes(before)["note:new idea"]["group"] == "placeholder"
    assert nodes(after)["note:new idea"]["group"] == "note"
    assert edges(before) == edges(after) == {("note:a", "note:new idea"): 1.0}


def test_ids_survive_a_change_of_case_and_spacing() -> None:
    one = build_graph(notes(**{"My  Page": "[[Other]]", "Other": ""}))
    two = build_graph(notes(**{"my page": "[[OTHER]]", "other": ""}))
    assert [n["id"] for n in one["nodes"]] == [n["id"] for n in two["nodes"]]
    assert edges(one) == edges(two) == {("note:my page", "note:other"): 1.0}


def test_tags_reach_the_page_of_the_tag() -> None:
    doc = build_graph(notes(a="#project", project="tagged page", b="tags:: Project\n"))
    assert nodes(doc)["note:project"]["group"] == "note"
    assert edges(doc) == {("note:a", "note:project"): 1.0, ("note:b", "note:project"): 1.0}


def test_what_a_link_resolves_through() -> None:
    files = {
        "folder/Deep Note.md": "---\ntitle: Shown Title\naliases: Nick, Other Name\n---\n",
        "pages/lang___python.md": "alias:: py\n",
        "journals/2024_01_05.md": "",
        "x/y/z/leaf.md": "",
        "Source.md": (
            "[[deep note]] [[Shown Title]] [[NICK]] [[other   name]] [[folder/deep note]]"
            " [[Deep Note.md]] [[lang/python]] [[lang___python]] [[PY]]"
            " [[pages/lang___python]] [[Jan 5th, 2024]] [[2024_01_05]] [[z/leaf]]"
            " [[y/z/leaf]] [[/folder/Deep Note]]"
        ),
    }
    doc = build_graph(parse_note(text, path) for path, text in files.items())
    assert [n["group"] for n in doc["nodes"]] == ["note"] * 5  # every link found its page
    assert edges(doc) == {
        ("note:jan 5th, 2024", "note:source"): 2.0,
        ("note:lang/python", "note:source"): 4.0,
        ("note:leaf", "note:source"): 2.0,
        ("note:shown title", "note:source"): 7.0,
    }


def test_markdown_links_are_paths() -> None:
    doc = build_graph(
        notes(
            **{
                "a__b__Source": (
                    "[same folder](Sibling.md) [up](../Up.md) [top](/Top.md) [top2](Top.md)"
                    " [short](Far%20Away.md) [deep](c/Deeper.md) [out](../../../../Outside.md)"
                    " [missing](gone/Not%20Here.md) [ns](../../pages/x___y.md)"
                ),
                "a__b__Sibling": "",
                "a__Up": "",
                "Top": "",
                "elsewhere__Far Away": "",
                "a__b__c__Deeper": "",
            }
        )
    )
    by_id = nodes(doc)
    assert {k for k, v in by_id.items() if v["group"] == "placeholder"} == {
        "note:outside",  # above the vault: only its file name is left to match
        "note:not here",
        "note:x/y",  # a placeholder named as its file name gives: the Logseq namespace
    }
    assert edges(doc)[("note:source", "note:top")] == 2.0
    assert edges(doc)[("note:sibling", "note:source")] == 1.0
    assert edges(doc)[("note:source", "note:up")] == 1.0
    assert edges(doc)[("note:far away", "note:source")] == 1.0
    assert edges(doc)[("note:deeper", "note:source")] == 1.0


def test_two_notes_with_one_title() -> None:
    doc = build_graph(
        notes(
            index="[[a/index]]",
            a__index="[[index]]",
            b__index="[[INDEX]] [[b/index]]",
        )
    )
    assert [(n["id"], n["label"]) for n in doc["nodes"]] == [
        ("note:a/index.md", "index"),
        ("note:b/index.md", "index"),
        ("note:index", "index"),  # the name goes to the shorter path
    ]
    assert edges(doc) == {
        ("note:a/index.md", "note:index"): 2.0,
        ("note:b/index.md", "note:index"): 1.0,
    }


def test_ids_stay_unique_whatever_the_titles() -> None:
    vault_notes = [
        parse_note("", "x.md"),
        parse_note("---\ntitle: x.md\n---\n", "y.md"),  # wants note:x, which x.md has
        parse_note("---\ntitle: x.md\n---\n", "x.md.md"),  # wants note:x too
        parse_note("---\ntitle: 'x.md.md '\n---\n", "z.md"),  # note:x.md, the id of x.md.md
        parse_note("", "empty/.md"),  # no title at all
    ]
    doc = build_graph(vault_notes)
    ids = [n["id"] for n in doc["nodes"]]
    assert len(ids) == len(set(ids)) == 5
    document.parse(doc)


def test_output_is_the_same_whatever_the_order_of_the_notes(tmp_path: Path) -> None:
    vault_notes = notes(
        **{f"n{i}": " ".join(f"[[n{(i * 7 + k) % 40}]] #t{k}" for k in range(5)) for i in range(30)}
    )
    first = json.dumps(build_graph(vault_notes))
    for seed in range(5):
        shuffled = vault_notes[:]
        random.Random(seed).shuffle(shuffled)
        assert json.dumps(build_graph(shuffled)) == first


def test_a_duplicate_path_counts_once() -> None:
    a = parse_note("[[b]]", "a.md")
    doc = build_graph([a, parse_note("[[c]]", "a.md"), a])
    assert edges(doc) == {("note:a", "note:b"): 1.0}


def test_the_weight_is_capped_at_what_the_import_takes() -> None:
    assert MAX_EDGE_WEIGHT == document.MAX_WEIGHT
    many = Note("a.md", "a", "a", links=(Link("b", "wiki"),) * (int(MAX_EDGE_WEIGHT) + 5))
    doc = build_graph([many])
    assert doc["edges"] == [{"source": "note:a", "target": "note:b", "weight": MAX_EDGE_WEIGHT}]
    document.parse(doc)


def test_empty() -> None:
    assert build_graph([]) == {"nodes": [], "edges": []}


@pytest.fixture
def mixed_vault(tmp_path: Path) -> Path:
    root = tmp_path / "vault"
    files = {
        "Home.md": "---\naliases: [Start]\ntags: hub\n---\n[[Projects/Plan]] [[Ideas]] [[Nowhere]]",
        "Projects/Plan.md": "---\ntitle: The Plan\n---\n[[Start]] [[home]] #todo",
        "Ideas.md": "```\n[[Not A Link]]\n```\n[plan](Projects/Plan.md) ![[Home#Top]]",
        "journals/2024_01_05.md": "- [[The Plan]] #meeting",
        "pages/todo.md": "tags:: [[hub]]\n",
        "Broken.md": "---\ntitle: [oops\n---\n[[Home]]",
        ".obsidian/x.md": "[[Home]]",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_scanned_vault_imports_into_the_store(mixed_vault: Path) -> None:
    scan = scan_vault(mixed_vault, max_file_bytes=1 << 20, max_notes=100)
    assert [p.path for p in scan.problems] == ["Broken.md"]
    doc = build_graph(scan.notes)
    assert sorted((n["id"], n["group"]) for n in doc["nodes"]) == [
        ("note:home", "note"),
        ("note:hub", "placeholder"),
        ("note:ideas", "note"),
        ("note:jan 5th, 2024", "note"),
        ("note:meeting", "placeholder"),
        ("note:nowhere", "placeholder"),
        ("note:the plan", "note"),
        ("note:todo", "note"),
    ]
    assert edges(doc) == {
        ("note:home", "note:hub"): 1.0,
        ("note:home", "note:ideas"): 2.0,  # a link and an embed (of a heading)
        ("note:home", "note:nowhere"): 1.0,
        ("note:home", "note:the plan"): 3.0,  # by path one way; by alias and name back
        ("note:hub", "note:todo"): 1.0,
        ("note:ideas", "note:the plan"): 1.0,
        ("note:jan 5th, 2024", "note:meeting"): 1.0,
        ("note:jan 5th, 2024", "note:the plan"): 1.0,
        ("note:the plan", "note:todo"): 1.0,
    }
    body = json.dumps(doc).encode()
    store = GraphStore()
    result = store.import_document(document.decode(body), "replace")
    assert (result.added, result.edges) == (8, 9)
