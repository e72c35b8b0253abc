"""YOLOv8-seg output decoding: confidence filter, class-aware NMS, instance masks, frame coordinates.

Numerics follow Ultralytics' predictor (``non_max_suppression``, ``process_mask`` with
``retina_masks=False``, ``scale_masks``, ``scale_boxes``) so results match ``YOLO.predict`` on the
same ONNX model, but the work is only done where it matters: mask logits are computed only for
kept detections and only over the prototype cells under their boxes, and resampled only inside the
boxes, instead of full-frame tensors per instance. Masks come out as those box windows
(``InstanceMasks``), never pasted into full frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

from engines.preprocess import LetterboxGeometry, boxes_to_frame
from trtseg.detections import Detections
from trtseg.masks import InstanceMasks, MaskCrop

MAX_WH = 7680  # class offset for class-aware NMS (Ultralytics' max_wh)
MAX_NMS = 30000  # boxes kept for NMS, highest scores first


@dataclass(slots=True)
class Candidates:
    """Detections of one image after NMS, still in network-input coordinates."""

    boxes: np.ndarray  # (N, 4) float32 xyxy, input space
    scores: np.ndarray  # (N,) float32
    class_ids: np.ndarray  # (N,) int32
    coeffs: np.ndarray  # (N, 32) float32 mask coefficients

    def take(self, index: np.ndarray) -> Candidates:
        return Candidates(self.boxes[index], self.scores[index], self.class_ids[index], self.coeffs[index])


def box_iou_one(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box against many, with torchvision's formula."""
    xx1 = np.maximum(box[0], boxes[:, 0])
    yy1 = np.maximum(box[1], boxes[:, 1])
    xx2 = np.minimum(box[2], boxes[:, 2])
    yy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / (area + areas - inter)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int | None = None) -> np.ndarray:
    """Greedy NMS with torchvision's semantics: indices kept, highest score first.

    A box is suppressed when its IoU with a kept, higher-scoring box is strictly above the
    threshold. Stops after ``max_keep`` kept boxes (greedy order makes that prefix exact).
    """
    if boxes.shape[0] == 0:
        return np.zeros((0,), np.int64)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    limit = max_keep if max_keep is not None else order.size
    while order.size and len(keep) < limit:
        best = order[0]
        keep.append(int(best))
        rest = order[1:]
        if not rest.size:
            break
        iou = box_iou_one(boxes[best], boxes[rest])
        order = rest[~(iou > iou_threshold)]  # NaN IoU (degenerate boxes) keeps the box, as torchvision
    return np.asarray(keep, dtype=np.int64)


def decode(
    pred: np.ndarray,
    num_classes: int,
    conf: float = 0.25,
    iou: float = 0.7,
    classes: Sequence[int] | None = None,
    agnostic: bool = False,
    max_det: int = 300,
) -> Candidates:
    """One image's output0 (4+nc+32, A) to NMS-filtered candidates (Ultralytics ``non_max_suppression``)."""
    if not 0.0 <= conf <= 1.0:
        raise ValueError(f"conf must be in [0, 1], got {conf}")
    if not 0.0 <= iou <= 1.0:
        raise ValueError(f"iou must be in [0, 1], got {iou}")
    if pred.ndim != 2 or pred.shape[0] < 4 + num_classes:
        raise ValueError(f"predictions of shape {pred.shape} do not hold 4 + {num_classes} classes")
    scores_all = pred[4 : 4 + num_classes]
    best = scores_all.max(axis=0)
    cand = np.flatnonzero(best > conf)
    num_masks = pred.shape[0] - 4 - num_classes
    if cand.size == 0:
        return _empty_candidates(num_masks)
    rows = pred[:, cand].T.astype(np.float32, copy=False)  # (n, C), only the candidates are transposed
    cls_scores = rows[:, 4 : 4 + num_classes]
    class_ids = cls_scores.argmax(axis=1).astype(np.int32)
    scores = cls_scores[np.arange(rows.shape[0]), class_ids]
    keep = (scores > conf) & np.isfinite(rows[:, :4]).all(axis=1)  # a broken model's NaN/inf boxes are dropped
    if classes is not None:
        keep &= np.isin(class_ids, np.asarray(list(classes), dtype=np.int32))
    rows, class_ids, scores = rows[keep], class_ids[keep], scores[keep]
    if rows.shape[0] == 0:
        return _empty_candidates(num_masks)
    if rows.shape[0] > MAX_NMS:
        top = np.argsort(-scores, kind="stable")[:MAX_NMS]
        rows, class_ids, scores = rows[top], class_ids[top], scores[top]
    xy, wh = rows[:, 0:2], rows[:, 2:4]
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1).astype(np.float32)
    offset = np.zeros_like(scores) if agnostic else class_ids.astype(np.float32) * MAX_WH
    kept = nms(boxes + offset[:, None], scores, iou, max_keep=max_det)
    return Candidates(
        boxes=boxes[kept],
        scores=scores[kept].astype(np.float32),
        class_ids=class_ids[kept],
        coeffs=np.ascontiguousarray(rows[kept, 4 + num_classes :]),
    )


def _empty_candidates(num_masks: int) -> Candidates:
    return Candidates(
        np.zeros((0, 4), np.float32),
        np.zeros((0,), np.float32),
        np.zeros((0,), np.int32),
        np.zeros((0, num_masks), np.float32),
    )


def _window(lo: int, hi: int, step: int, size: int) -> tuple[int, int]:
    """[lo, hi) widened by one ``step`` each side and aligned to ``step``, within [0, size)."""
    return max(0, (lo // step - 1) * step), min(size, (-(-hi // step) + 1) * step)


def _resize_step(src_size: int, dst_size: int) -> tuple[int, int]:
    """Smallest (src, dst) block on which bilinear resizing src_size -> dst_size repeats exactly.

    Resizing an aligned sub-window by cv2 then samples the same source positions (same float
    scale, same offsets) as resizing the whole image, which is what makes ROI-only masks exact.
    A huge block (co-prime sizes) means no useful sub-window: the whole axis is used.
    """
    ratio = Fraction(src_size, dst_size)
    if ratio.denominator > 256:
        return src_size, dst_size
    return ratio.numerator, ratio.denominator


def process_masks(
    protos: np.ndarray,
    cand: Candidates,
    geometry: LetterboxGeometry,
    threshold: float = 0.5,
) -> tuple[InstanceMasks, np.ndarray]:
    """Instance masks at the frame's resolution, computed and kept only in a window around each box.

    Same result as Ultralytics: logits = coeffs @ protos, bilinearly upsampled to the input size,
    binarised, cropped to the (input-space) box, then the padding is cut and the binary mask is
    bilinearly resized to the frame and thresholded at 0.5. Both resizes are done by cv2 on
    block-aligned windows around the box (see ``_resize_step``), never on whole frames.
    Returns (masks: N crops, each that window (0x0 when nothing reaches the frame), nonempty (N,):
    whether the input-space mask had any pixel).
    """
    num_masks, proto_h, proto_w = protos.shape
    in_h, in_w = geometry.input_shape
    frame_h, frame_w = geometry.frame_shape
    n = cand.boxes.shape[0]
    nothing = MaskCrop(0, 0, np.zeros((0, 0), bool))
    crops = [nothing] * n
    nonempty = np.zeros((n,), dtype=bool)
    if n == 0:
        return InstanceMasks.empty(geometry.frame_shape), nonempty
    if in_h % proto_h or in_w % proto_w or in_h // proto_h != in_w // proto_w:
        raise ValueError(f"prototypes {protos.shape[1:]} do not divide the input {geometry.input_shape}")
    up = in_h // proto_h  # 4 for YOLOv8/YOLO11
    logit_threshold = float(math.log(threshold / (1.0 - threshold)))
    left, top, right, bottom = geometry.content_box
    sx, dx = _resize_step(right - left, frame_w)  # content px per block, frame px per block
    sy, dy = _resize_step(bottom - top, frame_h)

    for i, (x1, y1, x2, y2) in enumerate(cand.boxes.astype(np.float64)):
        # Input pixels inside the box (Ultralytics crop_mask: x1 <= c < x2), padding included.
        c0, c1 = max(math.ceil(x1), 0), min(math.ceil(x2), in_w)
        r0, r1 = max(math.ceil(y1), 0), min(math.ceil(y2), in_h)
        if c0 >= c1 or r0 >= r1:
            continue
        # 1. Prototype logits on a cell-aligned window around the box, upsampled to input pixels.
        wx0, wx1 = _window(c0, c1, up, in_w)
        wy0, wy1 = _window(r0, r1, up, in_h)
        cells = protos[:, wy0 // up : wy1 // up, wx0 // up : wx1 // up]
        logits = (cand.coeffs[i] @ cells.reshape(num_masks, -1)).reshape(cells.shape[1:])
        upsampled = cv2.resize(logits, (wx1 - wx0, wy1 - wy0), interpolation=cv2.INTER_LINEAR)
        binary = upsampled[r0 - wy0 : r1 - wy0, c0 - wx0 : c1 - wx0] > logit_threshold
        if not binary.any():
            continue
        nonempty[i] = True
        # 2. The binary box, in content coordinates, resized to the frame on a block-aligned window.
        bc0, bc1 = max(c0, left) - left, min(c1, right) - left
        br0, br1 = max(r0, top) - top, min(r1, bottom) - top
        if bc0 >= bc1 or br0 >= br1:
            continue  # mask only in the padding
        fx0, fx1 = _window(bc0 // sx * dx, -(-bc1 // sx) * dx, dx, frame_w)
        fy0, fy1 = _window(br0 // sy * dy, -(-br1 // sy) * dy, dy, frame_h)
        src = np.zeros(((fy1 - fy0) // dy * sy, (fx1 - fx0) // dx * sx), np.float32)
        oy, ox = fy0 // dy * sy, fx0 // dx * sx  # content coordinates of src[0, 0]
        src[br0 - oy : br1 - oy, bc0 - ox : bc1 - ox] = binary[
            br0 + top - r0 : br1 + top - r0, bc0 + left - c0 : bc1 + left - c0
        ]
        resized = cv2.resize(src, (fx1 - fx0, fy1 - fy0), interpolation=cv2.INTER_LINEAR)
        crops[i] = MaskCrop(fx0, fy0, resized > 0.5)
    return InstanceMasks.from_crops(geometry.frame_shape, crops), nonempty


def postprocess(
    output0: np.ndarray,
    output1: np.ndarray | None,
    geometries: Sequence[LetterboxGeometry],
    names: dict[int, str],
    conf: float = 0.25,
    iou: float = 0.7,
    classes: Sequence[int] | None = None,
    agnostic: bool = False,
    max_det: int = 300,
    with_masks: bool = True,
    mask_threshold: float = 0.5,
) -> list[Detections]:
    """A batch's raw outputs to ``Detections`` per frame, in frame coordinates."""
    if output0.shape[0] < len(geometries):
        raise ValueError(f"output0 has {output0.shape[0]} images for {len(geometries)} frames")
    results: list[Detections] = []
    for b, geometry in enumerate(geometries):
        cand = decode(output0[b], len(names), conf, iou, classes, agnostic, max_det)
        masks: InstanceMasks | None = None
        if with_masks:
            if output1 is None:
                raise ValueError("masks were asked for but the model gave no prototypes")
            masks, nonempty = process_masks(output1[b], cand, geometry, mask_threshold)
            if not nonempty.all():  # Ultralytics drops detections whose mask is empty
                cand, masks = cand.take(np.flatnonzero(nonempty)), masks[nonempty]
        results.append(
            Detections(
                boxes=boxes_to_frame(cand.boxes, geometry),
                scores=cand.scores,
                class_ids=cand.class_ids,
                masks=masks,
                names=dict(names),
                frame_shape=geometry.frame_shape,
            )
        )
    return results
