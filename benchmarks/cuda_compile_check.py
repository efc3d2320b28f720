"""Compile every CUDA kernel of the physics backend for a real GPU, on a machine without one.

    python benchmarks/cuda_compile_check.py [--cc 9.0] [--ptxas PATH]

The test suite runs the kernels under numba-cuda's simulator, which executes them as Python:
it cannot see what only the real compiler sees (a builtin numba cannot lower for CUDA, a type
that does not unify, a kernel that does not fit the registers or shared memory). This script

1. runs a CUDA step (all-pairs and Barnes-Hut) under the simulator in a child process and
   records the argument types of every kernel launch;
2. compiles each kernel with those types to PTX for compute capability ``--cc`` (numba-cuda and
   NVVM only: no driver, no GPU);
3. assembles each PTX with ``ptxas`` when one is found and prints registers, spills and shared
   memory per kernel.

NVVM, NVRTC and ptxas are not project dependencies (about 300 MB). Install them for a run, into
the venv:  pip install "nvidia-nvvm==13.*" "nvidia-cuda-nvrtc==13.*" "nvidia-cuda-nvcc==13.*"
or elsewhere and point CUDA_HOME at their ``nvidia/cu13`` folder; a toolkit's ptxas on PATH
also does.
Exit status: 0 when every kernel compiled (and assembled), 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("visionflow.physics.cuda", "visionflow.physics.cuda_bh")


def record_launches() -> None:
    """Child process, under the simulator: print {kernel: [arg descriptors]} as JSON."""
    import numpy as np
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    sys.path.insert(0, str(ROOT / "tests" / "unit" / "physics"))
    import cudasim_fix  # type: ignore[import-not-found]

    cudasim_fix.install()
    seen: dict[str, list[Any]] = {}
    call: Any = FakeCUDAKernel.__call__

    def describe(arg: Any) -> Any:
        ary = getattr(arg, "_ary", arg)  # simulator device arrays wrap a numpy array
        if isinstance(ary, np.ndarray):
            return ["array", ary.dtype.str, ary.ndim, bool(ary.flags.c_contiguous)]
        if isinstance(arg, bool | np.bool_):
            return ["scalar", "bool"]
        if isinstance(arg, int | np.integer):
            return ["scalar", np.dtype(type(arg)).str if isinstance(arg, np.integer) else "<i8"]
        if isinstance(arg, float | np.floating):
            return ["scalar", np.dtype(type(arg)).str if isinstance(arg, np.floating) else "<f8"]
        raise TypeError(f"cannot describe a kernel argument of type {type(arg).__name__}")

    def recording(self: Any, *args: Any) -> Any:
        if not self._device and self.grid_dim is not None:
            name = f"{self.fn.__module__}:{self.fn.__name__}"
            seen.setdefault(name, [describe(a) for a in args])
        return call(self, *args)

    FakeCUDAKernel.__call__ = recording  # type: ignore[method-assign]

    from visionflow.graph.dense import csr_from_edges
    from visionflow.physics.cuda import CudaStepper
    from visionflow.physics.cuda_bh import BarnesHut
    from visionflow.physics.params import pack
    from visionflow.physics.step import StepInput
    from visionflow.settings import PhysicsParams

    sys.setswitchinterval(1e-4)  # the simulator's barriers poll: short GIL slices are faster
    rng = np.random.default_rng(0)
    n = 96
    src, dst = rng.integers(0, n, 150), rng.integers(0, n, 150)
    indptr, indices, weights = csr_from_edges(n, src, dst, rng.random(150))
    pos, vel = rng.normal(size=(n, 3)) * 20.0, np.zeros((n, 3))
    group = (rng.random(n) < 0.3).astype(np.int8)
    params = pack(PhysicsParams(), PhysicsParams(repel_k=5.0))
    CudaStepper(precompile=False).step(
        StepInput(
            pos, vel, group, np.zeros(n, np.uint8), indptr, indices, weights, params, 0, np.ones(n)
        )
    )
    from visionflow.physics.cuda import cuda

    forces = cuda.device_array((n, 3), np.float64)
    BarnesHut(n).forces(
        cuda.to_device(pos),
        cuda.to_device(group),
        cuda.to_device(params),
        cuda.to_device(indptr),
        forces,
    )
    print(json.dumps(seen))


def numba_type(desc: list[Any]) -> Any:
    import numpy as np
    from numba import types
    from numba.np.numpy_support import from_dtype

    if desc[0] == "array":
        return types.Array(from_dtype(np.dtype(desc[1])), desc[2], "C" if desc[3] else "A")
    return types.boolean if desc[1] == "bool" else from_dtype(np.dtype(desc[1]))


def find_ptxas(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    found = shutil.which("ptxas")
    if found:
        return found
    for base in sys.path:
        for candidate in Path(base).glob("nvidia/cu*/bin/ptxas"):
            return str(candidate)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cc", default="9.0", help="compute capability, e.g. 8.0 or 9.0")
    parser.add_argument("--ptxas", help="path of ptxas (default: PATH, then nvidia wheels)")
    parser.add_argument("--record", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.record:
        record_launches()
        return 0

    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "PYTHONPATH": str(ROOT)}
    child = subprocess.run(
        [sys.executable, __file__, "--record"], env=env, capture_output=True, text=True, timeout=600
    )
    if child.returncode != 0:
        print(child.stdout, child.stderr, sep="\n")
        return 1
    launches: dict[str, list[Any]] = json.loads(child.stdout.strip().splitlines()[-1])

    import numba.cuda.dispatcher as dispatcher

    cuda: Any = importlib.import_module("numba.cuda")  # numba-cuda is untyped

    major, minor = (int(p) for p in args.cc.split("."))

    class _Target:  # device functions ask the current device for its cc: answer without one
        compute_capability = (major, minor)

    dispatcher.get_current_device = lambda: _Target()  # type: ignore[attr-defined]
    kernels = {}
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name, obj in vars(module).items():
            if hasattr(obj, "py_func") and not obj.targetoptions.get("device", False):
                kernels[f"{module_name}:{name}"] = obj
    missing = sorted(set(kernels) - set(launches))
    ptxas = find_ptxas(args.ptxas)
    print(f"compute capability {args.cc}; ptxas: {ptxas or 'not found (PTX only)'}")
    print(f"{'kernel':<44} {'ptx lines':>9}  ptxas")
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted(launches):
            kernel = kernels.get(name)
            if kernel is None:
                continue
            sig = tuple(numba_type(d) for d in launches[name])
            try:
                ptx, _ = cuda.compile_ptx(
                    kernel.py_func, sig, cc=(major, minor), **_options(kernel.targetoptions)
                )
            except Exception as exc:  # a report of every kernel, not the first failure only
                failed += 1
                print(f"{name:<44} {'FAILED':>9}  {type(exc).__name__}: {str(exc)[:300]}")
                continue
            report = ""
            if ptxas:
                path = Path(tmp) / f"{name.replace(':', '_')}.ptx"
                path.write_text(ptx)
                sm = f"sm_{major}{minor}"
                done = subprocess.run(
                    [ptxas, f"-arch={sm}", "-v", str(path), "-o", str(path.with_suffix(".cubin"))],
                    capture_output=True,
                    text=True,
                )
                if done.returncode != 0:
                    failed += 1
                    report = "FAILED " + done.stderr.strip()[-300:]
                else:
                    used = [
                        ln.split(": ", 1)[-1] for ln in done.stderr.splitlines() if "Used" in ln
                    ]
                    spilled = sum(int(b) for b in re.findall(r"(\d+) bytes spill", done.stderr))
                    report = "; ".join(used) + (f"; SPILLS {spilled} bytes" if spilled else "")
            print(f"{name:<44} {ptx.count(chr(10)):>9}  {report}")
    for name in missing:
        print(f"{name:<44} {'not run':>9}  (no launch recorded)")
    print("all kernels compiled" if not failed and not missing else f"{failed} failed")
    return 0 if not failed and not missing else 1


def _options(targetoptions: dict[str, Any]) -> dict[str, Any]:
    return {k: targetoptions[k] for k in ("fastmath", "lineinfo", "debug") if k in targetoptions}


if __name__ == "__main__":
    sys.exit(main())
