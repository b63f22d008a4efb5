#!/usr/bin/env bash
# The one-call GPU check: everything a session with a borrowed GPU should run, in one command that fits the
# device tool's 10-minute limit, with every result under one folder and a short table printed last.
#
#   benchmarks/gpu_check.sh [RESULTS_DIR]              on a machine with a GPU (device tool: RESULTS_DIR=$OUT)
#   benchmarks/gpu_check.sh --emulated [RESULTS_DIR]   the same steps on a CPU-only machine (what CI runs): the
#                                                      emulated build, its ctest and op tests; no sanitizer, and a
#                                                      quick CPU benchmark in place of the GPU one
#
# Steps (each with a time cap, each logged to RESULTS_DIR/<step>.log; a failed or timed-out step does not stop
# the others; the exit status is non-zero if any step failed):
#   build      the extension: FORCE_CUDA=1 for sm_90 (emulated: DEEPOPS_EMULATE_CUDA=1), --no-deps --no-build-isolation
#   info       deepops info
#   pytest     the CUDA-marked tests (emulated: the op suites with DEEPOPS_CPU_BACKEND=cuda-emu)
#   ctest      csrc/kernels and tests_cpp built with CMake (emulated: -DDEEPOPS_EMULATE=ON, no sanitizers) + ctest
#   sanitizer  compute-sanitizer memcheck, racecheck, initcheck, synccheck on each C++ test, and memcheck on a
#              small pytest subset (emulated: skipped; CI runs the emulated build under ASan/UBSan instead)
#   bench      deepops bench --quick --device cuda with JSON and plot (emulated: --quick --device cpu on one op
#              family); the full CUDA set is a separate call (see the step)
# Environment: GPU_CHECK_ARCH (default 9.0), GPU_CHECK_JOBS (default: all cores), PYTHON (default python);
# emulated only: GPU_CHECK_SANITIZE=1 builds the emulated ctest with ASan/UBSan (what CI does).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
EMULATED=0
if [ "${1:-}" = "--emulated" ]; then EMULATED=1; shift; fi
OUT_DIR=$(mkdir -p "${1:-$ROOT/benchmarks/results/gpu_check}" && cd "${1:-$ROOT/benchmarks/results/gpu_check}" && pwd)
PY=${PYTHON:-python}
ARCH=${GPU_CHECK_ARCH:-9.0}
JOBS=${GPU_CHECK_JOBS:-$(nproc)}
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export MAX_JOBS=$JOBS
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
t0=$SECONDS
SUMMARY=()
FAILED=0

# step NAME CAP_SECONDS COMMAND...: runs COMMAND (in ROOT) with a time cap, logs to OUT_DIR/NAME.log
step() {
  local name=$1 cap=$2
  shift 2
  local s=$SECONDS
  echo "=== [$((SECONDS - t0))s] $name (cap ${cap}s)"
  (cd "$ROOT" && timeout --kill-after=10 "$cap" bash -c "$*") > "$OUT_DIR/$name.log" 2>&1
  local rc=$? status=ok
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status="TIMEOUT"; FAILED=1
  elif [ $rc -ne 0 ]; then status="FAILED(rc=$rc)"; FAILED=1; fi
  local last pattern="passed|failed|Successfully installed|written|backend_cpu|gpu "
  [ "$status" = ok ] || pattern="$pattern|error|Error"
  last=$(grep -E "$pattern" "$OUT_DIR/$name.log" | tail -n 1 | cut -c1-90)
  SUMMARY+=("$(printf '%-10s %-14s %5ss  %s' "$name" "$status" "$((SECONDS - s))" "$last")")
  echo "    $status; log: $OUT_DIR/$name.log"
}
skip() { SUMMARY+=("$(printf '%-10s %-14s %5ss  %s' "$1" "skipped" 0 "$2")"); echo "=== $1: skipped ($2)"; }

if [ $EMULATED -eq 1 ]; then
  step build 900 "DEEPOPS_EMULATE_CUDA=1 $PY -m pip install --no-build-isolation --no-deps -e ."
  step info 60 "DEEPOPS_CPU_BACKEND=cuda-emu $PY -m deepops info"
  # the op-level suites (parity, opcheck, gradcheck, fuzzers, bad inputs, reliability, schedules, coverage); the
  # model-training tests stay on Numba
  step pytest 1800 "DEEPOPS_CPU_BACKEND=cuda-emu DEEPOPS_EMU_COVERAGE_REPORT='$OUT_DIR/kernel_coverage.txt' \
    $PY -m pytest -q -p no:cacheprovider python_tests/test_emulated.py python_tests/test_activation.py \
    python_tests/test_pool.py python_tests/test_nms.py python_tests/test_conv.py python_tests/test_fuzz_*.py \
    python_tests/test_bad_inputs.py python_tests/test_reliability.py"
  step ctest 1500 "cmake -S . -B '$BUILD/cmake' -DDEEPOPS_EMULATE=ON -DDEEPOPS_SANITIZE=${GPU_CHECK_SANITIZE:-OFF} \
    -DCUDAToolkit_ROOT=$CUDA_HOME && cmake --build '$BUILD/cmake' -j$JOBS && ctest --test-dir '$BUILD/cmake' -j$JOBS"
  skip sanitizer "emulated: no compute-sanitizer; GPU_CHECK_SANITIZE=1 runs ctest under ASan/UBSan instead"
  step bench 300 "$PY -m deepops bench --quick --device cpu --ops relu --no-progress \
    --json '$OUT_DIR/bench.json' --plot '$OUT_DIR/bench.png'"
else
  step build 300 "FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST='$ARCH' $PY -m pip install --no-build-isolation --no-deps -e ."
  step info 60 "$PY -m deepops info && nvidia-smi"
  step pytest 240 "$PY -m pytest -q -p no:cacheprovider -m cuda python_tests --junitxml='$OUT_DIR/pytest.xml'"
  step ctest 240 "cmake -S . -B '$BUILD/cmake' -DCMAKE_CUDA_COMPILER=$CUDA_HOME/bin/nvcc \
    -DCMAKE_CUDA_ARCHITECTURES='${ARCH/./}' && cmake --build '$BUILD/cmake' -j$JOBS && \
    ctest --test-dir '$BUILD/cmake' --output-on-failure"
  # every tool on every C++ test (30 s each at most), then memcheck under a small pytest subset
  step sanitizer 360 "for tool in memcheck racecheck initcheck synccheck; do for t in '$BUILD'/cmake/test_*; do \
    [ -x \"\$t\" ] || continue; echo \"--- \$tool \$(basename \$t)\"; \
    timeout 30 $CUDA_HOME/bin/compute-sanitizer --tool \$tool --error-exitcode 99 \"\$t\" | tail -n 3; \
    rc=\${PIPESTATUS[0]}; [ \$rc -eq 99 ] && { echo \"sanitizer error: \$tool \$(basename \$t)\"; bad=1; }; \
    [ \$rc -eq 124 ] && echo \"(time cap reached: \$tool \$(basename \$t))\"; done; done; \
    timeout 120 $CUDA_HOME/bin/compute-sanitizer --tool memcheck --error-exitcode 99 $PY -m pytest -q -x \
    -p no:cacheprovider -m cuda python_tests/test_activation.py python_tests/test_pool.py python_tests/test_nms.py \
    -k 'not large and not huge' | tail -n 3; rc=\${PIPESTATUS[0]}; [ \$rc -eq 99 ] && bad=1; exit \${bad:-0}"
  # The quick CUDA rows (the goal shapes in float32, float16 and bfloat16, AlexNet and ResNet-18 forward, pooling,
  # ReLU, NMS, models): about a minute.  The full set (270 rows with ResNet-50's convolutions) needs a call of
  # its own: deepops bench --device cuda --ops conv2d --budget 0.2 (about 230 rows, some minutes).
  step bench 240 "$PY -m deepops bench --quick --device cuda --no-progress --json '$OUT_DIR/bench_cuda.json' \
    --plot '$OUT_DIR/bench_cuda.png'"
fi

{
  echo
  echo "deepops GPU check ($([ $EMULATED -eq 1 ] && echo emulated || echo GPU)), $(date -u +%Y-%m-%dT%H:%M:%SZ), $((SECONDS - t0))s, results in $OUT_DIR"
  printf '%-10s %-14s %6s  %s\n' step status time "last line"
  for line in "${SUMMARY[@]}"; do echo "$line"; done
} | tee "$OUT_DIR/summary.txt"
exit $FAILED
