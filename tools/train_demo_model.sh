#!/usr/bin/env bash
# Device driver for tools/train_demo_model.py: install the carried wheels, train, and put
# the results (ONNX, .pt, metrics, log, sample predictions) into $OUT (8 files at most).
# Usage on the GPU machine, from the repo root: WHEELS=.whl/cable bash tools/train_demo_model.sh [extra args]
set -uo pipefail
WHEELS=${WHEELS:-.whl/cable}
OUT=${OUT:-$PWD/out}
RES=${RES:-/tmp/trtseg-train}
LIMIT=${LIMIT:-570}
mkdir -p "$OUT" "$RES"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$WHEELS"/*.whl || exit 1
export PYTHONPATH=/tmp/site:${PYTHONPATH:-} PYTHONUNBUFFERED=1 YOLO_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
timeout "$LIMIT" python3 tools/train_demo_model.py --out "$RES" --data-dir /tmp/trtseg-data "$@" 2>&1 | tee "$RES/train.log"
rc=${PIPESTATUS[0]}
cd "$RES" || exit 1
[ -f trtseg-cable-n.pt ] || cp runs/train/weights/best.pt trtseg-cable-n.pt 2>/dev/null || cp runs/train/weights/last.pt trtseg-cable-n.pt 2>/dev/null
cp -f trtseg-cable-n.onnx trtseg-cable-n.pt metrics.json results.csv "$OUT"/ 2>/dev/null
tar czf "$OUT/extras.tar.gz" train.log pred_*.jpg 2>/dev/null
echo "train rc=$rc"; ls -la "$OUT"
exit "$rc"
