"""Memory after large work: freed heap back to the system (glibc), the graph out of the GC's way.

A large import decodes a document of hundreds of MB into Python objects and frees most of it
again, but glibc keeps the freed pages in its arenas: three 300k-node imports in one process
held 1590 MiB where 1240 MiB were in use (``malloc_trim`` returned the rest). Elsewhere (musl,
macOS) this does nothing.

Large blocks are the other half (:func:`map_large_blocks`): glibc serves a block of 128 KiB or
more with its own ``mmap`` and unmaps it when freed, but each time such a block is freed it
raises that threshold to the block's size, up to 32 MiB. After the first large import every
table, list, numpy array and encoded file of a few MiB (a 300k-entry dict, the layout saver's
output, the physics arrays) came from the arenas of whichever thread asked, and freed, stayed
there until the next trim: three rounds of 16 concurrent re-imports of a 300k-node graph
settled 19-32 % above their level before, with the threshold fixed 3-7 %, and the peak was
~250 MiB lower (benchmarks/bodies_memory.py --compare; issue 17).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import os
import threading
from collections.abc import Callable, Iterator

__all__ = ["keep_out_of_gc", "map_large_blocks", "no_gc_while", "release_freed"]

# Blocks from this size up get their own mapping, given back when freed. glibc's initial
# threshold (128 KiB) moves up by itself; 256 KiB, fixed, keeps the many small tables of a
# running service in the arenas and every large temporary out of them.
MMAP_THRESHOLD = 256 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


@functools.cache
def _mallopt() -> Callable[[int, int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


def map_large_blocks(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes (see the module's docstring); whether
    it was set. Left alone when the environment sets one of its own (``MALLOC_MMAP_THRESHOLD_``
    or ``mmap_threshold`` in ``GLIBC_TUNABLES``), and a no-op where the C library is not glibc.
    Process-wide; call it once at start-up (blocks allocated before keep their placement)."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "mmap_threshold" in os.environ.get(
        "GLIBC_TUNABLES", ""
    ):
        return False
    mallopt = _mallopt()
    return mallopt is not None and mallopt(_M_MMAP_THRESHOLD, threshold) == 1


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


def keep_out_of_gc() -> None:
    """Move every object alive now out of the cyclic collector's reach (``gc.freeze``).

    Called once a large import or the start-up restore is done: what is alive then is mostly
    the graph, which lives on. A full collection walks every tracked object with the GIL held;
    at 300k nodes (1.17M objects) that took ~415 ms, and the event loop stalled with it. Objects
    frozen here are still freed by reference counting when dropped; only cyclic garbage among
    them would wait for ``gc.unfreeze``. O(1): the collector's lists are spliced, not walked.
    """
    gc.freeze()


_users = 0  # blocks inside no_gc_while now
_reenable = False  # whether the collector was on when the first of them began
_users_lock = threading.Lock()


@contextlib.contextmanager
def no_gc_while() -> Iterator[None]:
    """No cyclic collection while the block runs (reference counting still frees), for building
    a large graph: a 300k-node import allocates ~1M objects, and the collections they set off
    walked all of them with the GIL held, hundreds of milliseconds at a time, while the event
    loop waited. Nested and concurrent uses keep it off until the last one ends."""
    global _users, _reenable
    with _users_lock:
        if _users == 0:
            _reenable = gc.isenabled()
            gc.disable()
        _users += 1
    try:
        yield
    finally:
        with _users_lock:
            _users -= 1
            if _users == 0 and _reenable:
                gc.enable()
