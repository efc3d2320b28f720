"""XML in and out for GraphML and GEXF, safely.

Reading goes through the standard library's expat with every DTD feature refused: a
``<!DOCTYPE`` (and with it any entity declaration) is a :class:`GraphError` the moment expat
meets it, before its internal subset is read. Neither GraphML nor GEXF needs a DTD, and a DTD's
entities are how an XML document expands without bound (billion laughs) or reads files and URLs
(external entities). Without one, ``&name;`` for anything but the five predefined entities is not
well-formed. Depth and element count are bounded (:class:`~.common.Limits`); nothing is kept of
an element a reader does not ask for, so memory follows what the graph holds.

Writing: escaping, and characters XML 1.0 cannot carry (control characters, lone surrogates)
replaced with U+FFFD, so that every export is well-formed; an export in which two node ids
would become one that way is refused (it could not be imported again).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final, NoReturn, Protocol
from xml.parsers import expat

from visionflow.errors import GraphError
from visionflow.graph.formats.common import Limits

__all__ = ["VF_NS", "Handler", "attr", "distinct_ids", "parse", "quote", "root_name", "text"]

#: The namespace of VisionFlow's own XML attributes (``vf:type="json"`` on a GraphML key or a
#: GEXF attribute: the values are JSON text, so lists and objects come back as they were).
VF_NS: Final = "urn:x-visionflow:graph:1"


class Handler(Protocol):
    """What a format reader does with the elements: names are ``(namespace, local)``."""

    def start(self, ns: str, name: str, attrs: dict[str, str], line: int) -> None: ...

    def end(self, ns: str, name: str) -> None: ...

    def text(self, data: str) -> None: ...


def _split(name: str) -> tuple[str, str]:
    ns, _, local = name.rpartition(" ")
    return ns, local


def _refuse_dtd(line: int) -> NoReturn:
    raise GraphError(
        "unsafe_xml",
        "a DOCTYPE is not allowed: GraphML and GEXF need no DTD, and a DTD's entities can expand "
        "without bound or read files",
        f"line {line}",
    )


_NAMES_KEPT: Final = 256


def _too_much(deep: bool, limits: Limits, line: int) -> NoReturn:
    if deep:
        raise GraphError(
            "too_deep", f"XML nested deeper than {limits.max_depth} elements", f"line {line}"
        )
    raise GraphError(
        "too_many_elements",
        f"XML document with more than {limits.max_elements} elements",
        f"line {line}",
    )


def parse(data: bytes, handler: Handler, limits: Limits) -> None:
    """Feed ``data`` through ``handler``; GraphError for bad, unsafe or oversized XML."""
    _feed(_parser(handler, limits), data, True)


def _feed(parser: expat.XMLParserType, data: bytes, final: bool) -> None:
    try:
        parser.Parse(data, final)
    except expat.ExpatError as exc:
        raise GraphError(
            "bad_xml",
            f"not well-formed XML: {expat.errors.messages[exc.code]} (column {exc.offset})",
            f"line {exc.lineno}",
        ) from None


def _parser(handler: Handler, limits: Limits) -> expat.XMLParserType:
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.buffer_text = True  # one text() call per run of text, not one per line
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def refuse(*_args: object) -> NoReturn:
        _refuse_dtd(parser.CurrentLineNumber)

    # The DOCTYPE handler alone stops every DTD; the others are there should expat ever
    # report a declaration without one.
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    depth = 0
    count = 0
    max_depth, max_elements = limits.max_depth, limits.max_elements
    names: dict[str, tuple[str, str]] = {}  # a few distinct names, each met many times
    on_start, on_end = handler.start, handler.end

    def split(name: str) -> tuple[str, str]:
        parts = names.get(name)
        if parts is None:
            parts = _split(name)
            if len(names) < _NAMES_KEPT:
                names[name] = parts
        return parts

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth, count
        depth += 1
        count += 1
        if depth > max_depth or count > max_elements:
            _too_much(depth > max_depth, limits, parser.CurrentLineNumber)
        ns, local = split(name)
        on_start(ns, local, attrs, parser.CurrentLineNumber)

    def end(name: str) -> None:
        nonlocal depth
        depth -= 1
        ns, local = split(name)
        on_end(ns, local)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = handler.text
    return parser


class _RootFinder:
    def __init__(self) -> None:
        self.root: tuple[str, str] | None = None

    def start(self, ns: str, name: str, attrs: dict[str, str], line: int) -> None:
        if self.root is None:
            self.root = (ns, name)

    def end(self, ns: str, name: str) -> None:
        pass

    def text(self, data: str) -> None:
        pass


_SNIFF_CHUNK: Final = 4096


def root_name(data: bytes) -> tuple[str, str]:
    """(namespace, local name) of the root element, read a few KiB past its start tag at most."""
    finder = _RootFinder()
    parser = _parser(finder, Limits())
    for at in range(0, len(data), _SNIFF_CHUNK):
        _feed(parser, data[at : at + _SNIFF_CHUNK], False)
        if finder.root is not None:
            return finder.root
    _feed(parser, b"", True)  # raises: a document without a root element is not well-formed
    raise GraphError("bad_xml", "no root element", "line 1")


def attr(attrs: dict[str, str], name: str, line: int, what: str) -> str:
    """A required XML attribute, or GraphError naming the element and the line."""
    value = attrs.get(name)
    if value is None:
        raise GraphError(f"invalid_{what}", f"{what} element without {name!r}", f"line {line}")
    return value


# --------------------------------------------------------------------------- writing

# Not characters of XML 1.0 (its Char production), however escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_TEXT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
# Attribute values: quotes, and the whitespace a parser would turn into spaces.
_ATTR = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\t": "&#9;",
        "\n": "&#10;",
        "\r": "&#13;",
    }
)


def _clean(value: str) -> str:
    return _NOT_XML.sub("\ufffd", value) if _NOT_XML.search(value) else value


def text(value: str) -> str:
    """Element text."""
    return _clean(value).translate(_TEXT)


def quote(value: str) -> str:
    """An attribute value with its quotes."""
    return f'"{_clean(value).translate(_ATTR)}"'


def distinct_ids(ids: Iterable[str]) -> None:
    """Refuse (``not_exportable``) ids that XML would make one: ``"a\\x00b"`` and
    ``"a\\x01b"`` both read back as ``"a\\ufffdb"``, and the import of that export failed with
    ``duplicate_id``. One id changed alone stays exportable (the docs say what becomes of it)."""
    listed = list(ids)
    changed = {i: _clean(i) for i in listed if _NOT_XML.search(i) is not None}
    if not changed:
        return
    seen: dict[str, str] = {}
    for original in listed:
        shown = changed.get(original, original)
        other = seen.setdefault(shown, original)
        if other != original:
            raise GraphError(
                "not_exportable",
                f"nodes {other!r} and {original!r} would both be {shown!r} in XML, which cannot"
                " carry control characters or lone surrogates: export them as JSON",
                "format",
            )
