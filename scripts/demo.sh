#!/usr/bin/env bash
# The embedded default: set up what it needs, then run the whole system on a local Ray instance with
# one generated camera, the CPU backend and SQLite. Open http://127.0.0.1:8000/ ; Ctrl-C stops it.
#   scripts/demo.sh --gpu [--wheels DIR]   a GPU node: its extras (scripts/setup.sh --gpu) and conf/gpu.yaml
# Other arguments go to `run_cluster.py run`.
set -euo pipefail
cd "$(dirname "$0")/.."
setup_args=()
config=conf/demo.yaml
while (( $# )); do
  case "$1" in
    --gpu) setup_args+=(--gpu); config=conf/gpu.yaml ;;
    --wheels) setup_args+=(--wheels "${2:?--wheels needs a directory}"); shift ;;
    *) break ;;
  esac
  shift
done
scripts/setup.sh "${setup_args[@]}"
# An FFmpeg that --gpu linked into .venv/bin serves the pushers.
if [[ $config == conf/gpu.yaml ]]; then export PATH="$PWD/.venv/bin:$PATH"; fi
exec .venv/bin/python run_cluster.py run --config "${TRTSEG_CONFIG:-$config}" --make-sample "$@"
