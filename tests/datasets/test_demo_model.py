"""The shipped model (models/trtseg-cable-n.onnx) finds what the sample video shows.

Plain ONNX Runtime plus a minimal YOLOv8 decode (no ultralytics), on frames of the
generated sample clip whose ground truth is known.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets.scenes import CLASS_NAMES
from datasets.video import SampleScene

ort = pytest.importorskip("onnxruntime")
MODEL = Path(__file__).resolve().parents[2] / "models" / "trtseg-cable-n.onnx"


@pytest.fixture(scope="module")
def session() -> object:
    return ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])


def _detect(session: object, bgr: np.ndarray, conf: float = 0.5) -> Counter[str]:
    """Letterbox to 640 wide, run, keep boxes over `conf`, per-class NMS; count per class."""
    h, w = bgr.shape[:2]
    s = 640 / max(h, w)
    nh, nw = round(h * s), round(w * s)
    ph, pw = -nh % 32, -nw % 32
    img = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
    img = cv2.copyMakeBorder(img, ph // 2, ph - ph // 2, pw // 2, pw - pw // 2, cv2.BORDER_CONSTANT, value=(114,) * 3)
    x = np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1))[None].astype(np.float32) / 255.0
    out0, proto = session.run(None, {"images": x})
    assert proto.shape[1] == 32 and out0.shape[1] == 4 + len(CLASS_NAMES) + 32
    pred = out0[0].T
    scores = pred[:, 4 : 4 + len(CLASS_NAMES)]
    cls, best = scores.argmax(1), scores.max(1)
    counts: Counter[str] = Counter()
    for c in range(len(CLASS_NAMES)):
        keep = (cls == c) & (best > conf)
        boxes = [[float(cx - bw / 2), float(cy - bh / 2), float(bw), float(bh)] for cx, cy, bw, bh in pred[keep, :4]]
        idx = cv2.dnn.NMSBoxes(boxes, best[keep].tolist(), conf, 0.5)
        counts[CLASS_NAMES[c]] = len(idx)
    return +counts


def test_metadata_is_ultralytics(session: object) -> None:
    meta = session.get_modelmeta().custom_metadata_map
    assert ast.literal_eval(meta["names"]) == dict(enumerate(CLASS_NAMES))
    assert (meta["task"], meta["stride"], ast.literal_eval(meta["imgsz"])) == ("segment", "32", [640, 640])
    assert MODEL.stat().st_size < 20 * 2**20


def test_counts_match_the_sample_video_ground_truth(session: object) -> None:
    scene = SampleScene(seconds=10, fps=25, size=(1280, 720), seed=0)  # what `render_sample_video` encodes
    frames = [scene.render(i, labels=True) for i in (25, 150)]
    for f in frames:
        truth = Counter(CLASS_NAMES[i.class_id] for i in f.instances or [])
        assert truth["charging_cable"] == 1 and truth["person"] == 1
        assert _detect(session, f.image) == truth, f.index
