#!/usr/bin/env bash
# GPU check for the CUDA physics backend, for a session that has an NVIDIA GPU.
#
#   bash benchmarks/gpu_check.sh            # from the repository root
#
# 1. prints the card (nvidia-smi -L);
# 2. runs tests/unit/physics/test_physics_cuda.py on the real device (VF_CUDA_DEVICE=1: no
#    simulator, larger sizes);
# 3. runs benchmarks/physics_gpu.py: median ms/step of the CUDA stepper at 100k and 1M BA
#    nodes against the CPU stepper at 100k in the same run.
# Every stage has a hard timeout; the whole script stays under ~7 minutes.
#
# Python: $PYTHON if set, else .venv/bin/python if it imports numba.cuda, else python3.  Wheels
# of missing pure dependencies (msgspec, loguru, ...) found in .gpu_wheels/ are installed to
# /tmp/vf_gpu_deps first (the device image has numba, numba-cuda, numpy, pytest, anyio but not
# all of the project's dependencies; see benchmarks/README.md).
set -u
cd "$(dirname "$0")/.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ] && timeout 60 .venv/bin/python -c "import numba.cuda" 2>/dev/null; then
        PY=.venv/bin/python
    else
        PY=python3
    fi
fi
if [ -d .gpu_wheels ] && ls .gpu_wheels/*.whl >/dev/null 2>&1; then
    timeout 120 "$PY" -m pip install -q --no-index --no-deps --target /tmp/vf_gpu_deps .gpu_wheels/*.whl \
        || echo "gpu_check: installing .gpu_wheels failed"
    export PYTHONPATH="/tmp/vf_gpu_deps${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset NUMBA_ENABLE_CUDASIM
export NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS=0

echo "== card"
timeout 30 nvidia-smi -L || echo "gpu_check: nvidia-smi failed"
echo "== python: $PY"
timeout 60 "$PY" -c "import numba, numba.cuda as c; print('numba', numba.__version__, 'cuda available', c.is_available())" \
    || echo "gpu_check: numba.cuda does not import"

echo "== CUDA tests on the device"
VF_CUDA_DEVICE=1 timeout 240 "$PY" -m pytest tests/unit/physics/test_physics_cuda.py \
    -q -p no:cacheprovider -o timeout=200 -rA
tests_rc=$?

echo "== benchmark"
timeout 300 "$PY" benchmarks/physics_gpu.py --budget-s 290
bench_rc=$?

echo "== gpu_check: tests rc=$tests_rc benchmark rc=$bench_rc (124 = timed out)"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
