"""Typed attribute values for GraphML and GEXF: reading a declared type's text, and choosing the
type an export declares for a metadata key from the values it holds.

Sans-IO.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

from visionflow import jsonsafe
from visionflow.errors import GraphError

__all__ = ["JSON", "column_types", "from_text", "to_text"]

#: The declared type of a key whose values are JSON text (marked ``vf:type="json"``).
JSON: Final = "json"

_INTS: Final = frozenset({"int", "integer", "long", "short", "byte", "biginteger"})
_FLOATS: Final = frozenset({"float", "double", "bigdecimal"})
_TRUE: Final = frozenset({"true", "1"})
_FALSE: Final = frozenset({"false", "0"})
_LONG: Final = 1 << 63


def from_text(text: str, kind: str, name: str, code: str, line: int) -> Any:
    """``text`` as the declared ``kind`` says (an unknown kind is text); GraphError naming the
    attribute ``name`` and the ``line`` when it is not one."""
    kind = kind.lower()
    path = f"line {line}"
    try:
        if kind == JSON:
            return jsonsafe.decode(text)
        if kind in _INTS:
            return int(text.strip())
        if kind in _FLOATS:
            value = float(text.strip())
            if not math.isfinite(value):
                raise ValueError(text)
            return value
    except (ValueError, msgspec.DecodeError):
        raise GraphError(code, f"{name!r} is not a finite {kind}: {text[:40]!r}", path) from None
    if kind == "boolean":
        flag = text.strip().lower()
        if flag in _TRUE or flag in _FALSE:
            return flag in _TRUE
        raise GraphError(code, f"{name!r} is not a boolean: {text[:40]!r}", path)
    return text


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long" if -_LONG <= value < _LONG else JSON
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    return JSON  # null, lists and objects


def column_types(records: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Each key of the records (in order of first appearance) with the type to declare: the
    values' own when they agree (integers with fractions: double), else JSON, which keeps them
    exactly."""
    kinds: dict[str, str] = {}
    for record in records:
        for key, value in record.items():
            kind = _kind(value)
            seen = kinds.setdefault(key, kind)
            if seen != kind:
                kinds[key] = "double" if {seen, kind} == {"long", "double"} else JSON
    return kinds


def to_text(value: Any, kind: str) -> str:
    """A value as the text of a declared ``kind`` (from :func:`column_types`)."""
    if kind == JSON:
        return msgspec.json.encode(value).decode()
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "double":
        return repr(float(value))
    return str(value)
