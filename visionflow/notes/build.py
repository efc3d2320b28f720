"""Notes to a graph document (pure): pages, placeholders for missing pages, weighted links.

The result is a docs/protocol.md section 7 document, as ``POST /api/graph/import`` takes it:

- one node per note, id ``note:<normalised title>`` (so a page keeps its id, and the layout its
  position, across runs and across changes of case), label the title, group ``note``, metadata
  ``{path, aliases, tags}``;
- one node per page that is linked or tagged but has no note, as Obsidian and Logseq show them:
  id ``note:<normalised name>`` (the id the page gets once it is written), group
  ``placeholder``, metadata ``{placeholder: true}``;
- one undirected edge per pair of pages that link to each other, weighing the links between
  them both ways (a tag counts once per note that carries it); a page's links to itself are
  dropped.

A link names a page the way Obsidian and Logseq resolve it, case-insensitively
(:func:`~visionflow.notes.parse.normalise_name`), through, best first: the note's path in the
vault (``folder/page``), its title, its name from the file name (``a/b`` for ``a___b.md``), its
file name as is, an alias, the end of its path (``sub/page`` for ``folder/sub/page.md``). When
two notes claim the same name at the same rank, the one with the shorter path, then the first
path in sort order, has it. Output is sorted by id and by (source, target): the same notes give
the same document, byte for byte, whatever order they come in.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeAlias

from visionflow.notes.parse import Link, Note, normalise_name, page_name_from_path

__all__ = [
    "ID_PREFIX",
    "MAX_EDGE_WEIGHT",
    "Lookup",
    "build_graph",
    "note_names",
    "note_targets",
    "placeholder_keys",
    "resolve_index",
]

#: The import format's largest weight (``visionflow.graph.document.MAX_WEIGHT``, which this
#: layer may not import; a test holds the two equal). Links beyond it are not counted further.
MAX_EDGE_WEIGHT = 1e6

#: Every id build_graph makes starts with this: the store replaces exactly these on a reload.
ID_PREFIX = "note:"
_PREFIX = ID_PREFIX

# ranks of the names a note answers to, best first
_PATH, _TITLE, _NAME, _FILE, _ALIAS, _PATH_END = range(6)

#: A normalised name -> the id of the page it reaches, or None.
Lookup: TypeAlias = Callable[[str], str | None]


def note_names(note: Note) -> Iterator[tuple[str, int]]:
    """The normalised names ``note`` answers to, each with its rank (lower is better; a name
    may come more than once). Empty names are left out."""
    path = note.path
    stem_path = path[:-3] if path.endswith(".md") else path
    names = [
        (stem_path, _PATH),
        (note.title, _TITLE),
        (note.name, _NAME),
        (posixpath.basename(stem_path), _FILE),
        *((alias, _ALIAS) for alias in note.aliases),
    ]
    parts = stem_path.split("/")
    names += [("/".join(parts[k:]), _PATH_END) for k in range(1, len(parts) - 1)]
    for name, rank in names:
        key = normalise_name(name)
        if key:
            yield key, rank


def resolve_index(notes: list[Note]) -> dict[str, int]:
    """Normalised name -> index in ``notes`` of the note a link by that name reaches."""
    best: dict[str, tuple[int, int, str, int]] = {}
    for index, note in enumerate(notes):
        path = note.path
        for key, rank in note_names(note):
            offer = (rank, len(path), path, index)
            if key not in best or offer < best[key]:
                best[key] = offer
    return {key: offer[3] for key, offer in best.items()}


def note_targets(note: Note, lookup: Lookup) -> list[tuple[str, str | None]]:
    """Where each of ``note``'s links, then each of its tags, leads: ``(id, None)`` for a page
    (``lookup`` gives the id of the page a normalised name reaches, or None), ``(id, label)``
    for a placeholder (the id the page will have, the name as first spelled). A link or tag
    with an empty name leads nowhere and is left out."""
    targets: list[tuple[str, str | None]] = []
    for link in note.links:
        hit = _link_target(link, note.path, lookup)
        target = (hit, None) if hit is not None else _name_target(_placeholder_name(link), lookup)
        if target is not None:
            targets.append(target)
    for tag in note.tags:
        target = _name_target(tag, lookup)
        if target is not None:
            targets.append(target)
    return targets


def placeholder_keys(note: Note) -> Iterator[str]:
    """The compared names of the placeholders ``note``'s links and tags would make, were the
    pages they name missing (empty ones included)."""
    for link in note.links:
        yield normalise_name(_placeholder_name(link))
    for tag in note.tags:
        yield normalise_name(tag)


def _name_target(name: str, lookup: Lookup) -> tuple[str, str | None] | None:
    key = normalise_name(name)
    if not key:
        return None
    hit = lookup(key)
    return (hit, None) if hit is not None else (_PREFIX + key, " ".join(name.split()))


def build_graph(notes: Iterable[Note]) -> dict[str, Any]:
    """The graph document of ``notes`` (see the module docstring). Two notes with the same path
    are one: the first is kept."""
    by_path: dict[str, Note] = {}
    for note in notes:
        by_path.setdefault(note.path, note)
    ordered = [by_path[p] for p in sorted(by_path)]
    index = resolve_index(ordered)

    ids: list[str] = []
    used: set[str] = set()
    for i, note in enumerate(ordered):
        title_key = normalise_name(note.title)
        node_id = _PREFIX + title_key
        if not title_key or index.get(title_key) != i or node_id in used:
            # another note answers to this title (two "index.md" in different folders): this
            # one is named by its path, which no other note has
            node_id = _PREFIX + note.path
        base, n = node_id, 2
        while node_id in used:  # only a title that looks like another note's path gets here
            node_id = f"{base}~{n}"
            n += 1
        used.add(node_id)
        ids.append(node_id)
    page_by_id = {node_id: i for i, node_id in enumerate(ids)}

    placeholders: dict[str, str] = {}  # id -> label (the first spelling met)
    weights: Counter[tuple[str, str]] = Counter()

    def lookup(key: str) -> str | None:
        hit = index.get(key)
        return ids[hit] if hit is not None else None

    for i, note in enumerate(ordered):
        source = ids[i]
        for target, label in note_targets(note, lookup):
            if label is not None and target not in page_by_id:
                # (a page named by its path may have that very id: then it is the target)
                placeholders.setdefault(target, label)
            if target != source:
                weights[(source, target) if source < target else (target, source)] += 1

    nodes: list[dict[str, Any]] = [
        {
            "id": ids[i],
            "label": note.title,
            "group": "note",
            "metadata": {"path": note.path, "aliases": list(note.aliases), "tags": list(note.tags)},
        }
        for i, note in enumerate(ordered)
    ]
    nodes += [
        {"id": node_id, "label": label, "group": "placeholder", "metadata": {"placeholder": True}}
        for node_id, label in placeholders.items()
    ]
    nodes.sort(key=lambda node: str(node["id"]))
    edges = [
        {"source": s, "target": t, "weight": float(min(count, MAX_EDGE_WEIGHT))}
        for (s, t), count in sorted(weights.items())
    ]
    return {"nodes": nodes, "edges": edges}


def _link_target(link: Link, from_path: str, lookup: Lookup) -> str | None:
    """The id of the note ``link`` reaches, or None when it reaches none."""
    if link.kind != "markdown":
        return lookup(normalise_name(link.target.lstrip("/")))
    # a Markdown link is a path: from the linking note's folder, from the vault's top (written
    # "/..."), or (Obsidian's "shortest path") the bare file name
    target = link.target
    candidates = []
    if not target.startswith("/"):
        candidates.append(posixpath.normpath(posixpath.join(posixpath.dirname(from_path), target)))
    candidates.append(posixpath.normpath(target.lstrip("/")))
    candidates.append(posixpath.basename(target))
    for candidate in candidates:
        if candidate.startswith("../") or candidate == "..":
            continue  # above the vault
        hit = lookup(normalise_name(candidate))
        if hit is not None:
            return hit
    return None


def _placeholder_name(link: Link) -> str:
    """What a link that reaches no note names: a page name, or for a path the page its file
    name gives (``../x/a___b.md`` -> ``a/b``)."""
    if link.kind != "markdown":
        return link.target.lstrip("/")
    return page_name_from_path(posixpath.basename(link.target))
