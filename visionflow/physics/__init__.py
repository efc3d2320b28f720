"""physics subsystem: parameters, CPU and CUDA kernels, the engine and layout persistence."""

import os

# numba's OpenMP workers spin-wait between parallel regions by default. Measured at 10k nodes,
# that costs 13.2 ms of CPU per 3.3 ms step, taken from the core the event loop needs; waiting
# passively costs 4.9 ms per 4.5 ms step (benchmarks/README.md). libgomp reads this when numba
# first loads its OpenMP layer, at the first parallel step, which is after this import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Before any kernel module is imported: numba's cache=True raises at decoration time when it
# has nowhere to write (visionflow.physics.kernel_cache).
from visionflow.physics.kernel_cache import configure as _configure_kernel_cache  # noqa: E402

KERNEL_CACHE = _configure_kernel_cache()
