"""One note as data: front matter (our YAML subset), Logseq properties, names, links and tags,
with nothing in code counted and malformed front matter refused with its line."""

from __future__ import annotations

import contextlib
import time

import pytest

from visionflow.errors import VisionflowError
from visionflow.notes.parse import (
    MAX_DEPTH,
    Link,
    NoteError,
    normalise_name,
    page_name_from_path,
    parse_front_matter,
    parse_note,
)


def fm(text: str) -> object:
    return parse_front_matter(text.split("\n"))


# --------------------------------------------------------------------------- front matter


def test_front_matter_scalars_quotes_and_comments() -> None:
    assert fm(
        "a: plain text  # a comment\n"
        "b: 'it''s'\n"
        'c: "tab\\there \\"q\\" \\u00e9 \\x41"\n'
        "d:\n"
        "e: 2024-01-05\n"
        "f: http://example.com/x#frag\n"
        "# a whole comment line\n"
        '"quoted key": 1\n'
        "g: #only a comment\n"
        "h: !!str tagged\n"
        "i: &anchor anchored\n"
    ) == {
        "a": "plain text",
        "b": "it's",
        "c": 'tab\there "q" é A',
        "d": None,
        "e": "2024-01-05",
        "f": "http://example.com/x#frag",
        "quoted key": "1",
        "g": None,
        "h": "tagged",
        "i": "anchored",
    }


def test_a_utf16_pair_of_escapes_is_one_character() -> None:
    """How JSON-minded tools write an emoji: a high and a low half, joined (a lone half is
    refused, see MALFORMED)."""
    assert fm('title: "smile \\ud83d\\ude00 \\uD83D\\uDE00!"\n') == {"title": "smile 😀 😀!"}
    assert fm('a: "\\U0001F600 \\uffff"\n') == {"a": "😀 \uffff"}


def test_front_matter_lists_maps_and_text_blocks() -> None:
    assert fm(
        "flow: [a, 'b, c', \"d\", [e, f], {k: v, n: [1, 2]}, ]\n"
        "block:\n"
        "  - one\n"
        "  - two # comment\n"
        "  -   three\n"
        "same_indent:\n"
        "- x\n"
        "- y\n"
        "nested:\n"
        "  inner: 1\n"
        "  deeper:\n"
        "    - name: n\n"
        "      url: u\n"
        "    - - p\n"
        "      - q\n"
        "    -\n"
        "      k: v\n"
        "    -\n"
        "    - last\n"
        "literal: |\n"
        "  line one\n"
        "    indented\n"
        "\n"
        "  line three\n"
        "folded: >-\n"
        "  folded\n"
        "  text\n"
        "\n"
        "  para\n"
        "wrapped: a long\n"
        "  value that wraps\n"
        "empty_flow: []\n"
        "url_in_list: [http://x.org/a]\n"
    ) == {
        "flow": ["a", "b, c", "d", ["e", "f"], {"k": "v", "n": ["1", "2"]}],
        "block": ["one", "two", "three"],
        "same_indent": ["x", "y"],
        "nested": {
            "inner": "1",
            "deeper": [
                {"name": "n", "url": "u"},
                ["p", "q"],
                {"k": "v"},
                None,
                "last",
            ],
        },
        "literal": "line one\n  indented\n\nline three",
        "folded": "folded text\n\npara",
        "wrapped": "a long value that wraps",
        "empty_flow": [],
        "url_in_list": ["http://x.org/a"],
    }


def test_front_matter_empty_and_comment_only() -> None:
    assert fm("") == {}
    assert fm("# nothing\n\n") == {}


MALFORMED: list[tuple[str, int, str]] = [
    ("title\n", 2, "expected 'key: value'"),
    ("a: 1\nb\n", 3, "expected 'key: value'"),
    ("a: 1\na: 2\n", 3, "key 'a' appears twice"),
    ("a: 'open\n", 2, "not closed on this line"),
    ('a: "open\n', 2, "not closed on this line"),
    ("a: [b, c\n", 2, "'[' not closed on this line"),
    ("a: {b: c\n", 2, "'{' not closed on this line"),
    ("a: [b c] d\n", 2, "unexpected text after the value"),
    ("a: 'x' y\n", 2, "unexpected text after the value"),
    ("a: [b, , c]\n", 2, "empty item"),
    ("a: [b; c}\n", 2, "expected ',' or ']'"),
    ("- a\n- b\n", 2, "not a list"),
    ("a: 1\n- b\n", 3, "a list item needs a key above it"),
    ("a: 1\n  b: 2\n", 3, "unexpected indentation"),
    ("a:\n  - b\n    - c\n", 4, "unexpected indentation"),
    ("a:\n  b: 1\n   c: 2\n", 4, "unexpected indentation"),
    ("a:\n\t- b\n", 3, "tab is used for indentation"),
    ("  a: 1\n", 2, "first key must start"),
    ("[a]: 1\n", 2, "a key cannot start with '['"),
    ('"k" v\n', 2, "expected ':' after the quoted key"),
    ('a: "\\q"\n', 2, "unknown escape"),
    ('a: "\\u12"\n', 2, "bad escape"),
    # half a UTF-16 pair is no character (and no UTF-8 text could carry it on)
    ('a: "\\ud800"\n', 2, "bad escape \\ud800: half a UTF-16 pair"),
    ('a: "x \\ude00 y"\n', 2, "half a UTF-16 pair"),
    ('a: "\\ud83d\\u0041"\n', 2, "half a UTF-16 pair"),
    ('a: "\\ud83d\\ud83d"\n', 2, "half a UTF-16 pair"),
    ('a: "\\ud83d"\n', 2, "half a UTF-16 pair"),
    ("a: [x #c]\n", 2, "a comment cannot go inside"),
]


@pytest.mark.parametrize(("body", "line", "words"), MALFORMED)
def test_malformed_front_matter_names_the_line(body: str, line: int, words: str) -> None:
    with pytest.raises(NoteError) as caught:
        parse_note(f"---\n{body}---\ntext [[Link]]\n", "folder/bad.md")
    err = caught.value
    assert isinstance(err, VisionflowError)
    assert err.line == line
    assert err.path == "folder/bad.md"
    assert words in err.reason
    assert str(err).startswith(f"folder/bad.md: line {line}: front matter: ")


def test_unclosed_front_matter_is_refused_at_line_one() -> None:
    with pytest.raises(NoteError, match=r"x\.md: line 1: front matter opened here is never"):
        parse_note("---\ntitle: x\n\nno end", "x.md")


def test_nesting_is_bounded() -> None:
    deep = "".join(f"{'  ' * i}k{i}:\n" for i in range(MAX_DEPTH + 2)) + "  " * (MAX_DEPTH + 2)
    with pytest.raises(NoteError, match="nested deeper than"):
        parse_note(f"---\n{deep}v: 1\n---\n", "deep.md")
    flow = "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)
    with pytest.raises(NoteError, match="nested deeper than"):
        parse_note(f"---\na: {flow}\n---\n", "deep.md")
    ok = "[" * (MAX_DEPTH - 1) + "x" + "]" * (MAX_DEPTH - 1)
    parse_note(f"---\na: {ok}\n---\n", "fine.md")


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("My Page.md", "My Page"),
        ("folder/sub/My Page.md", "My Page"),
        ("pages/a___b___c.md", "a/b/c"),
        ("pages/a%2Fb.md", "a/b"),
        ("pages/a%2fb.md", "a/b"),
        ("journals/2024_01_05.md", "Jan 5th, 2024"),
        ("journals/2024_03_01.md", "Mar 1st, 2024"),
        ("journals/2024_03_02.md", "Mar 2nd, 2024"),
        ("journals/2024_03_03.md", "Mar 3rd, 2024"),
        ("journals/2024_03_11.md", "Mar 11th, 2024"),
        ("journals/2024_03_12.md", "Mar 12th, 2024"),
        ("journals/2024_03_13.md", "Mar 13th, 2024"),
        ("journals/2024_03_21.md", "Mar 21st, 2024"),
        ("journals/2024_03_22.md", "Mar 22nd, 2024"),
        ("journals/2024_03_23.md", "Mar 23rd, 2024"),
        ("journals/2024_03_31.md", "Mar 31st, 2024"),
        ("journals/2024_02_31.md", "2024_02_31"),  # no such day: a plain name
        ("notes/2024_01_05.md", "2024_01_05"),  # only Logseq's journals folder
    ],
)
def test_page_name_from_path(path: str, name: str) -> None:
    assert page_name_from_path(path) == name
    assert parse_note("", path).title == name


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("My Page", "my page"),
        ("  my\t  PAGE \n", "my page"),
        ("My Page.md", "my page"),
        ("My Page.MD", "my page"),
        ("Straße", "strasse"),
        ("Cafe\u0301", "café"),  # NFD as macOS writes file names
        ("a/B", "a/b"),
        (".md", ""),
    ],
)
def test_normalise_name(raw: str, key: str) -> None:
    assert normalise_name(raw) == key


# --------------------------------------------------------------------------- notes

OBSIDIAN_NOTE = """\ufeff---
title: "Project Plan"
aliases: [Plan, "The Plan"]
tags:
  - project/alpha
  - "#draft"
related: "[[Budget]]"
---
# Project Plan

We link [[Alpha]], [[Beta|the beta]], [[Gamma#Risks]], [[Delta#^a1b2c3]], ![[Epsilon]]
and a table cell [[Zeta\\|zeta]], then [[#Local heading]] (this note) and ![[diagram.png]].
Markdown: [other](other%20page.md), [up](../up/page.md#Intro "title"), [ang](<spaced name.md>),
[nested](Notes%20(2024).md), ![embedded](embedded.md), ![img](pic.png), [web](https://x.org/a.md),
[mail](mailto:a@b.md), [proto](//host/x.md), [anchor](#intro), [file](report.pdf).
Tags #alpha-1 and #area/ops and #[[multi word tag]], not #13, not word#tag, not [x](y.md#tag).
#Alpha-1 again, and https://example.com/#frag is a URL.

```python
[[Not A Link]] #notatag
```
~~~
[[Also Not]]
~~~
Inline `[[Code]] #code` and ``[[two `ticks`]]`` and ` [[Real]] stays if `unclosed? no: [[Seen]]
"""


def test_an_obsidian_note() -> None:
    note = parse_note(OBSIDIAN_NOTE.replace("\n", "\r\n"), "projects/plan.md")
    assert note.path == "projects/plan.md"
    assert note.name == "plan"
    assert note.title == "Project Plan"
    assert note.aliases == ("Plan", "The Plan")
    assert note.tags == (
        "project/alpha",
        "draft",
        "alpha-1",
        "area/ops",
        "multi word tag",
    )
    assert note.links == (
        Link("Budget", "wiki"),
        Link("Alpha", "wiki"),
        Link("Beta", "wiki"),
        Link("Gamma", "wiki", "Risks"),
        Link("Delta", "wiki", "^a1b2c3"),
        Link("Epsilon", "embed"),
        Link("Zeta", "wiki"),
        Link("other page.md", "markdown"),
        Link("../up/page.md", "markdown", "Intro"),
        Link("spaced name.md", "markdown"),
        Link("Notes (2024).md", "markdown"),
        Link("embedded.md", "embed"),
        Link("y.md", "markdown", "tag"),
        Link("Seen", "wiki"),
    )


LOGSEQ_NOTE = """title:: Graph Theory
alias:: graphs, [[network science, the field]]
tags:: #math, [[discrete math]]
type:: [[Topic]]

- Euler's [[Königsberg]] problem #history
  - nested block ((6512a7f0-1c2b-4d3e-9f00-aaaaaaaaaaaa)) with {{embed [[Embedded Page]]}}
  - ```clojure
    (def x "[[Not A Link]]")
    ```
  - see [label]([[Aliased Link]]) and #[[Multi Word]]
- tags:: not-page-level
"""


def test_a_logseq_page() -> None:
    note = parse_note(LOGSEQ_NOTE, "pages/math___graph theory.md")
    assert note.name == "math/graph theory"
    assert note.title == "Graph Theory"
    assert note.aliases == ("graphs", "network science, the field")
    assert note.tags == ("math", "discrete math", "history", "Multi Word")
    assert [link.target for link in note.links] == [
        "Topic",  # other properties' refs are links, as in Logseq
        "Königsberg",
        "Embedded Page",
        "Aliased Link",
    ]


def test_logseq_properties_as_the_first_bullet_and_space_separated_tags() -> None:
    note = parse_note("- title:: Bulleted\n  tags:: #a #[[b c]]\n- text\n", "pages/x.md")
    assert note.title == "Bulleted"
    assert note.tags == ("a", "b c")
    note = parse_note("- title:: One\n- alias:: not-page\n", "pages/x.md")
    assert (note.title, note.aliases) == ("One", ())


def test_front_matter_wins_over_properties_and_lists_merge() -> None:
    text = "---\ntitle: From YAML\nalias: a, b\ntags: x, y\nTags: [z]\n---\ntitle:: From Logseq\n"
    text += "alias:: c\n"
    note = parse_note(text, "n.md")
    assert note.title == "From YAML"
    assert note.aliases == ("a", "b", "c")
    assert note.tags == ("x", "y", "z")


def test_aliases_and_tags_in_every_front_matter_form() -> None:
    for value in ("One", "One, Two", "[One, Two]", "\n  - One\n  - Two", "[[One]]"):
        note = parse_note(f"---\naliases: {value}\n---\n", "n.md")
        assert note.aliases[0] == "One", value
    note = parse_note("---\ntags: [[Tag One]]\nalias: '[[Other]]'\n---\n", "n.md")
    assert (note.tags, note.aliases) == (("Tag One",), ("Other",))


def test_repeated_links_are_kept_and_tags_deduplicated() -> None:
    note = parse_note("[[A]] [[a]] [[A]] #t #T #t", "n.md")
    assert [link.target for link in note.links] == ["A", "a", "A"]
    assert note.tags == ("t",)


def test_fences_follow_commonmark() -> None:
    text = (
        "````md\n```\n[[inside]]\n````\n[[after]]\n"  # a longer fence is closed only by one as long
        "~~~\n```\n[[tilde]]\n~~~\n[[after tilde]]\n"  # ``` does not close ~~~
        "``` not a fence ` with a backtick [[inline fence]]\n"
        "- ```\n  [[logseq code]]\n  ```\n[[after logseq]]\n"
        "```\n[[unclosed runs to the end]]\n"
    )
    assert [link.target for link in parse_note(text, "n.md").links] == [
        "after",
        "after tilde",
        "inline fence",
        "after logseq",
    ]


def test_pathological_text_stays_linear() -> None:
    n = 200_000
    texts = [
        "[[" * n,
        "[[a" * n + "]",
        "`" * n + "x" + "``" * (n // 2),
        "`a" * n,
        "[a](" * n,
        "[a](b" + "(c" * n,
        "#" * n + " #a" * n,
        "---\n" + "a: [" * 5000,
        "---\n" + "k: v\n" * n + "---\n",
    ]
    for text in texts:
        start = time.perf_counter()
        with contextlib.suppress(NoteError):
            parse_note(text, "big.md")
        assert time.perf_counter() - start < 5, text[:20]
