"""JSON from outside (sockets, request bodies, files), with every kind of bad input as one error.

msgspec reports most bad input as ``msgspec.DecodeError``, but not all of it: invalid UTF-8
inside a string raises ``UnicodeDecodeError`` (before msgspec 0.23; later releases raise a
``DecodeError`` worded their own way, which is reworded here), a ``str`` holding a lone surrogate
``UnicodeEncodeError``, and nesting past the interpreter's recursion limit ``RecursionError``
(on Python <= 3.12; 3.13 lets msgspec nest much deeper). Untrusted input goes through
:func:`decode` so that callers catch one exception type (``msgspec.ValidationError`` stays what
it is, a subclass of ``DecodeError``), and nesting is limited to :data:`MAX_DEPTH` levels on
every Python, so the same document is accepted or refused everywhere.
"""

from __future__ import annotations

import re
from typing import Any, Final, TypeVar, overload

import msgspec
import numpy as np
import numpy.typing as npt

T = TypeVar("T")

#: Deepest nesting of arrays and objects accepted. Nothing we read needs more than a few
#: levels (a graph node's metadata included); Python 3.11 refused about 1000 by recursion.
MAX_DEPTH: Final = 512

_OPEN, _CLOSE = ord("{"), ord("}")
# A \u escape of a high surrogate that no low one follows (an odd run of backslashes before it
# is not checked: only used to word an error msgspec has already found).
_LONE_HIGH: Final = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})")
_QUOTE, _BACKSLASH = ord('"'), ord("\\")


def _unescaped(quotes: npt.NDArray[np.intp], raw: npt.NDArray[np.uint8]) -> npt.NDArray[np.intp]:
    """The quotes not escaped, i.e. not preceded by an odd run of backslashes."""
    after_backslash = quotes[(quotes > 0) & (raw[np.maximum(quotes - 1, 0)] == _BACKSLASH)]
    if after_backslash.size == 0:
        return quotes
    slashes = np.flatnonzero(raw == _BACKSLASH)
    starts_run = np.ones(slashes.size, bool)
    starts_run[1:] = np.diff(slashes) != 1
    run_start = np.maximum.accumulate(np.where(starts_run, np.arange(slashes.size), 0))
    last = np.searchsorted(slashes, after_backslash - 1)  # the backslash just before each
    escaped = after_backslash[(last - run_start[last] + 1) % 2 == 1]
    return np.setdiff1d(quotes, escaped, assume_unique=True)


def nesting_depth(data: bytes) -> int:
    """The deepest array/object nesting of a JSON text, brackets inside strings not counted.

    Vectorised over the bracket and quote positions only, since it runs on large imports too.
    Exact for valid JSON (where a backslash only occurs inside strings); for other input the
    decoder reports the error.
    """
    raw = np.frombuffer(data, np.uint8)
    folded = raw | 0x20  # "[" -> "{" and "]" -> "}"; no other byte maps onto either
    opens = np.flatnonzero(folded == _OPEN)
    if opens.size == 0:
        return 0
    closes = np.flatnonzero(folded == _CLOSE)
    quotes = _unescaped(np.flatnonzero(raw == _QUOTE), raw)
    opens = opens[(np.searchsorted(quotes, opens) & 1) == 0]  # an even number of quotes before
    closes = closes[(np.searchsorted(quotes, closes) & 1) == 0]
    where = np.concatenate([opens, closes])
    step = np.concatenate([np.ones(opens.size, np.int32), np.full(closes.size, -1, np.int32)])
    return int(np.cumsum(step[np.argsort(where)]).max(initial=0))


def _check_depth(data: bytes | str) -> None:
    if isinstance(data, str):
        opens = data.count("[") + data.count("{")
    else:
        opens = data.count(b"[") + data.count(b"{")
    if opens <= MAX_DEPTH:  # the common case: no pass over the data at all
        return
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    depth = nesting_depth(raw)
    if depth > MAX_DEPTH:
        raise msgspec.DecodeError(f"JSON nested too deeply ({depth} levels; at most {MAX_DEPTH})")


_ANY: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


@overload
def decode(data: bytes | str) -> Any: ...
@overload
def decode(data: bytes | str, decoder: msgspec.json.Decoder[T]) -> T: ...


def decode(data: bytes | str, decoder: msgspec.json.Decoder[Any] = _ANY) -> Any:
    """``decoder.decode(data)``, raising only ``msgspec.DecodeError`` for bad input."""
    _check_depth(data)
    try:
        return decoder.decode(data)
    except RecursionError:
        raise msgspec.DecodeError("JSON nested too deeply") from None
    except UnicodeError as exc:  # reason: e.g. "invalid start byte", "surrogates not allowed"
        reason = getattr(exc, "reason", str(exc))
        raise msgspec.DecodeError(f"JSON text is not valid UTF-8: {reason}") from None
    except msgspec.DecodeError as exc:
        if isinstance(exc, msgspec.ValidationError):
            raise
        lone = _LONE_HIGH.search(data if isinstance(data, bytes) else data.encode(errors="replace"))
        if lone is not None and str(exc) == "Input data was truncated":
            # msgspec's words for "\ud800" not followed by a low half, wherever it stands
            raise msgspec.DecodeError(
                f"JSON is malformed: a lone UTF-16 surrogate {lone[0].decode()} (byte "
                f"{lone.start()}): a \\u escape from D800 to DBFF needs one from DC00 to DFFF "
                "after it"
            ) from None
        # msgspec >= 0.23 reports invalid UTF-8 as a DecodeError in its own words; say it in
        # ours, whichever release is installed (only on the error path, so no cost otherwise).
        if isinstance(data, str):
            raise
        try:
            bytes(data).decode("utf-8")
        except UnicodeDecodeError as bad:
            raise msgspec.DecodeError(f"JSON text is not valid UTF-8: {bad.reason}") from None
        raise
