#!/usr/bin/env bash
# Set up everything the tests talk to (FFmpeg, MariaDB, nginx-rtmp, GStreamer RTSP, Chromium, the
# Python environment), then run the whole suite. Arguments go to pytest, e.g. `-m "not slow"`.
# GPU tests are skipped here; they run on a GPU machine (docs/BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export RAY_USAGE_STATS_ENABLED=0
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
# pytest's 5 means no test ran: that is a failure of this command, not a pass.
exit $status
