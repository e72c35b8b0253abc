"""Parity with Ultralytics: our engine against ``YOLO.predict`` fixtures on the same ONNX model.

Fixtures come from tools/make_parity_fixtures.py (run where ultralytics is installed); this test
needs only trtseg. Same detections (class and count), box IoU >= 0.99 and mask IoU >= 0.95 per
matched instance. A detection may be missing on one side only if its score is within 0.001 of the
threshold (runtimes differ by ~1e-5 in scores).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.engine import PROJECT_ROOT, SegmentationEngine
from trtseg.config import EngineConfig

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "parity"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text()) if (FIXTURES / "manifest.json").exists() else None
SCORE_MARGIN = 1e-3


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) IoU matrix."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).prod(1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


def load_fixture(name: str) -> dict[str, np.ndarray]:
    data = np.load(FIXTURES / name)
    shape = tuple(int(v) for v in data["mask_shape"])
    masks = np.unpackbits(data["masks_packed"], count=int(np.prod(shape))).reshape(shape).astype(bool)
    return {
        "conf": float(data["conf"]),
        "boxes": data["boxes"],
        "scores": data["scores"],
        "classes": data["classes"],
        "masks": masks,
    }


@pytest.fixture(scope="module")
def engine() -> SegmentationEngine:
    assert MANIFEST is not None, "tests/fixtures/parity/manifest.json is missing: run tools/make_parity_fixtures.py"
    model = PROJECT_ROOT / MANIFEST["model"]
    assert model.is_file(), f"parity model {model} is missing"
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    assert digest == MANIFEST["model_sha256"], (
        f"{model} changed since the parity fixtures were made: rerun tools/make_parity_fixtures.py"
    )
    return SegmentationEngine(EngineConfig(model=model, max_detections=300)).load()


@pytest.mark.parametrize("image_name", sorted(MANIFEST["images"]) if MANIFEST else [])
def test_matches_ultralytics(engine: SegmentationEngine, image_name: str):
    ref = load_fixture(MANIFEST["images"][image_name]["fixture"])
    image = cv2.imread(str(FIXTURES / image_name))
    assert image is not None, image_name
    ours = engine.predict([image], conf=ref["conf"], iou=MANIFEST["iou"], max_det=300)[0]
    assert ours.masks is not None and ours.masks.shape[1:] == image.shape[:2]
    assert len(ref["scores"]) > 0 or len(ours) == 0

    ious = box_iou(ref["boxes"], ours.boxes) if len(ours) and len(ref["scores"]) else np.zeros((len(ref["scores"]), 0))
    matched_ref: set[int] = set()
    matched_ours: set[int] = set()
    # Greedy one-to-one matching on box IoU within the same class, best pairs first.
    for flat in np.argsort(-ious, axis=None):
        r, o = np.unravel_index(flat, ious.shape)
        if r in matched_ref or o in matched_ours or ious[r, o] < 0.5:
            continue
        if ref["classes"][r] != ours.class_ids[o]:
            continue
        matched_ref.add(int(r))
        matched_ours.add(int(o))
        assert ious[r, o] >= 0.99, f"{image_name}: box IoU {ious[r, o]:.4f} for instance {r}"
        a, b = ref["masks"][r], ours.masks[o]
        union = np.logical_or(a, b).sum()
        mask_iou = np.logical_and(a, b).sum() / union if union else 1.0
        assert mask_iou >= 0.95, f"{image_name}: mask IoU {mask_iou:.4f} for instance {r} ({a.sum()} px)"
    for r in set(range(len(ref["scores"]))) - matched_ref:
        assert abs(ref["scores"][r] - ref["conf"]) < SCORE_MARGIN, f"{image_name}: Ultralytics' instance {r} missing"
    for o in set(range(len(ours))) - matched_ours:
        assert abs(ours.scores[o] - ref["conf"]) < SCORE_MARGIN, f"{image_name}: extra instance {o}"
    assert len(matched_ref) >= len(ref["scores"]) - 1
