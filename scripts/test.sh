#!/usr/bin/env bash
# Set up everything the tests talk to (FFmpeg, MariaDB, nginx-rtmp, GStreamer RTSP, Chromium, the
# Python environment), then run the whole suite. Arguments go to pytest, e.g. `-m "not slow"`.
# GPU tests are skipped here; they run on a GPU machine (docs/BENCHMARKS.md):
#   scripts/test.sh --gpu [--wheels DIR] [pytest args]   GPU extras too; no pytest args: the GPU tests
set -euo pipefail
cd "$(dirname "$0")/.."
setup_args=(--test)
gpu=0
while (( $# )); do
  case "$1" in
    --gpu) setup_args+=(--gpu); gpu=1 ;;
    --wheels) setup_args+=(--wheels "${2:?--wheels needs a directory}"); shift ;;
    *) break ;;
  esac
  shift
done
scripts/setup.sh "${setup_args[@]}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if (( gpu )); then export PATH="$PWD/.venv/bin:$PATH"; fi  # the FFmpeg --gpu may have linked there
export RAY_USAGE_STATS_ENABLED=0
(( gpu && $# == 0 )) && set -- -m gpu tests/gpu tests/bench/test_decode_nvdec.py
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
# pytest's 5 means no test ran: that is a failure of this command, not a pass.
exit $status
