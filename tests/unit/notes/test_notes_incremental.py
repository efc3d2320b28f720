"""IncrementalGraph: build_graph kept current note by note, and only what changed reported."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from visionflow.notes.build import build_graph
from visionflow.notes.incremental import GraphDelta, IncrementalGraph
from visionflow.notes.parse import Note, parse_note


def note(path: str, text: str) -> Note:
    return parse_note(text, path)


def graph(**texts: str) -> IncrementalGraph:
    """A graph of path=text notes ('__' in a keyword is '/', '.md' added)."""
    g = IncrementalGraph()
    g.update(
        {
            f"{p.replace('__', '/')}.md": note(f"{p.replace('__', '/')}.md", t)
            for p, t in texts.items()
        }
    )
    return g


def apply(doc: dict[str, Any], delta: GraphDelta) -> dict[str, Any]:
    """``doc`` with ``delta`` applied, as a store applies it."""
    nodes = {n["id"]: n for n in doc["nodes"]}
    edges = {(e["source"], e["target"]): e for e in doc["edges"]}
    nodes.update({n["id"]: n for n in delta.nodes})
    edges.update({(e["source"], e["target"]): e for e in delta.edges})
    for node_id in delta.removed_nodes:
        del nodes[node_id]
    for pair in delta.removed_edges:
        del edges[pair]
    return {"nodes": [nodes[k] for k in sorted(nodes)], "edges": [edges[k] for k in sorted(edges)]}


def test_a_link_edited_changes_its_edges_and_nothing_else() -> None:
    g = graph(A="[[B]] [[C]]", B="[[A]]", C="", D="[[A]]")
    before = g.document()
    delta = g.update({"A.md": note("A.md", "[[B]] [[D]]")})
    assert delta.nodes == () and delta.removed_nodes == ()
    assert delta.removed_edges == (("note:a", "note:c"),)
    assert delta.edges == ({"source": "note:a", "target": "note:d", "weight": 2.0},)
    assert apply(before, delta) == g.document() == build_graph(g.notes.values())


def test_a_body_edit_that_changes_no_link_changes_nothing() -> None:
    g = graph(A="[[B]] some text", B="")
    assert not g.update({"A.md": note("A.md", "[[B]] other text, longer")})


def test_a_page_written_turns_its_placeholder_into_the_page_in_place() -> None:
    g = graph(A="[[New Idea]]")
    assert g.nodes["note:new idea"]["group"] == "placeholder"
    delta = g.update({"New Idea.md": note("New Idea.md", "written")})
    assert [n["id"] for n in delta.nodes] == ["note:new idea"]
    assert delta.nodes[0]["group"] == "note" and not delta.removed_nodes
    assert not delta.edges and not delta.removed_edges  # the edge had that id already


def test_a_deleted_page_goes_or_stays_a_placeholder_while_linked() -> None:
    g = graph(A="[[B]]", B="[[C]]", C="")
    delta = g.update({"B.md": None})
    assert delta.nodes[0]["id"] == "note:b" and delta.nodes[0]["group"] == "placeholder"
    assert delta.removed_edges == (("note:b", "note:c"),)
    delta = g.update({"A.md": None})
    assert set(delta.removed_nodes) == {"note:a", "note:b"}
    assert g.document() == build_graph(g.notes.values())


def test_a_rename_gives_a_new_id_and_moves_the_links_to_it() -> None:
    g = graph(A="[[B]]", B="", C="[[b]]")
    delta = g.update({"B.md": None, "Bee.md": note("Bee.md", "---\naliases: [B]\n---\n")})
    assert "note:b" not in g.nodes and g.nodes["note:bee"]["group"] == "note"
    assert set(delta.removed_nodes) == {"note:b"}
    assert ("note:a", "note:bee") in g.edges and ("note:b", "note:c") not in g.edges
    assert g.document() == build_graph(g.notes.values())


def test_two_notes_with_one_title_swap_ids_when_the_shorter_path_goes() -> None:
    g = graph(index="[[x]]", sub__index="", x="")
    assert g._page["note:index"] == "index.md"
    delta = g.update({"index.md": None})
    assert g._page["note:index"] == "sub/index.md"  # the other one takes the title
    assert "note:sub/index.md" in delta.removed_nodes
    assert g.document() == build_graph(g.notes.values())


def test_a_name_that_could_be_a_path_is_built_whole_and_stays_exact() -> None:
    g = graph(A="[[B]]", B="")
    odd = note("C.md", "---\ntitle: A.md.md\n---\n[[A]]")  # title key "a.md": a path's form
    g.update({"C.md": odd})
    assert g.document() == build_graph(g.notes.values())
    g.update({"C.md": None})  # the odd name gone: incremental again, from a fresh derivation
    assert g._exact and g.document() == build_graph(g.notes.values())
    g.update({"A.md": note("A.md", "[[C]]")})
    assert g.document() == build_graph(g.notes.values())


def test_a_note_under_another_path_is_refused() -> None:
    with pytest.raises(ValueError, match="given as"):
        IncrementalGraph().update({"a.md": note("b.md", "")})


# -- random edits against build_graph -----------------------------------------------------------

NAMES = ["a", "B", "c d", "index", "sub/a", "A", "e", "f/a", "x.md.md"]
PATHS = [
    f + n + ".md"
    for f in ("", "f/", "g/", "f/h/")
    for n in ("a", "b", "c d", "index", "e", "a___b")
]


@st.composite
def note_texts(draw: st.DrawFn) -> str:
    lines: list[str] = []
    if draw(st.booleans()):
        lines += ["---", f"title: {draw(st.sampled_from(NAMES))}"]
        lines.append(f"aliases: [{', '.join(draw(st.lists(st.sampled_from(NAMES), max_size=2)))}]")
        lines.append(
            f"tags: [{', '.join(draw(st.lists(st.sampled_from(['t', 'u v']), max_size=2)))}]"
        )
        lines += ["---"]
    for _ in range(draw(st.integers(0, 5))):
        name = draw(st.sampled_from(NAMES))
        form = draw(st.sampled_from(["wiki", "md", "tag", "alias"]))
        if form == "wiki":
            lines.append(f"[[{name}]]")
        elif form == "md":
            lines.append(f"[l]({draw(st.sampled_from(['../a.md', 'a.md', 'f/b.md', '/g/e.md']))})")
        elif form == "tag":
            lines.append(f"#{draw(st.sampled_from(['t', 'index', 'e']))}")
        else:
            lines.append(f"[[{name}|shown]] [[{name}.md]]")
    return "\n".join(lines)


edits = st.lists(
    st.dictionaries(st.sampled_from(PATHS), st.one_of(st.none(), note_texts()), min_size=1),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(edits)
def test_random_edits_keep_the_document_equal_to_build_graph(
    steps: list[dict[str, str | None]],
) -> None:
    g = IncrementalGraph()
    doc = g.document()
    for step in steps:
        changed = {p: None if t is None else note(p, t) for p, t in step.items()}
        delta = g.update(changed)
        expected = build_graph(g.notes.values())
        assert g.document() == expected
        doc = apply(doc, delta)
        assert doc == expected  # the delta is exactly the difference
