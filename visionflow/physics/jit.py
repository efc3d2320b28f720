"""numba settings, and the one jitted helper, shared by the CPU kernel modules.

``cpu.py`` (exact repulsion, integration, non-finite repair) and ``octree.py`` (Barnes-Hut)
compile with the same options; ``hash01`` is inlined into kernels of both.
"""

from __future__ import annotations

import math

import numba

from visionflow.physics import KERNEL_CACHE

__all__ = ["CACHE", "FASTMATH", "hash01"]

# fastmath without 'nnan'/'ninf' so isfinite checks and NaN propagation stay honest.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
# False only when no directory at all is writable (visionflow.physics.kernel_cache)
CACHE = KERNEL_CACHE.enabled


# The only jitted function called from kernels in other files. numba's on-disk cache
# (cache=True) checks the hash of the file holding the kernel it compiled, not of the files its
# callees come from: after editing this, clear the kernel cache, or cpu.py's and octree.py's
# cached kernels keep the old code. It is not meant to change: cuda_bh.hash01 repeats it, and
# the CPU/GPU equivalence tests compare the pushes it gives.
@numba.njit(inline="always", nogil=True, cache=CACHE)
def hash01(i, k):  # type: ignore[no-untyped-def]
    """Deterministic pseudo-random number in [-1, 1) from two integers (no global RNG state)."""
    s = math.sin(float(i) * 12.9898 + float(k) * 78.233) * 43758.5453
    return 2.0 * (s - math.floor(s)) - 1.0
