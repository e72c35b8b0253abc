#!/usr/bin/env bash
# The embedded default: set up what it needs, then run the whole system on a local Ray instance with
# one generated camera, the CPU backend and SQLite. Open http://127.0.0.1:8000/ ; Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python run_cluster.py run --config "${TRTSEG_CONFIG:-conf/demo.yaml}" --make-sample "$@"
