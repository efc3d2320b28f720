"""map_large_blocks: with glibc's mmap threshold fixed, a large block freed goes back to the
system at once, also after a larger one has been freed (which, left to glibc, raises the
threshold so that the next blocks of a few MiB stay in the arenas). Each case runs in a fresh
interpreter: the setting is process-wide and cannot be undone."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="glibc's allocator only (elsewhere map_large_blocks does nothing)",
)

# Prints whether map_large_blocks set the threshold, then how many more blocks glibc holds in
# mappings of their own (mallinfo's hblks) once a 2 MiB block is allocated after a 16 MiB one
# was freed: 1 when that block got its own mapping, 0 when it came from an arena.
PROBE = """
import ctypes, sys
from visionflow.memory import map_large_blocks

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo.restype = Info
print(map_large_blocks() if sys.argv[1] == "fixed" else None)
big = bytearray(16 << 20)
del big  # freed: glibc's own threshold now rises to 16 MiB
before = libc.mallinfo().hblks
block = bytearray(2 << 20)
print(libc.mallinfo().hblks - before)
"""


def probe(mode: str, **env: str) -> list[str]:
    clean = {
        k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.split()


def test_a_block_of_a_few_mib_gets_its_own_mapping_once_the_threshold_is_fixed() -> None:
    assert probe("fixed") == ["True", "1"]


def test_left_to_glibc_it_comes_from_an_arena_after_a_larger_one_was_freed() -> None:
    # what the fix is for: without it the same block stays in the heap when freed
    assert probe("default") == ["None", "0"]


def test_a_threshold_the_environment_sets_is_left_alone() -> None:
    assert probe("fixed", MALLOC_MMAP_THRESHOLD_=str(32 << 20)) == ["False", "0"]
