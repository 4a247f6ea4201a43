#!/usr/bin/env bash
# One go on a machine with a CUDA GPU: build minireg, run the gpu-marked tests, run the GPU benchmark.
#
#     bash bench/gpu/run_gpu.sh            # from the repository root; logs go to $OUT (default runs/gpu)
#
# Needs CuPy, NumPy, Cython, setuptools, pytest and Hypothesis on that machine, plus array-api-compat
# (the CuPy backend's namespace) and array-api-strict (the test suite's fake device). Where they are
# missing and there is no network, bring pure-Python wheels in .whl/ (ignored by git) made here with
#     python3 -m pip download --no-deps --only-binary=:all: -d .whl array-api-compat==1.16.0 array-api-strict==2.6.1
# and this script installs them into /tmp/minireg-site first. PYTHON picks the interpreter (default python3).
# Budget: about 1 minute to build, a few minutes of tests, 2-4 minutes of benchmark (the CPU side is slow).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
status=0

step() {      # step NAME COMMAND...: run, tee to $OUT/NAME.log, remember a failure, carry on
    local name=$1
    shift
    echo "==== $name: $*" | tee "$OUT/$name.log"
    "$@" 2>&1 | tee -a "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "==== $name: exit $rc" | tee -a "$OUT/$name.log"
    [ "$rc" -eq 0 ] || status=1
    return "$rc"
}

if compgen -G ".whl/*.whl" >/dev/null; then
    step wheels "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/minireg-site .whl/*.whl
    export PYTHONPATH=/tmp/minireg-site${PYTHONPATH:+:$PYTHONPATH}
fi
step environment bash -c "nvidia-smi; $PY -c 'import sys, numpy, cupy; print(sys.version); print(\"numpy\", numpy.__version__, \"cupy\", cupy.__version__, \"gpu\", cupy.cuda.runtime.getDeviceCount())'"
step build "$PY" -m pip install --no-build-isolation --no-deps -e . || { echo "build failed, see $OUT/build.log"; exit 1; }
# the whole gpu-marked suite: CuPy backend paths, every op on the cupy backend, kernels, CPU/GPU parity
MINIREG_BACKEND=numpy step pytest_gpu "$PY" -m pytest -m gpu -q -p no:cacheprovider -o addopts="" tests
step bench_gpu "$PY" bench/bench_gpu.py --json "$OUT/bench_gpu.json"
echo "logs in $OUT; overall exit $status"
exit $status
