"""NMS, decoding and ROI masks, against plain reference implementations of Ultralytics' numerics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engines.postprocess import MAX_WH, Candidates, decode, nms, postprocess, process_masks
from engines.preprocess import batch_geometry

# -- reference implementations (deliberately naive) ----------------------------------------------


def ref_nms(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    """torchvision.ops.nms written out: visit by descending score, drop anything overlapping a keeper."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep: list[int] = []
    for i in order:
        ok = True
        for k in keep:
            ix = max(0.0, min(boxes[i][2], boxes[k][2]) - max(boxes[i][0], boxes[k][0]))
            iy = max(0.0, min(boxes[i][3], boxes[k][3]) - max(boxes[i][1], boxes[k][1]))
            inter = ix * iy
            a = (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1])
            b = (boxes[k][2] - boxes[k][0]) * (boxes[k][3] - boxes[k][1])
            if inter / (a + b - inter) > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


def ref_resize(values: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """F.interpolate(mode='bilinear', align_corners=False) on (N, H, W), whole images."""

    def taps(out_size: int, in_size: int):
        src = np.float32(in_size) / np.float32(out_size) * (np.arange(out_size, dtype=np.float32) + 0.5) - 0.5
        src = np.maximum(src, 0).astype(np.float32)
        low = np.minimum(np.floor(src).astype(int), in_size - 1)
        return low, np.minimum(low + 1, in_size - 1), (src - low).astype(np.float32)

    yl, yh, yw = taps(out_h, values.shape[1])
    xl, xh, xw = taps(out_w, values.shape[2])
    rows = values[:, yl] * (1 - yw)[None, :, None] + values[:, yh] * yw[None, :, None]
    return rows[:, :, xl] * (1 - xw)[None, None, :] + rows[:, :, xh] * xw[None, None, :]


def ref_masks(protos, coeffs, boxes, geom) -> np.ndarray:
    """Ultralytics process_mask(upsample=True) + scale_masks, full frame per instance."""
    in_h, in_w = geom.input_shape
    logits = (coeffs @ protos.reshape(protos.shape[0], -1)).reshape(-1, *protos.shape[1:])
    binary = (ref_resize(logits, in_h, in_w) > 0).astype(np.float32)
    cols, rows = np.arange(in_w)[None, None, :], np.arange(in_h)[None, :, None]
    x1, y1, x2, y2 = (boxes[:, i, None, None] for i in range(4))
    binary *= (cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2)
    left, top, right, bottom = geom.content_box
    return ref_resize(binary[:, top:bottom, left:right], *geom.frame_shape) > 0.5


# -- NMS ----------------------------------------------------------------------------------------


def test_nms_no_boxes():
    assert nms(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), 0.5).tolist() == []


def test_nms_all_overlapping_keeps_best():
    boxes = np.array([[10, 10, 100, 100]] * 5, np.float32) + np.arange(5, dtype=np.float32)[:, None]
    scores = np.array([0.3, 0.9, 0.5, 0.7, 0.1], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1]


def test_nms_disjoint_boxes_all_kept_in_score_order():
    boxes = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(6)], np.float32)
    scores = np.array([0.1, 0.6, 0.3, 0.9, 0.2, 0.5], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [3, 1, 5, 2, 4, 0]


def test_nms_threshold_is_strict():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], np.float32)  # IoU exactly 0.5
    scores = np.array([0.9, 0.8], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, 0.49).tolist() == [0]


def test_nms_max_keep_is_greedy_prefix():
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 500, (200, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(5, 80, (200, 2)).astype(np.float32)], 1)
    scores = rng.uniform(0, 1, 200).astype(np.float32)
    full = nms(boxes, scores, 0.45)
    assert nms(boxes, scores, 0.45, max_keep=7).tolist() == full[:7].tolist()


@settings(max_examples=150, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.floats(0, 200), st.floats(0, 200), st.floats(1, 120), st.floats(1, 120), st.floats(0.01, 1)),
        min_size=0,
        max_size=40,
    ),
    thr=st.floats(0.1, 0.9),
)
def test_nms_matches_reference(data, thr):
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h, _ in data], np.float32).reshape(-1, 4)
    scores = np.array([s for *_, s in data], np.float32)
    # unique scores: with ties the visiting order (and thus the result) is implementation-defined
    scores = scores + np.arange(len(scores), dtype=np.float32) * 1e-4
    assert nms(boxes, scores, thr).tolist() == ref_nms(boxes.tolist(), scores.tolist(), thr)


# -- decoding -----------------------------------------------------------------------------------


def raw(rows: list[tuple[float, float, float, float, int, float]], nc: int = 3, num_masks: int = 32) -> np.ndarray:
    """Build an output0 slice (4+nc+32, A) from (cx, cy, w, h, class, score) rows."""
    pred = np.zeros((4 + nc + num_masks, len(rows)), np.float32)
    for a, (cx, cy, w, h, cls, score) in enumerate(rows):
        pred[:4, a] = (cx, cy, w, h)
        pred[4 + cls, a] = score
        pred[4 + nc :, a] = a  # coefficients identify the anchor
    return pred


def test_decode_confidence_is_strict_and_boxes_are_xyxy():
    pred = raw([(50, 50, 20, 10, 0, 0.25), (150, 50, 20, 10, 1, 0.26)])
    cand = decode(pred, 3, conf=0.25)
    assert cand.class_ids.tolist() == [1]
    np.testing.assert_allclose(cand.boxes[0], [140, 45, 160, 55])
    assert cand.coeffs[0, 0] == 1


def test_decode_class_aware_and_agnostic():
    pred = raw([(50, 50, 20, 20, 0, 0.9), (51, 50, 20, 20, 1, 0.8), (52, 50, 20, 20, 0, 0.7)])
    assert sorted(decode(pred, 3, iou=0.5).class_ids.tolist()) == [0, 1]
    assert decode(pred, 3, iou=0.5, agnostic=True).class_ids.tolist() == [0]


def test_decode_class_filter_and_max_det():
    rows = [(i * 40 + 20, 20, 10, 10, i % 3, 0.5 + i / 100) for i in range(12)]
    pred = raw(rows)
    assert set(decode(pred, 3, classes=[2]).class_ids.tolist()) == {2}
    cand = decode(pred, 3, max_det=5)
    assert len(cand.scores) == 5 and np.all(np.diff(cand.scores) <= 0)


def test_decode_many_classes():
    nc = 80
    rows = [(100, 100, 50, 50, c, 0.3 + c / 200) for c in range(nc)]  # same box, every class
    cand = decode(raw(rows, nc=nc), nc, iou=0.5)
    assert len(cand.scores) == nc  # class-aware: no suppression across classes
    assert cand.class_ids[0] == nc - 1
    assert len(decode(raw(rows, nc=nc), nc, iou=0.5, agnostic=True).scores) == 1
    assert MAX_WH * nc > 0


def test_decode_drops_non_finite_boxes():
    pred = raw([(50, 50, 20, 20, 0, 0.9), (150, 50, 20, 20, 1, 0.8), (250, 50, 20, 20, 2, 0.7)])
    pred[0, 0] = np.nan
    pred[3, 1] = np.inf
    pred[5, 2] = np.nan  # a NaN score is simply not above the threshold
    assert decode(pred, 3).class_ids.tolist() == []
    pred[4:7, :] = 0.9
    assert decode(pred, 3).boxes.shape == (1, 4)


def test_decode_empty_and_bad_arguments():
    cand = decode(np.zeros((39, 0), np.float32), 3)
    assert cand.boxes.shape == (0, 4) and cand.coeffs.shape == (0, 32)
    with pytest.raises(ValueError):
        decode(np.zeros((39, 5), np.float32), 3, conf=1.5)
    with pytest.raises(ValueError):
        decode(np.zeros((5, 5), np.float32), 3)


# -- masks --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame", [(720, 1280), (1080, 810), (576, 704), (481, 641), (300, 1000), (1500, 1125), (97, 131)]
)
@pytest.mark.parametrize("rect", [True, False])
def test_roi_masks_match_full_frame_reference(frame, rect):
    rng = np.random.default_rng(frame[0] * 7 + frame[1])
    geom = batch_geometry([frame], (640, 640), 32, rect)[0]
    in_h, in_w = geom.input_shape
    protos = rng.normal(0, 1, (32, in_h // 4, in_w // 4)).astype(np.float32)
    # smooth prototypes, like a real network's, so masks are blobs rather than noise
    protos = np.cumsum(np.cumsum(protos, 1), 2) / 20
    n = 8
    xy = rng.uniform(-20, [in_w, in_h], (n, 2))
    wh = rng.uniform(2, [in_w / 2, in_h / 2], (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    coeffs = rng.normal(0, 1, (n, 32)).astype(np.float32)
    cand = Candidates(boxes, np.ones(n, np.float32), np.zeros(n, np.int32), coeffs)
    crops, nonempty = process_masks(protos, cand, geom)
    ours = crops.dense()
    ref = ref_masks(protos, coeffs, boxes, geom)
    assert ours.shape == ref.shape == (n, *frame)
    mismatch = (ours != ref).reshape(n, -1).sum(1)
    assert mismatch.max() <= 2, mismatch  # float rounding may flip a pixel sitting exactly on the threshold
    assert ours.any(axis=(1, 2)).sum() > 0
    assert not (ours.any(axis=(1, 2)) & ~nonempty).any()


def test_mask_threshold_is_a_probability():
    geom = batch_geometry([(64, 64)], (64, 64), 32, False)[0]
    protos = np.ones((32, 16, 16), np.float32)
    cand = Candidates(
        np.array([[0, 0, 64, 64]], np.float32),
        np.ones(1, np.float32),
        np.zeros(1, np.int32),
        np.full((1, 32), 0.05, np.float32),  # logit 1.6 -> p = 0.83
    )
    assert process_masks(protos, cand, geom, 0.8)[0].dense().all()
    assert not process_masks(protos, cand, geom, 0.9)[0].dense().any()


def test_postprocess_drops_instances_without_mask_and_scales_boxes():
    geom = batch_geometry([(720, 1280)], (640, 640), 32, True)[0]
    pred = raw([(320, 192, 100, 100, 0, 0.9), (100, 192, 50, 50, 1, 0.8)])[None]
    pred[0, 7:, 0] = 1.0
    pred[0, 7:, 1] = -1.0  # second instance: all-negative mask logits
    protos = np.ones((1, 32, 96, 160), np.float32)
    dets = postprocess(pred, protos, [geom], {0: "a", 1: "b", 2: "c"}, conf=0.5)[0]
    assert dets.class_ids.tolist() == [0]
    np.testing.assert_allclose(dets.boxes[0], [540, 260, 740, 460])
    assert dets.masks.shape == (1, 720, 1280)
    dense = dets.masks.dense()
    assert dense[0, 262:458, 542:738].all() and not dense[0, :, :530].any()
    no_masks = postprocess(pred, None, [geom], {0: "a", 1: "b", 2: "c"}, conf=0.5, with_masks=False)[0]
    assert no_masks.masks is None and len(no_masks) == 2
