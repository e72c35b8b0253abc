"""The tracking peer: Ultralytics ``model.track(..., tracker="bytetrack.yaml", persist=True)`` on frames it is sent.

Run by ``bench/bench_tracking.py`` with the reference venv's Python (it needs ultralytics and torch,
never trtseg's runtime); it imports nothing of trtseg. Protocol on stdin, per sequence: one JSON line
``{"name", "width", "height", "frames", "out", "conf", "imgsz", "device", "half"}``, then ``frames`` raw
BGR frames of ``width * height * 3`` bytes. For each sequence a fresh ``YOLO`` (so fresh tracks) runs
``track`` on every frame the way a user writes it, and the tracked objects are written to ``out``
as JSON lines (ids, classes, scores, boxes, mask crops packed as bits); then it prints ``done <name>``.
An empty line or the end of stdin ends it.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from typing import Any

import numpy as np


def _frame_record(result: Any) -> dict[str, Any]:
    boxes = result.boxes
    if boxes is None or boxes.id is None or len(boxes) == 0:  # no confirmed track in this frame
        return {"ids": [], "cls": [], "conf": [], "boxes": [], "masks": []}
    xyxy = boxes.xyxy.cpu().numpy().astype(float)
    masks = []
    if result.masks is not None:
        data = result.masks.data.cpu().numpy() > 0.5  # retina_masks: (N, H, W) at the frame's size
        height, width = data.shape[1:]
        for k, (x1, y1, x2, y2) in enumerate(xyxy.tolist()):
            c0, r0 = max(0, int(x1) - 2), max(0, int(y1) - 2)
            c1, r1 = min(width, int(np.ceil(x2)) + 2), min(height, int(np.ceil(y2)) + 2)
            crop = data[k, r0:r1, c0:c1]
            bits = base64.b64encode(np.packbits(crop.reshape(-1)).tobytes()).decode("ascii")
            masks.append([c0, r0, int(crop.shape[1]), int(crop.shape[0]), bits])
    return {
        "ids": boxes.id.cpu().numpy().astype(int).tolist(),
        "cls": boxes.cls.cpu().numpy().astype(int).tolist(),
        "conf": [round(float(c), 4) for c in boxes.conf.cpu().numpy()],
        "boxes": [[round(v, 2) for v in box] for box in xyxy.tolist()],
        "masks": masks,
    }


def run_sequence(header: dict[str, Any], model_path: str, stream: Any) -> None:
    from ultralytics import YOLO

    model = YOLO(model_path, task="segment")
    width, height, n = int(header["width"]), int(header["height"]), int(header["frames"])
    size = width * height * 3
    args = {
        "tracker": "bytetrack.yaml",
        "persist": True,
        "conf": float(header["conf"]),
        "imgsz": int(header["imgsz"]),
        "device": header.get("device", "cpu"),
        "half": bool(header.get("half", False)),
        "retina_masks": True,
        "verbose": False,
    }
    started = time.perf_counter()
    with open(header["out"], "w", encoding="utf-8") as out:
        for _ in range(n):
            raw = stream.read(size)
            if len(raw) != size:
                raise SystemExit(f"stream ended inside sequence {header['name']}")
            frame = np.frombuffer(raw, np.uint8).reshape(height, width, 3)
            result = model.track(frame, **args)[0]
            out.write(json.dumps(_frame_record(result)) + "\n")
    seconds = time.perf_counter() - started
    print(f"done {header['name']} {seconds:.3f}", flush=True)


def main() -> int:
    model_path = sys.argv[1]
    stream = sys.stdin.buffer
    while True:
        line = stream.readline()
        if not line.strip():
            return 0
        run_sequence(json.loads(line), model_path, stream)


if __name__ == "__main__":
    sys.exit(main())
