"""JSON from outside (sockets, request bodies, files), with every kind of bad input as one error.

msgspec reports most bad input as ``msgspec.DecodeError``, but not all of it: invalid UTF-8
inside a string raises ``UnicodeDecodeError`` (before msgspec 0.23; later releases raise a
``DecodeError`` worded their own way, which is reworded here), a ``str`` holding a lone surrogate
``UnicodeEncodeError``, and nesting past the interpreter's recursion limit ``RecursionError``.
Untrusted input goes through :func:`decode` so that callers catch one exception type
(``msgspec.ValidationError`` stays what it is, a subclass of ``DecodeError``).
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

import msgspec

T = TypeVar("T")

_ANY: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


@overload
def decode(data: bytes | str) -> Any: ...
@overload
def decode(data: bytes | str, decoder: msgspec.json.Decoder[T]) -> T: ...


def decode(data: bytes | str, decoder: msgspec.json.Decoder[Any] = _ANY) -> Any:
    """``decoder.decode(data)``, raising only ``msgspec.DecodeError`` for bad input."""
    try:
        return decoder.decode(data)
    except RecursionError:
        raise msgspec.DecodeError("JSON nested too deeply") from None
    except UnicodeError as exc:  # reason: e.g. "invalid start byte", "surrogates not allowed"
        reason = getattr(exc, "reason", str(exc))
        raise msgspec.DecodeError(f"JSON text is not valid UTF-8: {reason}") from None
    except msgspec.DecodeError as exc:
        # msgspec >= 0.23 reports invalid UTF-8 as a DecodeError in its own words; say it in
        # ours, whichever release is installed (only on the error path, so no cost otherwise).
        if isinstance(exc, msgspec.ValidationError) or isinstance(data, str):
            raise
        try:
            bytes(data).decode("utf-8")
        except UnicodeDecodeError as bad:
            raise msgspec.DecodeError(f"JSON text is not valid UTF-8: {bad.reason}") from None
        raise
