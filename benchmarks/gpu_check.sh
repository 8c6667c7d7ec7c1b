#!/usr/bin/env bash
# First contact with a GPU machine: one offline run that says whether xpnet's CUDA path works there.
#
#   bash benchmarks/gpu_check.sh [OUTDIR]      run every check, write OUTDIR/report.md and the raw logs
#   bash benchmarks/gpu_check.sh --fetch-wheels   (on a machine with a package index) fill wheels/
#
# Uses the machine's own python3 ($PYTHON to pick another) and imports xpnet from src/; a pure-Python
# dependency that Python lacks (array-api-compat, tqdm) is taken from a wheel in wheels/ (git ignores
# it), put on PYTHONPATH as is: nothing is installed. Each step has its own time limit and one
# PASS/FAIL/SKIP line; the whole run stays under 8 minutes. Exit codes: 0 every step passed or was
# skipped, 1 a step failed, 2 bad arguments or a failed --fetch-wheels, 3 no usable GPU here.
set -u

USAGE="usage: bash benchmarks/gpu_check.sh [OUTDIR]   |   bash benchmarks/gpu_check.sh --fetch-wheels"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WHEELS="$ROOT/wheels"
PYTHON=${PYTHON:-python3}
BUDGET=470  # seconds for the whole run: the steps' limits shrink to what is left of it
START=$SECONDS

outdir=""
fetch=0
for arg in "$@"; do
    case "$arg" in
        -h|--help) echo "$USAGE"; exit 0 ;;
        --fetch-wheels) fetch=1 ;;
        -*) echo "gpu_check.sh: unknown option $arg; $USAGE" >&2; exit 2 ;;
        *) if [ -n "$outdir" ]; then echo "gpu_check.sh: one OUTDIR only; $USAGE" >&2; exit 2; fi
           outdir=$arg ;;
    esac
done
if [ "$fetch" = 1 ] && [ -n "$outdir" ]; then
    echo "gpu_check.sh: --fetch-wheels takes no OUTDIR; $USAGE" >&2; exit 2
fi
if ! command -v "$PYTHON" >/dev/null; then
    echo "gpu_check.sh: no $PYTHON on the PATH (set PYTHON=/path/to/python3)" >&2; exit 2
fi

if [ "$fetch" = 1 ]; then
    # Pure-Python wheels only (py3-none-any): a GPU machine of any platform can import them from the zip.
    mkdir -p "$WHEELS"
    if ! "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$WHEELS" \
            "array-api-compat>=1.9" "tqdm>=4.60"; then
        echo "gpu_check.sh: pip download failed (no package index here?); wheels/ is unchanged" >&2; exit 2
    fi
    kib=$(du -sk "$WHEELS" | cut -f1)
    ls -1 "$WHEELS"
    if [ "$kib" -gt 5120 ]; then echo "gpu_check.sh: wheels/ holds ${kib} KiB, over the 5 MB limit" >&2; exit 2; fi
    echo "wheels/ ready: ${kib} KiB; copy the repository with it to the GPU machine"; exit 0
fi

# xpnet from src/, and a wheel for each pure-Python dependency this Python lacks.
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
for pair in array_api_compat:array_api_compat tqdm:tqdm; do
    module=${pair%%:*}
    if ! "$PYTHON" -c "import $module" 2>/dev/null; then
        wheel=$(ls "$WHEELS"/${pair##*:}-*.whl 2>/dev/null | tail -n 1)
        if [ -n "$wheel" ]; then PYTHONPATH="$PYTHONPATH:$wheel"; fi
    fi
done
cd "$ROOT" || exit 2

# No GPU: one line saying why, exit 3, fast.
if ! command -v nvidia-smi >/dev/null; then
    echo "gpu_check.sh: no GPU here: nvidia-smi is not on the PATH (no NVIDIA driver)"; exit 3
fi
if ! gpus=$(timeout 15 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1) \
        || [ -z "$gpus" ]; then
    echo "gpu_check.sh: no GPU here: nvidia-smi lists none ($(echo "$gpus" | head -n 1))"; exit 3
fi
reason=$(timeout 25 "$PYTHON" -c "
from xpnet.backends import cupy_backend
print(cupy_backend.probe() or '')" 2>&1 | tail -n 1)
if [ -n "$reason" ]; then
    echo "gpu_check.sh: no usable GPU here: $reason"; exit 3
fi

outdir=${outdir:-gpu-check-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$outdir" || exit 2
outdir=$(cd "$outdir" && pwd)
report="$outdir/report.md"
{
    echo "# xpnet GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), $(hostname)"
    echo
    echo "Commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)."
    echo "Each step's full output is in the log it names; a failed step's last lines are below the table."
    echo
    echo '## Machine'
    echo '```'
    echo "nvidia-smi: $gpus"
    timeout 60 "$PYTHON" - <<'EOF' 2>&1
import importlib, importlib.metadata
for dist in ("cupy-cuda13x", "cupy-cuda12x", "cupy"):  # xpnet[cuda13] is the extra tested first
    try:
        print(f"CuPy package: {dist} {importlib.metadata.version(dist)}")
        break
    except importlib.metadata.PackageNotFoundError:
        pass
for name in ("cupy", "numba", "torch", "numpy", "mpi4py"):
    try:
        module = importlib.import_module(name)
    except Exception as e:
        print(f"{name}: missing ({type(e).__name__}: {e})")
        continue
    extra = ""
    if name == "cupy":
        runtime = module.cuda.runtime.runtimeGetVersion()
        extra = f" (CUDA runtime {runtime // 1000}.{runtime % 1000 // 10}, driver {module.cuda.runtime.driverGetVersion()})"
    if name == "torch":
        extra = f" (CUDA {module.version.cuda}, available: {module.cuda.is_available()})"
    print(f"{name}: {module.__version__}{extra}")
EOF
    echo
    timeout 60 "$PYTHON" -m xpnet info 2>&1
    echo '```'
    echo
    echo '## Steps'
    echo
    echo '| step | result | seconds | log |'
    echo '|---|---|---|---|'
} > "$report"
tails=""
failed=0

# step NAME LIMIT LOG COMMAND...: run COMMAND under LIMIT seconds (less if the budget is nearly spent).
step() {
    local name=$1 limit=$2 log=$3
    shift 3
    local left=$((BUDGET - (SECONDS - START)))
    [ "$limit" -gt "$left" ] && limit=$left
    if [ "$limit" -lt 10 ]; then skip "$name" "the run's ${BUDGET} s budget is spent"; return; fi
    local began=$SECONDS
    timeout --kill-after=10 "$limit" "$@" > "$outdir/$log" 2>&1
    local rc=$? took=$((SECONDS - began)) result=PASS
    # pytest's count line, so a step whose tests all skipped does not read as a pass
    local counts
    counts=$(grep -E '^=* ?[0-9]+ (passed|failed|skipped|error|errors|deselected)' "$outdir/$log" | tail -n 1 | tr -d '=')
    counts=$(echo $counts)
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then result="FAIL (over its ${limit} s limit)"
    elif [ "$rc" != 0 ]; then result="FAIL (exit $rc)"
    elif [[ "$counts" == *skipped* && "$counts" != *passed* ]]; then result=SKIP; fi
    printf '%-5s %s (%s s, %s%s)\n' "${result%% *}" "$name" "$took" "$log" "${counts:+: $counts}"
    echo "| $name | $result${counts:+: $counts} | $took | $log |" >> "$report"
    if [ "${result%% *}" = FAIL ]; then
        failed=1
        tails="$tails"$'\n'"### $name: last lines of $log"$'\n```\n'"$(tail -n 25 "$outdir/$log")"$'\n```\n'
    fi
}

skip() {
    printf 'SKIP  %s (%s)\n' "$1" "$2"
    echo "| $1 | SKIP: $2 | 0 | |" >> "$report"
}

PYTEST=("$PYTHON" -m pytest -p no:cacheprovider)
# The GPU's own tests first (the backend fixture without cupy leaves no backend-parametrised case under -m gpu),
# then the backend-parametrised core suite on cupy alone, every failure listed.
step "pytest -m gpu -x" 150 gpu-tests.log env XPNET_TEST_BACKENDS=numpy "${PYTEST[@]}" -m gpu -x -q
step "core suite on cupy (XPNET_TEST_BACKENDS=cupy)" 150 cupy-suite.log env XPNET_TEST_BACKENDS=cupy \
    "${PYTEST[@]}" tests -q -m gpu --ignore=tests/test_cupy_gpu.py -k "not two_mpi_processes_on_gpus"
step "20-epoch spirals fit, cupy = numpy in float64" 60 spirals.log \
    "${PYTEST[@]}" tests/test_cupy_gpu.py -q -k spirals
step "benchmarks/cuda_targets.py" 90 cuda-targets.log "$PYTHON" benchmarks/cuda_targets.py
step "xpnet bench backends" 90 bench.log "$PYTHON" -m xpnet bench backends --backend cupy,numba \
    --sizes small,medium,large --json "$outdir/bench.json"
if ! "$PYTHON" -c "import mpi4py" 2>/dev/null; then
    skip "mpiexec -n 2 data-parallel" "mpi4py is not installed"
elif [ -z "$("$PYTHON" -c 'from xpnet.bench.distributed import mpiexec; print(mpiexec() or "")')" ]; then
    skip "mpiexec -n 2 data-parallel" "no mpiexec next to $PYTHON or on the PATH"
else
    step "mpiexec -n 2 data-parallel on the GPU(s)" 60 mpi.log \
        "${PYTEST[@]}" tests/test_distributed.py -q -rA -m gpu -k two_mpi_processes_on_gpus
fi

{
    echo
    echo "Finished in $((SECONDS - START)) s."
    printf '%s' "$tails"
} >> "$report"
echo "report: $report"
exit $failed
