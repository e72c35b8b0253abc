"""Detection/segmentation metric math: IoU matrices, Ultralytics-style matching, AP per class.

Plain numpy, no model or data set: ``engines.evaluate`` feeds it. Matching and AP follow
Ultralytics' ``DetectionValidator.match_predictions`` and ``ap_per_class``, so numbers are
comparable with what ``yolo val`` prints (see ``compute_ap`` for the one integration choice).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

EPS = 1e-16
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of xyxy boxes ``a`` (N, 4) and ``b`` (M, 4)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + EPS)


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of bool masks ``a`` (N, H, W) and ``b`` (M, H, W), one matrix product."""
    fa = np.asarray(a, bool).reshape(len(a), -1).astype(np.float32)
    fb = np.asarray(b, bool).reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return (inter / np.maximum(union, EPS)).astype(np.float64)


def pruned_mask_iou(
    a_masks: np.ndarray,
    a_boxes: np.ndarray,
    a_classes: np.ndarray,
    b_masks: np.ndarray,
    b_boxes: np.ndarray,
    b_classes: np.ndarray,
) -> np.ndarray:
    """(N, M) mask IoU at full resolution, computed only for same-class pairs whose boxes overlap.

    A dense product over 1280x720 masks for hundreds of low-confidence predictions costs seconds per
    image; pairs that cannot match (other class, disjoint boxes) have IoU 0 for matching anyway, and
    each remaining pair is counted over the intersection of its two boxes only. Masks must lie
    within their boxes (true for Ultralytics masks, which are cropped to the box, and for polygon
    labels with polygon-bound boxes): boxes are widened by a pixel to cover rounding.
    """
    n, m = len(a_masks), len(b_masks)
    out = np.zeros((n, m), np.float64)
    if n == 0 or m == 0:
        return out
    height, width = a_masks.shape[1:]
    area_a = np.count_nonzero(a_masks.reshape(n, -1), axis=1)
    area_b = np.count_nonzero(b_masks.reshape(m, -1), axis=1)
    candidates = (box_iou(a_boxes, b_boxes) > 0) & (np.asarray(a_classes)[:, None] == np.asarray(b_classes)[None, :])
    lt = np.floor(np.maximum(np.asarray(a_boxes)[:, None, :2], np.asarray(b_boxes)[None, :, :2])) - 1
    rb = np.ceil(np.minimum(np.asarray(a_boxes)[:, None, 2:], np.asarray(b_boxes)[None, :, 2:])) + 1
    for i, j in zip(*np.nonzero(candidates), strict=True):
        x1, y1 = max(int(lt[i, j, 0]), 0), max(int(lt[i, j, 1]), 0)
        x2, y2 = min(int(rb[i, j, 0]), width), min(int(rb[i, j, 1]), height)
        if x2 <= x1 or y2 <= y1:
            continue
        inter = np.count_nonzero(a_masks[i, y1:y2, x1:x2] & b_masks[j, y1:y2, x1:x2])
        union = area_a[i] + area_b[j] - inter
        out[i, j] = inter / union if union > 0 else 0.0
    return out


def match_predictions(
    pred_classes: np.ndarray, true_classes: np.ndarray, iou: np.ndarray, thresholds: np.ndarray
) -> np.ndarray:
    """(N, T) true-positive flags: Ultralytics' greedy one-to-one matching by IoU within a class.

    ``iou`` is (G, N): ground truth by prediction.
    """
    correct = np.zeros((len(pred_classes), len(thresholds)), bool)
    if len(pred_classes) == 0 or len(true_classes) == 0:
        return correct
    iou = iou * (np.asarray(true_classes)[:, None] == np.asarray(pred_classes)[None, :])
    for t, threshold in enumerate(thresholds):
        matches = np.array(np.nonzero(iou >= threshold)).T  # (K, 2): gt, pred
        if matches.shape[0] == 0:
            continue
        if matches.shape[0] > 1:
            matches = matches[iou[matches[:, 0], matches[:, 1]].argsort(kind="stable")[::-1]]
            matches = matches[np.unique(matches[:, 1], return_index=True)[1]]
            matches = matches[np.unique(matches[:, 0], return_index=True)[1]]
        correct[matches[:, 1], t] = True
    return correct


def compute_ap(recall: np.ndarray, precision: np.ndarray, method: Literal["coco", "ultralytics"] = "coco") -> float:
    """AP from a recall/precision curve (predictions sorted by descending confidence).

    Both methods use the precision envelope at 101 recall points; ``coco`` averages it (pycocotools),
    ``ultralytics`` integrates it with the trapezoid rule (``ap_per_class``; max 0.995).
    """
    if method == "coco":
        envelope = np.flip(np.maximum.accumulate(np.flip(np.asarray(precision, np.float64))))
        index = np.searchsorted(np.asarray(recall, np.float64), RECALL_POINTS, side="left")
        valid = index < len(envelope)
        sampled = np.zeros_like(RECALL_POINTS)
        sampled[valid] = envelope[index[valid]]
        return float(sampled.mean())
    if method == "ultralytics":
        mrec = np.concatenate(([0.0], recall, [1.0]))
        mpre = np.concatenate(([1.0], precision, [0.0]))
        mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
        return float(np.trapezoid(np.interp(RECALL_POINTS, mrec, mpre), RECALL_POINTS))
    raise ValueError(f"unknown AP method {method!r}; use 'coco' or 'ultralytics'")


def ap_per_class(
    tp: np.ndarray,
    conf: np.ndarray,
    pred_cls: np.ndarray,
    target_cls: np.ndarray,
    method: Literal["coco", "ultralytics"] = "coco",
) -> tuple[np.ndarray, np.ndarray]:
    """AP (C, T) for each class present in the labels, and those classes (C,).

    A class with labels but no predictions has AP 0; predictions of classes without labels are
    ignored (as Ultralytics and COCO do).
    """
    order = np.argsort(-np.asarray(conf), kind="stable")
    tp, pred_cls = np.asarray(tp, bool)[order], np.asarray(pred_cls)[order]
    classes, counts = np.unique(np.asarray(target_cls), return_counts=True)
    ap = np.zeros((len(classes), tp.shape[1] if tp.ndim == 2 else 0))
    for ci, (cls, n_labels) in enumerate(zip(classes, counts, strict=True)):
        picked = pred_cls == cls
        if not picked.any():
            continue
        tpc = tp[picked].cumsum(0)
        fpc = (~tp[picked]).cumsum(0)
        recall = tpc / (n_labels + EPS)
        precision = tpc / (tpc + fpc)
        for t in range(tp.shape[1]):
            ap[ci, t] = compute_ap(recall[:, t], precision[:, t], method)
    return ap, classes
