"""Parity with Ultralytics: our engine against ``YOLO.predict`` fixtures on the same ONNX model.

Fixtures come from tools/make_parity_fixtures.py (run where ultralytics is installed); this test
needs only trtseg. Same detections (class and count), box IoU >= 0.99 and mask IoU >= 0.95 per
matched instance. A detection may be missing on one side only if its score is within 0.001 of the
threshold (runtimes differ by ~1e-5 in scores).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.engine import PROJECT_ROOT, SegmentationEngine
from engines.postprocess import Candidates, decode
from engines.preprocess import LetterboxGeometry, preprocess
from trtseg.config import EngineConfig
from trtseg.masks import InstanceMasks

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
    our_masks = ours.masks.dense()
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
        a, b = ref["masks"][r], our_masks[o]
        union = np.logical_or(a, b).sum()
        mask_iou = np.logical_and(a, b).sum() / union if union else 1.0
        assert mask_iou >= 0.95, f"{image_name}: mask IoU {mask_iou:.4f} for instance {r} ({a.sum()} px)"
    for r in set(range(len(ref["scores"]))) - matched_ref:
        assert abs(ref["scores"][r] - ref["conf"]) < SCORE_MARGIN, f"{image_name}: Ultralytics' instance {r} missing"
    for o in set(range(len(ours))) - matched_ours:
        assert abs(ours.scores[o] - ref["conf"]) < SCORE_MARGIN, f"{image_name}: extra instance {o}"
    assert len(matched_ref) >= len(ref["scores"]) - 1


def full_frame_masks(protos: np.ndarray, cand: Candidates, geom: LetterboxGeometry, threshold: float) -> np.ndarray:
    """The engine's masks as they used to be made: per instance, whole-image resizes into a full frame.

    Logits at prototype resolution -> cv2 bilinear to the network input -> thresholded, cut to the box
    -> the content region cv2-resized to the frame -> > 0.5. Instances with no pixel at the input are
    dropped, as the engine drops them.
    """
    nm, ph, pw = protos.shape
    in_h, in_w = geom.input_shape
    left, top, right, bottom = geom.content_box
    frame_h, frame_w = geom.frame_shape
    logit_threshold = math.log(threshold / (1 - threshold))
    rows, cols = np.arange(in_h)[:, None], np.arange(in_w)[None, :]
    masks, nonempty = [], []
    for coeffs, (x1, y1, x2, y2) in zip(cand.coeffs, cand.boxes.astype(np.float64), strict=True):
        logits = (coeffs @ protos.reshape(nm, -1)).reshape(ph, pw)
        binary = cv2.resize(logits, (in_w, in_h), interpolation=cv2.INTER_LINEAR) > logit_threshold
        binary &= (rows >= y1) & (rows < y2) & (cols >= x1) & (cols < x2)
        content = binary[top:bottom, left:right].astype(np.float32)
        masks.append(cv2.resize(content, (frame_w, frame_h), interpolation=cv2.INTER_LINEAR) > 0.5)
        nonempty.append(binary.any())
    return np.array(masks, bool).reshape(-1, frame_h, frame_w)[np.array(nonempty, bool)]


@pytest.mark.parametrize("image_name", sorted(MANIFEST["images"]) if MANIFEST else [])
def test_box_cropped_masks_equal_full_frame_masks(engine: SegmentationEngine, image_name: str):
    """Masks kept as box crops are, densified, the full-frame masks bit for bit; polygons and areas too."""
    image = cv2.imread(str(FIXTURES / image_name))
    ours = engine.predict([image], conf=0.05, iou=0.7, max_det=300)[0]
    batch, geometries = preprocess([image], engine.target_size, engine.info.stride, engine.rectangular)
    out0, out1 = (np.asarray(out) for out in engine.backend.infer(batch))
    cand = decode(out0[0], len(engine.names), conf=0.05, iou=0.7, max_det=300)
    expected = full_frame_masks(out1[0], cand, geometries[0], engine.config.mask_threshold)

    assert isinstance(ours.masks, InstanceMasks) and len(ours) == len(expected) > 0
    np.testing.assert_array_equal(ours.masks.dense(), expected)
    np.testing.assert_array_equal(ours.areas, expected.reshape(len(expected), -1).sum(axis=1))
    assert ours.masks.nbytes < expected.nbytes / 4, "crops should be far smaller than full frames"
    polygons = []
    for mask in expected:  # the full-frame contour search the crops replaced
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        largest = cv2.approxPolyDP(max(contours, key=cv2.contourArea), 1.0, True) if contours else None
        polygons.append([] if largest is None else largest.reshape(-1, 2).astype(float).tolist())
    assert ours.polygons() == polygons
