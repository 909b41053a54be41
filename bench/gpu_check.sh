#!/usr/bin/env bash
# The GPU check of the cuda backend in one command, run from the repository root on a machine with
# an NVIDIA GPU:
#
#   bash bench/gpu_check.sh [--quick] [more `lazyfuse bench` options]
#
# It writes everything under $OUT (default ./gpu_out): nvidia-smi.txt, gpu_env.txt (imports,
# versions, numba.cuda.detect(), a one-kernel smoke test), gpu_tests.txt (tests/cuda on the GPU),
# cuda_bench.txt / cuda_bench.json / cuda_bench.md (`lazyfuse bench --backend cuda`).
# lazyfuse needs no pip install: a temporary folder holds a link named `lazyfuse` to this checkout
# and goes on PYTHONPATH.  A missing networkx is installed offline from a networkx-*.whl under
# shared/wheels/ or bench/wheels/.  The whole run keeps within GPU_CHECK_BUDGET_S seconds (default
# 530: the device gives a command 10 minutes); a step that fails is logged and the next one runs.
# The exit status is that of the benchmark.
set -u

QUICK=()
BENCH_ARGS=()
for arg in "$@"; do
    if [ "$arg" = "--quick" ]; then QUICK=(--quick); else BENCH_ARGS+=("$arg"); fi
done

REPO="$(pwd)"
if [ ! -f "$REPO/__init__.py" ] || [ ! -f "$REPO/bench/cuda_suite.py" ]; then
    echo "gpu_check.sh: run it from the lazyfuse repository root (bash bench/gpu_check.sh)" >&2
    exit 2
fi
OUT="${OUT:-$REPO/gpu_out}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-python3}"
BUDGET_S="${GPU_CHECK_BUDGET_S:-530}"
TESTS_MAX_S="${GPU_CHECK_TESTS_S:-200}"
START_S=$SECONDS

WORK="$(mktemp -d /tmp/lazyfuse_gpu.XXXXXX)"
ln -s "$REPO" "$WORK/lazyfuse"
mkdir -p "$WORK/site"
export PYTHONPATH="$WORK:$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export LAZYFUSE_CACHE_DIR="$WORK/cache/lazyfuse"
export NUMBA_CACHE_DIR="$WORK/cache/numba"
unset NUMBA_ENABLE_CUDASIM  # the simulator is never timed

left_s() { echo $(( BUDGET_S - (SECONDS - START_S) )); }
say() { echo "== $* ($(( SECONDS - START_S )) s)"; }

# (d) the GPU as the driver sees it
say "nvidia-smi"
{ nvidia-smi; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem \
    --format=csv; } >"$OUT/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed (see $OUT/nvidia-smi.txt)"

# (a) imports: numpy, numba, numba_cuda, networkx (offline wheel if missing), then lazyfuse itself
say "imports"
missing() { "$PYTHON" -c "import $1" >/dev/null 2>&1 && return 1 || return 0; }
{
    if missing networkx; then
        wheel="$(ls shared/wheels/networkx-*.whl bench/wheels/networkx-*.whl 2>/dev/null | head -n 1)"
        if [ -n "$wheel" ]; then
            echo "networkx missing: installing $wheel (offline) into $WORK/site"
            "$PYTHON" -m pip install -q --no-index --no-deps --target "$WORK/site" "$wheel"
        else
            echo "networkx is missing and no networkx-*.whl is under shared/wheels/ or bench/wheels/."
            echo "Carry one: on a machine with pip, in the repo root:"
            echo "  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d bench/wheels networkx"
        fi
    fi
    "$PYTHON" - <<'EOF'
import importlib, sys
print("python", sys.version.split()[0], sys.executable)
bad = []
for name in ("numpy", "numba", "numba_cuda", "networkx", "cupy", "torch", "lazyfuse"):
    try:
        mod = importlib.import_module(name)
        print(f"{name} {getattr(mod, '__version__', '?')} at {getattr(mod, '__file__', '?')}")
    except Exception as exc:
        print(f"{name}: NOT importable ({type(exc).__name__}: {exc})")
        bad += [name] if name not in ("cupy", "torch") else []
if bad:
    sys.exit(f"missing: {', '.join(bad)}")
import numpy as np
from numba import cuda
try:
    cuda.detect()
    @cuda.jit
    def twice(a):
        i = cuda.grid(1)
        if i < a.size:
            a[i] *= 2
    a = cuda.to_device(np.arange(8, dtype=np.float32))
    twice[1, 32](a)
    print("one-kernel smoke test:", "ok" if (a.copy_to_host() == 2 * np.arange(8)).all() else "WRONG")
except Exception as exc:
    sys.exit(f"numba.cuda cannot run a kernel here: {type(exc).__name__}: {' '.join(str(exc).split())}")
EOF
} >"$OUT/gpu_env.txt" 2>&1
env_rc=$?
cat "$OUT/gpu_env.txt"
[ $env_rc -eq 0 ] || echo "gpu_check.sh: the import check failed (status $env_rc); going on"

# (b) the CUDA tests on the GPU
tests_s=$(( $(left_s) / 2 < TESTS_MAX_S ? $(left_s) / 2 : TESTS_MAX_S ))
say "tests/cuda on the GPU (at most $tests_s s)"
LAZYFUSE_CUDA_TESTS=gpu timeout -s INT -k 10 "$tests_s" \
    "$PYTHON" -m pytest -p no:cacheprovider --durations=10 tests/cuda >"$OUT/gpu_tests.txt" 2>&1
echo "pytest status $? (124: stopped at $tests_s s)" >>"$OUT/gpu_tests.txt"
tail -n 5 "$OUT/gpu_tests.txt"

# (c) the benchmark, then its Markdown table headed by the GPU line
bench_s=$(( $(left_s) - 20 ))
say "lazyfuse bench --backend cuda ${QUICK[*]} ${BENCH_ARGS[*]} (at most $bench_s s)"
rm -f "$OUT/cuda_bench.json"
timeout -s INT -k 15 "$bench_s" "$PYTHON" -m lazyfuse bench --backend cuda "${QUICK[@]}" \
    --json "$OUT/cuda_bench.json" "${BENCH_ARGS[@]}" >"$OUT/cuda_bench.txt" 2>&1
bench_rc=$?
echo "bench status $bench_rc (124: stopped at $bench_s s; the JSON then holds the rows measured)" \
    >>"$OUT/cuda_bench.txt"
cat "$OUT/cuda_bench.txt"
if [ -f "$OUT/cuda_bench.json" ]; then
    { "$PYTHON" -c "import json, sys; from lazyfuse.bench.cuda_suite import gpu_line
print(gpu_line(json.load(open(sys.argv[1]))['environment']['cuda']) + '\n')" "$OUT/cuda_bench.json" &&
      "$PYTHON" -m lazyfuse.bench.markdown "$OUT/cuda_bench.json"; } >"$OUT/cuda_bench.md" 2>&1
fi
say "done; files in $OUT"
ls -l "$OUT"
rm -rf "$WORK"
exit $bench_rc
