"""What the graph hands to the layout: positions within +-``MAX_COORD`` and a CSR adjacency.

Both live here, below ``physics``, because the store needs them to validate positions and to
build its dense arrays, and the physics kernels read those arrays; the store must not import
``visionflow.physics`` (importing it chooses numba's kernel cache directory). Plain numpy: nothing
here is compiled.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["MAX_COORD", "csr_from_edges"]

# Coordinates beyond this are refused at every way in (drags, pins, imports, the layout file)
# and stop the integrator: the Barnes-Hut kernels square separations in float32, which
# overflows past ~1e19, and frames carry float32 positions anyway. 10x the largest bounds_size.
# physics/cpu.py compiles it into kernels cached on disk by that file's hash: after changing it
# here, clear the numba cache (or touch cpu.py).
MAX_COORD = 1e6

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


def csr_from_edges(n: int, src: I64, dst: I64, weight: F64) -> tuple[I64, I64, F64]:
    """Both-direction CSR adjacency from dense-index edge arrays (integer sort only)."""
    both_src = np.concatenate([src, dst]).astype(np.int64, copy=False)
    both_dst = np.concatenate([dst, src]).astype(np.int64, copy=False)
    both_w = np.concatenate([weight, weight]).astype(np.float64, copy=False)
    order = np.argsort(both_src, kind="stable")
    indices = np.ascontiguousarray(both_dst[order])
    weights = np.ascontiguousarray(both_w[order])
    counts = np.bincount(both_src, minlength=n) if both_src.size else np.zeros(n, np.int64)
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, indices, weights
