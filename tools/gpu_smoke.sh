#!/usr/bin/env bash
# The GPU checks of issue #21 (NVDEC demuxed by PyAV, clips of NVDEC cameras, GPU set-up), for a GPU
# machine after the project's wheels are installed or carried. Each step has its own time limit and
# writes its log (and pytest's JUnit XML) to $OUT, so a step that hangs costs only its own limit and
# what ran before it is kept. Run from the repository root:
#
#   tools/gpu_smoke.sh                        # every step, with .venv/bin/python or $PYTHON (python3)
#   tools/gpu_smoke.sh --wheels DIR           # first `scripts/setup.sh --gpu --wheels DIR`
#   tools/gpu_smoke.sh --only nvdec           # the steps whose name contains 'nvdec'
#
# Results: $OUT/summary.txt (one line per step: name, exit status, seconds), $OUT/<step>.log, $OUT/<step>.xml.
set -uo pipefail
cd "$(dirname "$0")/.."

wheels=""
only=""
while (( $# )); do
  case "$1" in
    --wheels) wheels=${2:?--wheels needs a directory}; shift ;;
    --only) only=${2:?--only needs a step name part}; shift ;;
    *) echo "usage: tools/gpu_smoke.sh [--wheels DIR] [--only PART]" >&2; exit 2 ;;
  esac
  shift
done

OUT=${OUT:-var/gpu-smoke}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
[[ -d .venv/bin ]] && export PATH="$PWD/.venv/bin:$PATH"  # an FFmpeg set-up linked there
PY=${PYTHON:-python3}
[[ -x .venv/bin/python ]] && PY=.venv/bin/python
export PY

step() {  # step NAME LIMIT_S COMMAND...
  local name=$1 limit=$2 started rc
  shift 2
  [[ -n $only && $name != *"$only"* ]] && return 0
  echo "== $name (at most ${limit} s)"
  started=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  printf '%-16s rc=%-3s %4ss\n' "$name" "$rc" "$(( $(date +%s) - started ))" | tee -a "$OUT/summary.txt"
  tail -n 15 "$OUT/$name.log"
}

pytest_step() {  # pytest_step NAME LIMIT_S PYTEST_ARGS...
  local name=$1 limit=$2
  shift 2
  step "$name" "$limit" "$PY" -m pytest -p no:cacheprovider -q -rA --junitxml="$OUT/$name.xml" "$@"
}

: >"$OUT/summary.txt"
step 00-machine 60 bash -c 'nvidia-smi; "$PY" --version; "$PY" -c "import av, cupy, PyNvVideoCodec as n; print(\"av\", av.__version__, \"cupy\", cupy.__version__, \"PyNvVideoCodec\", getattr(n, \"__version__\", \"?\"))"'
step 01-gpu-plan 60 "$PY" scripts/gpu_packages.py plan
if [[ -n $wheels ]]; then
  step 02-setup-gpu 540 scripts/setup.sh --gpu --wheels "$wheels"
  [[ -x .venv/bin/python ]] && PY=.venv/bin/python
fi
step 03-ffmpeg 30 bash -c 'command -v ffmpeg && ffmpeg -hide_banner -encoders | grep -E "libx264"'
# GPU-free parts first: they say whether a GPU failure is the GPU's.
pytest_step 10-cpu-parts 300 tests/core/test_nvdec_stream.py tests/core/test_decode_loop.py \
  tests/core/test_gpu_setup.py tests/config/test_gpu_config.py
pytest_step 20-nvdec-pyav 540 -m gpu -s tests/gpu/test_nvdec_pyav.py
pytest_step 21-nvdec-earlier 300 -m gpu tests/bench/test_decode_nvdec.py
echo "== results in $OUT"
cat "$OUT/summary.txt"
