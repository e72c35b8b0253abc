"""mAP math on hand-made cases whose answers are known independently of the implementation."""

from __future__ import annotations

import numpy as np
import pytest

from engines.evaluate import IOU_THRESHOLDS, MetricAccumulator
from engines.quant.metrics import box_iou, compute_ap, mask_iou, match_predictions, pruned_mask_iou

NAMES = {0: "charging_cable", 1: "e_bike", 2: "person"}
SHAPE = (120, 200)


def rect_mask(box: tuple[int, int, int, int], shape: tuple[int, int] = SHAPE) -> np.ndarray:
    mask = np.zeros(shape, bool)
    x1, y1, x2, y2 = box
    mask[y1:y2, x1:x2] = True
    return mask


def add_image(
    acc: MetricAccumulator,
    preds: list[tuple[tuple[int, int, int, int], float, int]],
    gts: list[tuple[tuple[int, int, int, int], int]],
) -> None:
    boxes = np.array([p[0] for p in preds], np.float32).reshape(-1, 4)
    acc.add(
        boxes,
        np.array([p[1] for p in preds], np.float32),
        np.array([p[2] for p in preds], np.int32),
        np.array([rect_mask(p[0]) for p in preds]).reshape(-1, *SHAPE),
        np.array([g[0] for g in gts], np.float64).reshape(-1, 4),
        np.array([g[1] for g in gts], np.int64),
        np.array([rect_mask(g[0]) for g in gts]).reshape(-1, *SHAPE),
    )


GTS = [((10, 10, 60, 60), 0), ((100, 20, 180, 100), 1), ((70, 70, 90, 110), 2)]


def test_perfect_predictions_score_one() -> None:
    acc = MetricAccumulator(NAMES)
    add_image(acc, [(box, 0.9, cls) for box, cls in GTS], GTS)
    add_image(acc, [(box, 0.8, cls) for box, cls in GTS[:2]], GTS[:2])
    result = acc.result()
    assert (result.box_map50, result.box_map, result.mask_map50, result.mask_map) == (1.0, 1.0, 1.0, 1.0)
    assert result.instances == 5 and result.images == 2


def test_no_predictions_score_zero() -> None:
    acc = MetricAccumulator(NAMES)
    add_image(acc, [], GTS)
    result = acc.result()
    assert (result.box_map50, result.box_map, result.mask_map50, result.mask_map) == (0.0, 0.0, 0.0, 0.0)


def test_wrong_class_is_not_a_match() -> None:
    acc = MetricAccumulator(NAMES)
    add_image(acc, [(GTS[0][0], 0.9, 1)], GTS[:1])
    assert acc.result().box_map50 == 0.0


def test_known_shifted_box() -> None:
    # 100x100 box shifted by 20 px: IoU = 80*100 / (120*100) = 2/3, a true positive at the
    # thresholds 0.50, 0.55, 0.60, 0.65 (4 of 10): AP50 = 1, AP50-95 = 0.4 for box and mask alike.
    gt = ((0, 10, 100, 110), 0)
    acc = MetricAccumulator(NAMES)
    add_image(acc, [((20, 10, 120, 110), 0.9, 0)], [gt])
    result = acc.result()
    assert result.box_map50 == pytest.approx(1.0)
    assert result.box_map == pytest.approx(0.4)
    assert result.mask_map == pytest.approx(0.4)


def test_false_positive_ranked_first_halves_precision() -> None:
    # One object; a confident false positive then the true positive: precision 1/2 at recall 1.
    acc = MetricAccumulator(NAMES)
    add_image(acc, [((150, 0, 190, 40), 0.95, 0), (GTS[0][0], 0.5, 0)], GTS[:1])
    assert acc.result().box_map50 == pytest.approx(0.5)


def test_duplicate_detection_counts_once() -> None:
    acc = MetricAccumulator(NAMES)
    add_image(acc, [(GTS[0][0], 0.9, 0), (GTS[0][0], 0.8, 0)], GTS[:1])
    tp = match_predictions(np.array([0, 0]), np.array([0]), np.ones((1, 2)), IOU_THRESHOLDS)
    assert tp[:, 0].tolist() == [True, False]
    assert acc.result().box_map50 == pytest.approx(1.0)  # the duplicate ranks after full recall


def test_ultralytics_integration_tops_at_0995() -> None:
    recall, precision = np.array([0.5, 1.0]), np.array([1.0, 1.0])
    assert compute_ap(recall, precision, "coco") == 1.0
    assert compute_ap(recall, precision, "ultralytics") == pytest.approx(0.995, abs=1e-9)
    with pytest.raises(ValueError, match="unknown AP method"):
        compute_ap(recall, precision, "voc")  # type: ignore[arg-type]


def test_mask_iou_dense_and_pruned_agree() -> None:
    rng = np.random.default_rng(3)
    boxes_a = [(5, 5, 60, 50), (40, 30, 120, 100), (150, 10, 190, 60)]
    boxes_b = [(10, 8, 70, 55), (45, 35, 110, 90), (0, 0, 20, 20)]
    a = np.array([rect_mask(b) & (rng.random(SHAPE) > 0.3) for b in boxes_a])
    b = np.array([rect_mask(b) & (rng.random(SHAPE) > 0.3) for b in boxes_b])
    classes = np.zeros(3, np.int64)
    dense = mask_iou(a, b)
    pruned = pruned_mask_iou(a, np.array(boxes_a, float), classes, b, np.array(boxes_b, float), classes)
    np.testing.assert_allclose(pruned, dense, atol=1e-12)
    assert dense[0, 0] > 0.3 and dense[2, 2] == 0.0


def test_box_iou_values() -> None:
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]))
    np.testing.assert_allclose(iou[0], [1.0, 50 / 150, 0.0], atol=1e-9)
