"""One Markdown note as data (sans-IO: text in, :class:`Note` out). docs/notes.md says what counts.

A note's title, aliases, tags and links come from three places, as Obsidian and Logseq read them:

- YAML front matter between ``---`` lines at the very top. It is read by a small parser of the
  YAML that notes use (``key: value``, block lists of ``- item``, flow lists ``[a, b]``, quoted
  strings, nested mappings, ``|`` and ``>`` text), so no YAML dependency; what it cannot read
  is a :class:`NoteError` naming the line, never a guess;
- Logseq page properties, ``key:: value`` lines of the first block;
- the body: ``[[Page]]`` in all its forms, ``![[embed]]``, ``[text](page.md)``, ``#tag`` and
  ``#[[multi word tag]]``; nothing inside fenced code blocks or inline code counts.

Links keep the target as written; which page it names is decided by ``build`` (a link can
name a page by title, file name, path or alias). :func:`normalise_name` is the one comparison
rule: case-insensitive, whitespace collapsed, ``.md`` dropped.
"""

from __future__ import annotations

import posixpath
import re
import unicodedata
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Literal, TypeAlias
from urllib.parse import unquote

from visionflow.errors import VisionflowError

__all__ = [
    "Link",
    "LinkKind",
    "Note",
    "NoteError",
    "normalise_name",
    "page_name_from_path",
    "parse_front_matter",
    "parse_note",
]


class NoteError(VisionflowError):
    """A note, or a path into a vault, was refused. ``path`` names the file (vault-relative);
    ``line`` is the 1-based line of the text that broke a rule (0 when no line is to blame)."""

    def __init__(self, path: str, reason: str, line: int = 0) -> None:
        self.path = path
        self.reason = reason
        self.line = line
        super().__init__(f"{path}: {self.detail}" if path else self.detail)

    @property
    def detail(self) -> str:
        """The message without the path: ``line 3: ...`` or the bare reason."""
        return f"line {self.line}: {self.reason}" if self.line else self.reason


LinkKind = Literal["wiki", "embed", "markdown"]


@dataclass(frozen=True, slots=True)
class Link:
    """A link as written. ``target`` is a page name for ``wiki`` and ``embed`` links (``[[a/b]]``
    gives ``a/b``) and a percent-decoded path ending in ``.md`` for ``markdown`` links, relative
    to the linking note's folder unless it starts with ``/``. ``fragment`` is the heading or
    ``^block`` after ``#``, if any."""

    target: str
    kind: LinkKind
    fragment: str = ""


@dataclass(frozen=True, slots=True)
class Note:
    """A parsed note. ``path`` is vault-relative with ``/``; ``name`` is the page name the file
    name gives (namespaces decoded; a Logseq journal's date title); ``title`` is what the page is
    called (front matter ``title:``, else Logseq ``title::``, else ``name``). Aliases and tags
    are de-duplicated by :func:`normalise_name`, first spelling kept, in order of appearance;
    links are in order of appearance, repeats included (they weigh the edge)."""

    path: str
    name: str
    title: str
    aliases: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    links: tuple[Link, ...] = ()


# --------------------------------------------------------------------------- names


def normalise_name(name: str) -> str:
    """How Obsidian and Logseq compare page names: Unicode NFC, case folded, runs of whitespace
    as one space, ends trimmed, one trailing ``.md`` dropped. ``"My  Page.MD"`` -> ``"my page"``."""
    folded = " ".join(unicodedata.normalize("NFC", name).casefold().split())
    if folded.endswith(".md"):
        folded = folded[:-3].rstrip()
    return folded


_NAMESPACE_ESCAPE = re.compile(r"___|%2f", re.IGNORECASE)
_JOURNAL_FILE = re.compile(r"(\d{4})_(\d{2})_(\d{2})")


def page_name_from_path(path: str) -> str:
    """The page name a file name gives: the file name without ``.md``, a Logseq namespace
    decoded (``a___b.md`` and the older ``a%2Fb.md`` are page ``a/b``), and a Logseq journal
    (``journals/2024_01_05.md``) titled as Logseq's default format shows it: ``Jan 5th, 2024``."""
    folder, _, file = path.rpartition("/")
    stem = file[:-3] if file.casefold().endswith(".md") else file
    if folder.split("/", 1)[0] == "journals" and (m := _JOURNAL_FILE.fullmatch(stem)):
        try:
            day = date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            pass  # 2024_02_31 is just a name
        else:
            return _journal_title(day)
    return _NAMESPACE_ESCAPE.sub("/", stem)


def _journal_title(day: date) -> str:
    # Logseq's default :journal/page-title-format "MMM do, yyyy"; a vault's own format (in
    # logseq/config.edn) is not read, since that folder is configuration, not notes.
    n = day.day
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{day.strftime('%b')} {n}{suffix}, {day.year}"


# --------------------------------------------------------------------------- front matter

#: What the front matter parser returns: every scalar is a string (``2024``, ``true`` too);
#: an empty value is None.
Value: TypeAlias = "str | list[Value] | dict[str, Value] | None"

#: Nesting deeper than this (blocks or flow lists) is refused: a note is not a data file, and
#: the parser recurses once per level.
MAX_DEPTH = 32

_BLOCK_SCALAR = re.compile(r"[|>][0-9+-]{0,2}\s*(?:#.*)?")
_ESCAPES = {
    "0": "\0",
    "a": "\a",
    "b": "\b",
    "t": "\t",
    "\t": "\t",
    "n": "\n",
    "v": "\v",
    "f": "\f",
    "r": "\r",
    "e": "\x1b",
    " ": " ",
    '"': '"',
    "/": "/",
    "\\": "\\",
    "N": "\x85",
    "_": "\xa0",
    "L": "\u2028",
    "P": "\u2029",
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_HEX = frozenset("0123456789abcdefABCDEF")


def _low_surrogate(text: str, i: int) -> int | None:
    """The low half of a UTF-16 pair written as ``\\uDC00``-``\\uDFFF`` at ``text[i:]``, else
    None."""
    digits = text[i + 2 : i + 6]
    if text[i : i + 2] != "\\u" or len(digits) != 4 or not all(d in _HEX for d in digits):
        return None
    code = int(digits, 16)
    return code if 0xDC00 <= code <= 0xDFFF else None


@dataclass(slots=True)
class _Line:
    number: int  # 1-based, in the file
    indent: int  # leading spaces
    text: str  # the rest, trailing whitespace removed
    raw: str

    @property
    def blank(self) -> bool:
        return not self.text or self.text.startswith("#")


class _FrontMatter:
    """A recursive-descent reader of block YAML, one instance per front matter."""

    def __init__(self, lines: list[str], first_number: int, path: str) -> None:
        self.path = path
        self.lines = [
            _Line(first_number + i, len(raw) - len(raw.lstrip(" ")), raw.strip(" ").rstrip(), raw)
            for i, raw in enumerate(lines)
        ]
        self.i = 0

    def error(self, line: int, reason: str) -> NoteError:
        return NoteError(self.path, f"front matter: {reason}", line)

    # ---- blocks

    def document(self) -> dict[str, Value]:
        self._skip_blank()
        if self.i == len(self.lines):
            return {}
        first = self.lines[self.i]
        if _is_item(first.text):
            raise self.error(first.number, "must be 'key: value' lines, not a list")
        if first.indent:
            raise self.error(first.number, "the first key must start at the beginning of a line")
        result = self._mapping(0, 1)
        self._skip_blank()
        if self.i < len(self.lines):  # only an outdent ends the top mapping, and none is left
            raise self.error(self.lines[self.i].number, "unexpected indentation")
        return result

    def _skip_blank(self) -> None:
        while self.i < len(self.lines) and self.lines[self.i].blank:
            self.i += 1

    def _check(self, line: _Line, depth: int) -> None:
        if line.text.startswith("\t"):
            raise self.error(line.number, "a tab is used for indentation (YAML allows spaces)")
        if depth > MAX_DEPTH:
            raise self.error(line.number, f"nested deeper than {MAX_DEPTH} levels")

    def _block(self, depth: int) -> Value:
        line = self.lines[self.i]
        return (
            self._sequence(line.indent, depth)
            if _is_item(line.text)
            else self._mapping(line.indent, depth)
        )

    def _mapping(self, indent: int, depth: int) -> dict[str, Value]:
        out: dict[str, Value] = {}
        while True:
            self._skip_blank()
            if self.i == len(self.lines):
                return out
            line = self.lines[self.i]
            self._check(line, depth)
            if line.indent < indent:
                return out
            if line.indent > indent:
                raise self.error(line.number, "unexpected indentation")
            if _is_item(line.text):  # "key:\n- item" was taken by the key's _value
                raise self.error(line.number, "a list item needs a key above it")
            key, rest = self._key(line)
            if key in out:
                raise self.error(line.number, f"key {key!r} appears twice")
            self.i += 1
            out[key] = self._value(rest, line, indent, depth)

    def _sequence(self, indent: int, depth: int) -> list[Value]:
        out: list[Value] = []
        while True:
            self._skip_blank()
            if self.i == len(self.lines):
                return out
            line = self.lines[self.i]
            self._check(line, depth)
            if line.indent < indent or not _is_item(line.text):
                if line.indent > indent:
                    raise self.error(line.number, "unexpected indentation")
                return out
            if line.indent > indent:
                raise self.error(line.number, "unexpected indentation")
            rest = line.text[1:].lstrip(" ")
            if rest.startswith("\t"):
                raise self.error(line.number, "a tab is used for indentation (YAML allows spaces)")
            if rest and (_is_item(rest) or _key_end(rest) is not None):
                # "- key: v" or "- - x": a block that starts on the item's own line; it is
                # read as if that line were indented to where the block starts
                self.lines[self.i] = _Line(
                    line.number, line.indent + len(line.text) - len(rest), rest, line.raw
                )
                out.append(self._block(depth + 1))
                continue
            self.i += 1
            out.append(self._value(rest, line, indent, depth, item=True))

    def _key(self, line: _Line) -> tuple[str, str]:
        text = line.text
        if text[0] in "\"'":
            key, end = self._quoted(text, 0, line.number)
            rest = text[end:].lstrip(" ")
            if not rest.startswith(":") or rest[1:2] not in ("", " "):
                raise self.error(line.number, "expected ':' after the quoted key")
            return key, rest[1:]
        if text[0] in "[{?&*!|>%@`":
            raise self.error(line.number, f"a key cannot start with {text[0]!r}")
        colon = _key_end(text)
        if colon is None:
            raise self.error(line.number, "expected 'key: value'")
        return text[:colon].rstrip(" "), text[colon + 1 :]

    def _value(
        self, rest: str, line: _Line, indent: int, depth: int, *, item: bool = False
    ) -> Value:
        """The value after ``key:`` (``-`` when ``item``) on ``line``, with the lines that
        belong to it. Only a key's value may be a list at the key's own indentation."""
        rest = rest.strip(" ")
        while rest[:1] in ("!", "&"):  # a tag or an anchor: the value follows it
            rest = rest.partition(" ")[2].lstrip(" ")
        if not rest or rest.startswith("#"):
            self._skip_blank()
            if self.i < len(self.lines):
                nxt = self.lines[self.i]
                if nxt.indent > indent or (
                    not item and nxt.indent == indent and _is_item(nxt.text)
                ):
                    self._check(nxt, depth + 1)
                    return self._block(depth + 1)
            return None
        if _BLOCK_SCALAR.fullmatch(rest):
            return self._block_scalar(indent, folded=rest[0] == ">")
        if rest[0] in "\"'[{":
            value: Value
            if rest[0] in "\"'":
                value, end = self._quoted(rest, 0, line.number)
            else:
                value, end = self._flow(rest, 0, line.number, depth + 1)
            tail = rest[end:].strip(" ")
            if tail and not tail.startswith("#"):
                raise self.error(line.number, f"unexpected text after the value: {tail[:40]!r}")
            return value
        words = [_strip_comment(rest)]
        # a plain value may go on over more-indented lines (folded into one line)
        while True:
            self._skip_blank()
            if self.i == len(self.lines) or self.lines[self.i].indent <= indent:
                break
            nxt = self.lines[self.i]
            self._check(nxt, depth)
            if _key_end(nxt.text) is not None or _is_item(nxt.text):
                raise self.error(nxt.number, "unexpected indentation")
            words.append(_strip_comment(nxt.text))
            self.i += 1
        return " ".join(w for w in words if w)

    def _block_scalar(self, indent: int, *, folded: bool) -> str:
        taken: list[_Line] = []
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line.raw.strip() and line.indent <= indent:
                break
            taken.append(line)
            self.i += 1
        body = [ln for ln in taken if ln.raw.strip()]
        if not body:
            return ""
        margin = min(ln.indent for ln in body)
        text = [ln.raw[margin:].rstrip() if ln.raw.strip() else "" for ln in taken]
        joined = "\n".join(text).strip("\n")
        # ">" folds single line breaks into spaces; a blank line stays a line break
        return re.sub(r"(?<!\n)\n(?!\n)", " ", joined) if folded else joined

    # ---- inline values

    def _quoted(self, text: str, pos: int, number: int) -> tuple[str, int]:
        """The string quoted at ``text[pos]`` and the index after its closing quote."""
        quote = text[pos]
        out: list[str] = []
        i = pos + 1
        while i < len(text):
            c = text[i]
            if c == quote:
                if quote == "'" and text[i + 1 : i + 2] == "'":  # '' is one quote
                    out.append("'")
                    i += 2
                    continue
                return "".join(out), i + 1
            if c == "\\" and quote == '"':
                i += 1
                esc = text[i : i + 1]
                if esc in _HEX_ESCAPES:
                    width = _HEX_ESCAPES[esc]
                    digits = text[i + 1 : i + 1 + width]
                    if len(digits) != width or not all(
                        d in "0123456789abcdefABCDEF" for d in digits
                    ):
                        raise self.error(number, f"bad escape \\{esc}{digits}")
                    code = int(digits, 16)
                    if code > 0x10FFFF:
                        raise self.error(number, f"bad escape \\{esc}{digits}")
                    i += 1 + width
                    if 0xD800 <= code <= 0xDFFF:
                        # UTF-16 halves: a pair (how JSON-minded tools write an emoji) is one
                        # character; a lone half is no character, and no UTF-8 could carry it
                        low = _low_surrogate(text, i) if code <= 0xDBFF else None
                        if low is None:
                            raise self.error(
                                number, f"bad escape \\{esc}{digits}: half a UTF-16 pair"
                            )
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                    out.append(chr(code))
                    continue
                if esc not in _ESCAPES:
                    raise self.error(number, f"unknown escape \\{esc}" if esc else "bad escape")
                out.append(_ESCAPES[esc])
                i += 1
                continue
            out.append(c)
            i += 1
        raise self.error(
            number, f"{quote} not closed on this line (multi-line quoted strings are not read)"
        )

    def _flow(self, text: str, pos: int, number: int, depth: int) -> tuple[Value, int]:
        """The ``[...]`` or ``{...}`` at ``text[pos]``, on one line, and the index after it."""
        if depth > MAX_DEPTH:
            raise self.error(number, f"nested deeper than {MAX_DEPTH} levels")
        opening = text[pos]
        close = "]" if opening == "[" else "}"
        items: list[Value] = []
        mapping: dict[str, Value] = {}
        i = pos + 1
        while True:
            i = _skip_spaces(text, i)
            if i == len(text):
                raise self.error(number, f"{opening!r} not closed on this line")
            if text[i] == close:
                return (items if opening == "[" else mapping), i + 1
            stop = ",:}" if opening == "{" else ",]"  # "a:b" in a list is text
            item, i = self._flow_item(text, i, number, depth, stop=stop)
            if opening == "{":
                if not isinstance(item, str):
                    raise self.error(number, "a key in '{...}' must be a string")
                i = _skip_spaces(text, i)
                value: Value = None
                if text[i : i + 1] == ":":
                    value, i = self._flow_item(text, i + 1, number, depth, stop="," + close)
                mapping[item] = value
            else:
                items.append(item)
            i = _skip_spaces(text, i)
            if i == len(text):
                raise self.error(number, f"{opening!r} not closed on this line")
            if text[i] == ",":
                i += 1
            elif text[i] != close:
                raise self.error(number, f"expected ',' or {close!r} at column {i + 1}")

    def _flow_item(
        self, text: str, i: int, number: int, depth: int, stop: str
    ) -> tuple[Value, int]:
        i = _skip_spaces(text, i)
        c = text[i : i + 1]
        if c in ("[", "{"):
            return self._flow(text, i, number, depth + 1)
        if c in ("'", '"'):
            return self._quoted(text, i, number)
        j = i
        while j < len(text) and text[j] not in stop + "[]{}":
            if text[j] == " " and text[j + 1 : j + 2] == "#":
                raise self.error(number, "a comment cannot go inside '[...]' or '{...}'")
            j += 1
        item = text[i:j].strip(" ")
        if not item:
            raise self.error(number, f"empty item at column {i + 1}")
        return item, j


def _is_item(text: str) -> bool:
    return text == "-" or text.startswith("- ")


def _key_end(text: str) -> int | None:
    """Index of the ':' that ends a plain key in ``text``, or None when ``text`` is no key."""
    if not text or text[0] in "\"'[{#":
        return None
    i = text.find(":")
    while i != -1:
        if i + 1 == len(text) or text[i + 1] == " ":
            head = text[:i]
            return None if " #" in head else i
        i = text.find(":", i + 1)
    return None


def _strip_comment(text: str) -> str:
    cut = text.find(" #")
    return (text if cut == -1 else text[:cut]).strip(" ")


def _skip_spaces(text: str, i: int) -> int:
    while i < len(text) and text[i] == " ":
        i += 1
    return i


def parse_front_matter(lines: list[str], first_number: int = 2, path: str = "") -> dict[str, Value]:
    """The mapping in ``lines`` (the front matter without its ``---`` lines); ``first_number`` is
    the file line of ``lines[0]``, for errors. Raises :class:`NoteError` naming the line."""
    return _FrontMatter(lines, first_number, path).document()


# --------------------------------------------------------------------------- the body

_PROPERTY = re.compile(r"[ \t]*(?:[-*][ \t]+)?([A-Za-z0-9_][\w-]*)::(?:[ \t]+(.*))?[ \t]*")
_FENCE_OPEN = re.compile(r"[ \t]*(?:(?:[-*+]|\d{1,9}[.)])[ \t]+)?(`{3,}|~{3,})(.*)")
_FENCE_CLOSE = re.compile(r"[ \t]*(`{3,}|~{3,})[ \t]*")
_BACKTICKS = re.compile(r"`+")
_WIKI = re.compile(r"(?<!#)(!?)\[\[([^\[\]\n]+)\]\]")
_MARKDOWN = re.compile(
    r"(!?)\[[^\[\]\n]*\]\([ \t]*(<[^<>\n]*>|(?:[^()\s]|\([^()\s]*\))+)"
    r"""(?:[ \t]+(?:"[^"\n]*"|'[^'\n]*'))?[ \t]*\)"""
)
_TAG = re.compile(r"(?<!\S)#(?:\[\[([^\[\]\n]+)\]\]|([\w/-]+))")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_REFS = re.compile(r"#?\[\[([^\[\]]+)\]\]|#([^\s,#\[\]]+)")

# A link to one of these is an attachment (an image, a PDF, a canvas), not a page.
_ATTACHMENT_EXTENSIONS = (
    "png jpg jpeg gif bmp svg webp avif tif tiff ico heic pdf mp3 mp4 m4a wav ogg oga opus flac "
    "webm mov mkv avi ogv 3gp canvas csv tsv txt json zip gz tar 7z doc docx xls xlsx ppt pptx "
    "odt ods odp epub html htm"
)
_ATTACHMENTS = frozenset(_ATTACHMENT_EXTENSIONS.split())

_TITLE_KEYS = ("title",)
_ALIAS_KEYS = ("alias", "aliases")
_TAG_KEYS = ("tag", "tags")


def parse_note(text: str, path: str) -> Note:
    """Read one note. ``path`` is its vault-relative path with ``/`` (``pages/a___b.md``); it
    gives the name and resolves relative Markdown links. A leading BOM is ignored; the only
    error is malformed front matter (:class:`NoteError` naming the line)."""
    lines = text.removeprefix("\ufeff").split("\n")
    lines = [ln.removesuffix("\r") for ln in lines]
    front: dict[str, Value] = {}
    start = 0
    if lines[0].rstrip() == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].rstrip() in ("---", "...")), None)
        if end is None:
            raise NoteError(path, "front matter opened here is never closed by a '---' line", 1)
        front = parse_front_matter(lines[1:end], 2, path)
        start = end + 1

    name = page_name_from_path(path)
    title = ""
    aliases: list[str] = []
    tags: list[str] = []
    links: list[Link] = []
    for key, value in front.items():
        folded = key.casefold()
        if folded in _TITLE_KEYS and isinstance(value, str) and not title:
            title = " ".join(value.split())
        elif folded in _ALIAS_KEYS:
            aliases += _front_list(value)
        elif folded in _TAG_KEYS:
            tags += _front_list(value)
        else:  # Obsidian reads "[[links]]" in other properties' text
            for s in _strings(value):
                links += [link for _, link in _wiki_links(s)]

    body = lines[start:]
    properties = _page_properties(body)
    for index, key, value in properties:
        folded = key.casefold()
        if folded in _TITLE_KEYS:
            if not title:
                title = " ".join(value.split())
        elif folded in _ALIAS_KEYS:
            aliases += _property_list(value)
        elif folded in _TAG_KEYS:
            tags += _property_list(value)
        else:
            continue
        body[index] = ""  # its [[refs]] name the page itself or its tags: not links

    visible = "\n".join(_visible_lines(body))  # one pass of each pattern over the whole body
    found = _wiki_links(visible) + _markdown_links(visible)
    found.sort(key=lambda pair: pair[0])  # in order of appearance
    links += [link for _, link in found]
    for m in _TAG.finditer(visible):
        tag = m[1] if m[1] is not None else m[2].rstrip("/")
        if m[1] is not None or not tag.isdigit():  # "#13" is a number, not a tag
            tags.append(tag)

    return Note(
        path=path,
        name=name,
        title=title or name,
        aliases=_unique(a.lstrip("#") for a in aliases),
        tags=_unique(t.lstrip("#") for t in tags),
        links=tuple(links),
    )


def _unique(names: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for raw in names:
        name = " ".join(raw.split())
        key = normalise_name(name)
        if key and key not in seen:
            seen[key] = name
    return tuple(seen.values())


def _strings(value: Value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def _front_list(value: Value) -> list[str]:
    """A front matter list of names: a YAML list, or a string of comma-separated names. An
    unquoted ``[[Page]]`` is a list in a list to YAML; it is flattened."""
    if isinstance(value, str):
        return [_unwrap(part) for part in value.split(",")]
    if isinstance(value, list):
        return [_unwrap(s) for item in value for s in _strings(item)]
    return []


def _unwrap(name: str) -> str:
    name = name.strip()
    if name.startswith("[[") and name.endswith("]]"):
        name = name[2:-2]
    return name.strip()


def _page_properties(body: list[str]) -> list[tuple[int, str, str]]:
    """(line index, key, value) of the Logseq page properties: the ``key:: value`` lines that
    open the first block, before any other line."""
    found: list[tuple[int, str, str]] = []
    for i, line in enumerate(body):
        if not line.strip() and not found:
            continue
        m = _PROPERTY.fullmatch(line)
        if m is None or (found and line.lstrip().startswith(("- ", "* "))):
            break  # a second bullet is the next block
        found.append((i, m[1], (m[2] or "").strip()))
    return found


def _property_list(value: str) -> list[str]:
    """A Logseq property's names: ``a, [[b, c]], #d`` or ``#a #[[b c]]``."""
    out: list[str] = []
    for part in _split_outside_brackets(value):
        part = part.strip()
        refs = list(_REFS.finditer(part))
        if refs and not _REFS.sub("", part).strip():
            out += [m[1] if m[1] is not None else m[2] for m in refs]
        elif part:
            out.append(_unwrap(part))
    return out


def _split_outside_brackets(value: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    start = 0
    for i, c in enumerate(value):
        if c == "[":
            depth += 1
        elif c == "]":
            depth = max(0, depth - 1)
        elif c == "," and depth == 0:
            parts.append(value[start:i])
            start = i + 1
    parts.append(value[start:])
    return parts


def _visible_lines(body: list[str]) -> Iterator[str]:
    """The lines of ``body`` outside fenced code blocks, with inline code blanked out. A fence
    may follow a list bullet (Logseq puts every block under one); an unclosed fence runs to the
    end, as in CommonMark."""
    fence = ""
    for line in body:
        if fence:
            m = _FENCE_CLOSE.fullmatch(line)
            if m and m[1][0] == fence[0] and len(m[1]) >= len(fence):
                fence = ""
            continue
        m = _FENCE_OPEN.fullmatch(line)
        if m and not (m[1][0] == "`" and "`" in m[2]):  # a ``` info string has no backtick
            fence = m[1]
            continue
        yield _without_inline_code(line) if "`" in line else line


def _without_inline_code(line: str) -> str:
    """``line`` with each code span (a run of n backticks to the next run of exactly n) blanked.
    Linear: every run is looked at once, whatever the line holds."""
    runs = [(m.start(), m.end()) for m in _BACKTICKS.finditer(line)]
    by_length: dict[int, deque[int]] = {}
    for index, (a, b) in enumerate(runs):
        by_length.setdefault(b - a, deque()).append(index)
    pieces: list[str] = []
    kept = 0
    i = 0
    while i < len(runs):
        a, b = runs[i]
        later = by_length[b - a]
        while later and later[0] <= i:
            later.popleft()
        if not later:
            i += 1
            continue
        j = later.popleft()
        pieces.append(line[kept:a])
        kept = runs[j][1]
        pieces.append(" ")
        i = j + 1
    pieces.append(line[kept:])
    return "".join(pieces)


def _wiki_links(text: str) -> list[tuple[int, Link]]:
    """(offset, link) of each ``[[link]]`` and ``![[embed]]`` in ``text``."""
    out: list[tuple[int, Link]] = []
    for m in _WIKI.finditer(text):
        target = m[2].partition("|")[0].rstrip("\\")  # "\|" is the label bar inside a table
        page, _, fragment = target.partition("#")
        page = page.strip()
        if not page or _is_attachment(page):
            continue  # [[#heading]] is this note; [[image.png]] is a file
        out.append((m.start(), Link(page, "embed" if m[1] else "wiki", fragment.strip())))
    return out


def _markdown_links(text: str) -> list[tuple[int, Link]]:
    """(offset, link) of each ``[text](page.md)`` in ``text`` that names a note."""
    out: list[tuple[int, Link]] = []
    for m in _MARKDOWN.finditer(text):
        raw = m[2][1:-1] if m[2].startswith("<") else m[2]
        if _SCHEME.match(raw) or raw.startswith("//"):
            continue  # a URL (https:, mailto:, obsidian:, ...), not a note of this vault
        where, _, fragment = raw.partition("#")
        where = unquote(where)
        if not where.casefold().endswith(".md") or not posixpath.basename(where)[:-3].strip():
            continue  # an image or another file; "#heading" alone is this note
        link = Link(where, "embed" if m[1] else "markdown", unquote(fragment))
        out.append((m.start(), link))
    return out


def _is_attachment(page: str) -> bool:
    stem, dot, extension = page.rpartition(".")
    return bool(dot and stem) and extension.casefold() in _ATTACHMENTS
