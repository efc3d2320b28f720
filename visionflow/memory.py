"""Give freed heap memory back to the operating system after large work (glibc only).

A large import decodes a document of hundreds of MB into Python objects and frees most of it
again, but glibc keeps the freed pages in its arenas: three 300k-node imports in one process
held 1590 MiB where 1240 MiB were in use (``malloc_trim`` returned the rest). Elsewhere (musl,
macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable

__all__ = ["release_freed"]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_freed() -> bool:
    """Return free heap pages to the system; whether it could (blocking: call it in a worker
    thread, it walks the whole heap)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
