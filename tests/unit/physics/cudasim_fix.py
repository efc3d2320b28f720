"""Make numba-cuda's simulator allocate shared arrays race-free (imported by the child scripts).

The simulator runs every CUDA thread of a block as a Python thread, and its
``FakeCUDAShared.array`` does an unlocked check-then-insert on a per-block dict: two threads can
both miss and each get its own array, so a block's "shared" memory is silently split and reads
return another array's uninitialised bytes (seen as a garbage scatter index in the radix sort,
about 1 run in 20). A real GPU has no such race. This swaps in the same method under a lock.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from typing import Any

import numpy as np

_lock = threading.Lock()


def install() -> None:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        return
    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    def array(self: Any, shape: Any, dtype: Any, alignment: Any = None) -> Any:
        if alignment is not None:
            raise RuntimeError("Array alignment is not supported in cudasim")
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        if shape == 0:
            count = self._dynshared_size // dtype.itemsize
            return np.frombuffer(self._dynshared.data, dtype=dtype, count=count)
        caller = traceback.extract_stack(sys._getframe())[-2][0:2]
        with _lock:
            res = self._allocations.get(caller)
            if res is None:
                res = self._allocations[caller] = np.empty(shape, dtype)
        return res

    kernelapi.FakeCUDAShared.array = array
