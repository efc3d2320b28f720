"""numba kernels behind the frame encoder (private: call them through :mod:`.frames`).

Why numba: numpy fills a 28-byte interleaved record with one strided copy per column (7 passes,
~6x a memcpy at 100k nodes); one fused loop writes every record once and checks finiteness and
flags on the way, at about the speed of a memcpy.

The kernels work on ``uint32`` views of everything, so floats are copied bit for bit and the
finiteness test is an integer test on the exponent. They never exit early: the checks are OR
reductions so the loop stays branch-free; the caller finds the offending row only on failure.
They are compiled lazily on first use (about 0.3 s each) and release the GIL.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

_EXP_MASK = np.uint32(0x7F800000)
# (bits & EXP_MASK) + EXP_LSB carries into bit 31 exactly when the exponent is all ones (inf, NaN).
_EXP_LSB = np.uint32(0x00800000)
_SHIFT_31 = np.uint32(31)
_SHIFT_30 = np.uint32(30)
_ONE = np.uint32(1)
_TWO = np.uint32(2)
_THREE = np.uint64(3)
_ONE64 = np.uint64(1)
_TWO64 = np.uint64(2)


@njit(nogil=True, boundscheck=False, cache=False)
def _pack_all(
    out: NDArray[np.uint32],
    ids: NDArray[np.uint32],
    pos: NDArray[np.uint32],
    vel: NDArray[np.uint32],
) -> int:
    n = ids.shape[0]
    nonfinite = np.uint32(0)
    badflag = np.uint32(0)
    for i in range(n):
        o = 7 * i
        q = 3 * i
        d = ids[i]
        a0 = pos[q]
        a1 = pos[q + 1]
        a2 = pos[q + 2]
        b0 = vel[q]
        b1 = vel[q + 1]
        b2 = vel[q + 2]
        out[o] = d
        out[o + 1] = a0
        out[o + 2] = a1
        out[o + 3] = a2
        out[o + 4] = b0
        out[o + 5] = b1
        out[o + 6] = b2
        nonfinite |= (
            ((a0 & _EXP_MASK) + _EXP_LSB)
            | ((a1 & _EXP_MASK) + _EXP_LSB)
            | ((a2 & _EXP_MASK) + _EXP_LSB)
            | ((b0 & _EXP_MASK) + _EXP_LSB)
            | ((b1 & _EXP_MASK) + _EXP_LSB)
            | ((b2 & _EXP_MASK) + _EXP_LSB)
        )
        # flag bits t = id >> 30 must be 1 or 2 (exactly one flag); (t + 1) & 2 is 0 otherwise.
        badflag |= (((d >> _SHIFT_30) + _ONE) & _TWO) ^ _TWO
    return int(nonfinite >> _SHIFT_31) | int(badflag != 0) << 1


@njit(nogil=True, boundscheck=False, cache=False)
def _pack_rows(
    out: NDArray[np.uint32],
    ids: NDArray[np.uint32],
    pos: NDArray[np.uint32],
    vel: NDArray[np.uint32],
    rows: NDArray[np.intp],
) -> int:
    n = rows.shape[0]
    n_nodes = np.uint64(ids.shape[0])
    nonfinite = np.uint32(0)
    badflag = np.uint32(0)
    outside = 0
    for i in range(n):
        # Unsigned indices spare numba a negative-index wraparound test on every load (7x faster),
        # and make one comparison refuse negative rows as well as rows past the end.
        r = np.uint64(rows[i])
        if r >= n_nodes:  # never taken on valid input, so predicted for free
            outside = 1
            continue
        o = 7 * i
        q = _THREE * r
        d = ids[r]
        a0 = pos[q]
        a1 = pos[q + _ONE64]
        a2 = pos[q + _TWO64]
        b0 = vel[q]
        b1 = vel[q + _ONE64]
        b2 = vel[q + _TWO64]
        out[o] = d
        out[o + 1] = a0
        out[o + 2] = a1
        out[o + 3] = a2
        out[o + 4] = b0
        out[o + 5] = b1
        out[o + 6] = b2
        nonfinite |= (
            ((a0 & _EXP_MASK) + _EXP_LSB)
            | ((a1 & _EXP_MASK) + _EXP_LSB)
            | ((a2 & _EXP_MASK) + _EXP_LSB)
            | ((b0 & _EXP_MASK) + _EXP_LSB)
            | ((b1 & _EXP_MASK) + _EXP_LSB)
            | ((b2 & _EXP_MASK) + _EXP_LSB)
        )
        badflag |= (((d >> _SHIFT_30) + _ONE) & _TWO) ^ _TWO
    return int(nonfinite >> _SHIFT_31) | int(badflag != 0) << 1 | outside << 2


#: Bits of the kernels' return value.
NONFINITE = 1
BADFLAG = 2
OUT_OF_RANGE = 4  # pack_rows only: a row < 0 or >= len(ids); its record is left unwritten


def pack_all(
    out: NDArray[np.uint32],
    ids: NDArray[np.uint32],
    pos: NDArray[np.uint32],
    vel: NDArray[np.uint32],
) -> int:
    """Write ``len(ids)`` records into flat ``out``; return NONFINITE | BADFLAG bits (0 = clean)."""
    return int(_pack_all(out, ids, pos, vel))


def pack_rows(
    out: NDArray[np.uint32],
    ids: NDArray[np.uint32],
    pos: NDArray[np.uint32],
    vel: NDArray[np.uint32],
    rows: NDArray[np.intp],
) -> int:
    """Like :func:`pack_all` for the rows ``rows`` only, in that order.

    A row out of range sets OUT_OF_RANGE and its record is not written (``out`` is then to be
    discarded); nothing is read outside the arrays.
    """
    return int(_pack_rows(out, ids, pos, vel, rows))
