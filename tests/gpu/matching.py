"""Comparing two sets of detections of one frame: same instances, boxes and masks within bounds.

Masks are compared as full frames (densified ``InstanceMasks``), so paths that crop differently
around the same pixels compare equal.
"""

from __future__ import annotations

import numpy as np

from trtseg.detections import Detections
from trtseg.masks import InstanceMasks


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) xyxy -> (N, M) IoU."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(inter / (area_a[:, None] + area_b[None, :] - inter))


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def match(reference: Detections, other: Detections) -> list[tuple[int, int, float]]:
    """Greedy one-to-one pairs (ref index, other index, box IoU), same class, best IoU first."""
    if len(reference) == 0 or len(other) == 0:
        return []
    iou = box_iou(reference.boxes, other.boxes)
    iou[reference.class_ids[:, None] != other.class_ids[None, :]] = 0.0
    pairs: list[tuple[int, int, float]] = []
    used_r: set[int] = set()
    used_o: set[int] = set()
    for flat in np.argsort(-iou, axis=None):
        r, o = divmod(int(flat), iou.shape[1])
        if iou[r, o] <= 0 or r in used_r or o in used_o:
            continue
        pairs.append((r, o, float(iou[r, o])))
        used_r.add(r)
        used_o.add(o)
    return pairs


def assert_same_detections(
    reference: Detections, other: Detections, box_iou_min: float = 0.99, mask_iou_min: float = 0.95
) -> list[float]:
    """Same count and classes, every pair above the box and mask IoU bounds; returns the mask IoUs."""
    assert reference.frame_shape == other.frame_shape
    assert len(reference) == len(other), f"{len(reference)} reference instances, {len(other)} here"
    pairs = match(reference, other)
    assert len(pairs) == len(reference), f"only {len(pairs)} of {len(reference)} instances matched by class"
    mask_ious: list[float] = []
    ref_masks = other_masks = None
    if reference.masks is not None:
        assert isinstance(other.masks, InstanceMasks) and other.masks.frame_shape == reference.frame_shape
        ref_masks, other_masks = reference.masks.dense(), other.masks.dense()
    for r, o, iou in pairs:
        assert iou >= box_iou_min, f"instance {r}: box IoU {iou:.4f} < {box_iou_min}"
        assert abs(float(reference.scores[r]) - float(other.scores[o])) < 0.02
        if ref_masks is not None and other_masks is not None:
            m = mask_iou(ref_masks[r], other_masks[o])
            assert m >= mask_iou_min, f"instance {r}: mask IoU {m:.4f} < {mask_iou_min}"
            mask_ious.append(m)
    return mask_ious
