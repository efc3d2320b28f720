"""CUDA kernels under numba-cuda's simulator, in subprocesses.

NUMBA_ENABLE_CUDASIM must be set before numba.cuda is first imported, so these runs happen in
child interpreters and cannot change how the rest of the suite sees numba.cuda.

With ``VF_CUDA_DEVICE=1`` the same checks run on the real GPU instead (no simulator, larger
sizes; see benchmarks/gpu_check.sh), and the no-device test is skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parents[2]
ON_DEVICE = os.environ.get("VF_CUDA_DEVICE") == "1"


def _run(args: list[str], sim: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    if sim:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    extra = [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []  # e.g. carried wheels
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE), *extra])
    return subprocess.run(
        [sys.executable, "-W", "error", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


@pytest.mark.slow
def test_cuda_step_matches_cpu_under_simulator() -> None:
    proc = _run([str(HERE / "cudasim_equivalence.py")], sim=not ON_DEVICE)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("check", ["structure", "piles", "forces", "step", "residency"])
def test_cuda_barnes_hut(check: str) -> None:
    """Morton + radix sort vs numpy, a valid LBVH, BH forces vs exact, a BH step vs the CPU
    step, device residency (tests/unit/physics/cuda_bh_checks.py)."""
    proc = _run([str(HERE / "cuda_bh_checks.py"), check], sim=not ON_DEVICE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(proc.stdout)


# In a child: 'auto' must fall back to the CPU and 'cuda' must raise StartupError (printed).
_RESOLVE = (
    "from visionflow.errors import StartupError\n"
    "from visionflow.physics.engine import resolve_backend\n"
    "assert resolve_backend('auto') == 'cpu'\n"
    "try:\n"
    "    resolve_backend('cuda')\n"
    "except StartupError as e:\n"
    "    print('StartupError:', e)\n"
    "else:\n"
    "    raise SystemExit('no error')\n"
)


@pytest.mark.skipif(ON_DEVICE, reason="this machine has a GPU")
def test_cuda_backend_without_device_is_a_clear_startup_error() -> None:
    proc = _run(["-c", _RESOLVE], sim=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no usable CUDA device" in proc.stdout


def test_numba_without_numba_cuda_is_not_used_for_cuda() -> None:
    # numba's own bundled CUDA target cannot compile these kernels on numba >= 0.66.
    hide = "import sys\nsys.modules['numba_cuda'] = None  # as if it were not installed\n"
    proc = _run(["-c", hide + _RESOLVE], sim=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "visionflow[cuda]" in proc.stdout


# The log line 'physics backend: cpu (why)' takes its reason from choose_backend.
_CHOOSE = "from visionflow.physics.engine import choose_backend\nprint(choose_backend('auto'))\n"


@pytest.mark.skipif(ON_DEVICE, reason="this machine has a GPU")
def test_cpu_fallback_says_numba_cuda_found_no_device_and_why() -> None:
    proc = _run(["-c", _CHOOSE], sim=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    prefix = "('cpu', 'numba-cuda installed, but no CUDA device: "
    assert proc.stdout.startswith(prefix), proc.stdout
    assert len(proc.stdout) > len(prefix) + 10  # the driver's reason, not an empty one


def test_cpu_fallback_says_numba_cuda_is_not_installed() -> None:
    hide = "import sys\nsys.modules['numba_cuda'] = None  # as if it were not installed\n"
    proc = _run(["-c", hide + _CHOOSE], sim=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "('cpu', 'numba-cuda not installed')"
