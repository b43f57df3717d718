#!/usr/bin/env bash
# GPU figures in one prepared script, for the device image as it is: jax with CUDA, flax,
# optax, matplotlib and scikit-learn; no network, no install, no ruff, no tensorboardX.
#
#   bash benchmarks/gpu.sh            # writes benchmarks/RESULTS_GPU.md (about 4 minutes)
#   GPU_MD=/tmp/x.md PYTHON=.venv/bin/python bash benchmarks/gpu.sh   # a CPU dry run
#
# 1. the identities the figures rest on (benchmarks/gpu_checks.py), at full float32
#    precision: Hopper runs float32 matmuls as TF32 unless told otherwise;
# 2. a GPU-relevant subset of the tests, when pytest is installed;
# 3. the benchmarks: exact 2^20, MC K=1000 (gathered and dense), compensated sums, growth,
#    on initial weights and on the trained nets of benchmarks/nets.py (trained there first).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.
export PYTHONUNBUFFERED=1
export JAX_DEFAULT_MATMUL_PRECISION=highest
PY="${PYTHON:-python3}"
OUT="${GPU_MD:-benchmarks/RESULTS_GPU.md}"
LOG="$(mktemp)"
rm -f "$OUT"  # a run cut short leaves no stale figures behind

$PY -c "import jax" || { echo "$PY cannot import jax: set PYTHON=/path/to/python"; exit 2; }
# Without a GPU, JAX falls back to the CPU: refuse to write CPU figures as GPU ones
# (a dry run elsewhere sets GPU_MD).
$PY -c "import jax; print('devices:', jax.devices()); \
import os, sys; sys.exit(jax.default_backend() != 'gpu' and 'GPU_MD' not in os.environ)" \
  || { echo "no GPU backend: set GPU_MD=FILE for a dry run elsewhere"; exit 2; }
status=0
timeout 90 $PY benchmarks/gpu_checks.py | tee "$LOG" || status=$?
if $PY -c "import pytest" 2>/dev/null; then
  timeout 120 $PY -m pytest -q -p no:cacheprovider -m "not slow" \
    tests/test_fast_exact.py tests/test_fast_mc.py tests/test_average.py \
    | tail -3 | tee -a "$LOG" || status=$?
else
  echo "pytest not installed: the checks above stand for the tests" | tee -a "$LOG"
fi
timeout 240 $PY benchmarks/run.py --quick --only exact,mc,sums,growth \
  --write "$OUT" || status=$?
[ -f "$OUT" ] || echo "# benchmarks did not finish (status $status)" > "$OUT"
{
  echo
  echo "## Checks on this device (\`bash benchmarks/gpu.sh\`, matmul precision highest)"
  echo
  echo '```'
  cat "$LOG"
  echo '```'
} >> "$OUT"
rm -f "$LOG"
echo "wrote $OUT (status $status)"
exit "$status"
