"""The numba-cuda package, imported in one place, so that its warnings cannot stop us.

numba ships an older CUDA target under the same import name; it is deprecated and, on numba
>= 0.66, cannot compile two-argument min/max (numba issue 10753), which our kernels use. Only
the separate numba-cuda package (which takes over ``numba.cuda``) is good enough, so importing
this module raises ImportError without it.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any

# Deprecations that numba-cuda itself triggers on import and that we cannot fix: (message
# prefix, category). numba-cuda 0.30 builds a generic-unit ``timedelta64("nat")``, deprecated
# in numpy 2.5. Under ``-W error`` (the test suite) or a user's PYTHONWARNINGS=error such a
# warning would make the CUDA backend unusable, so it is ignored for this import only.
IMPORT_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    ("The 'generic' unit for NumPy timedelta is deprecated", DeprecationWarning),
)

if importlib.util.find_spec("numba_cuda") is None:
    raise ImportError("the numba-cuda package is not installed (pip install 'visionflow[cuda]')")

with warnings.catch_warnings():
    for _message, _category in IMPORT_WARNINGS:
        warnings.filterwarnings("ignore", message=_message, category=_category)
    from numba import cuda as _numba_cuda

cuda: Any = _numba_cuda  # numba-cuda's partial annotations trip mypy --strict; kernels are untyped
