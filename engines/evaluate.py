"""Box and mask mAP of a segmentation model on a YOLO-format data set, through SegmentationEngine.

Used to say what a converted model (FP16, INT8) costs in accuracy against its FP32 source, on the
same frames, through the same pre/post-processing the pipeline runs. The matching and AP follow
Ultralytics' ``match_predictions``/``ap_per_class`` (IoU thresholds 0.50:0.05:0.95, predictions
matched greedily by IoU within a class, AP per class present in the labels, mAP their mean) with
two deliberate differences, both stated in reports:

- AP integration: ``coco`` (default) averages the precision envelope at 101 recall points as
  pycocotools does (a perfect detector scores 1.0); ``ultralytics`` integrates the same 101-point
  curve with the trapezoid rule (a perfect detector scores 0.995, as Ultralytics prints).
- Mask IoU is computed at the frame's full resolution (Ultralytics validates on masks at the
  prototype resolution, imgsz/4), which matters for thin objects such as cables.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from engines.quant.dataset import LabelledImage, YoloDataset
from engines.quant.metrics import ap_per_class, box_iou, match_predictions, pruned_mask_iou

logger = logging.getLogger(__name__)

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
APMethod = Literal["coco", "ultralytics"]


@dataclass
class EvalResult:
    """mAP figures of one model on one data set split."""

    model: str
    box_map50: float
    box_map: float  # mAP50-95
    mask_map50: float
    mask_map: float
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    images: int = 0
    instances: int = 0
    seconds: float = 0.0
    ms_per_image: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


class MetricAccumulator:
    """Collects per-image matches; ``result`` turns them into box and mask mAP."""

    def __init__(self, names: dict[int, str], method: APMethod = "coco") -> None:
        self.names, self.method = names, method
        self._box_tp: list[np.ndarray] = []
        self._mask_tp: list[np.ndarray] = []
        self._conf: list[np.ndarray] = []
        self._pred_cls: list[np.ndarray] = []
        self._target_cls: list[np.ndarray] = []

    def add(
        self,
        pred_boxes: np.ndarray,
        pred_scores: np.ndarray,
        pred_classes: np.ndarray,
        pred_masks: np.ndarray | None,
        gt_boxes: np.ndarray,
        gt_classes: np.ndarray,
        gt_masks: np.ndarray | None,
    ) -> None:
        """One image: predictions (N) and ground truth (G) in the same pixel coordinates."""
        pred_classes = np.asarray(pred_classes, np.int64)
        gt_classes = np.asarray(gt_classes, np.int64)
        n = len(pred_classes)
        box_iou_gt = box_iou(gt_boxes, pred_boxes)
        self._box_tp.append(match_predictions(pred_classes, gt_classes, box_iou_gt, IOU_THRESHOLDS))
        if pred_masks is not None and gt_masks is not None:
            mask_iou_gt = pruned_mask_iou(gt_masks, gt_boxes, gt_classes, pred_masks, pred_boxes, pred_classes)
            self._mask_tp.append(match_predictions(pred_classes, gt_classes, mask_iou_gt, IOU_THRESHOLDS))
        else:
            self._mask_tp.append(np.zeros((n, len(IOU_THRESHOLDS)), bool))
        self._conf.append(np.asarray(pred_scores, np.float64))
        self._pred_cls.append(pred_classes)
        self._target_cls.append(gt_classes)

    def result(self, model: str = "") -> EvalResult:
        conf = np.concatenate(self._conf) if self._conf else np.zeros(0)
        pred_cls = np.concatenate(self._pred_cls) if self._pred_cls else np.zeros(0, np.int64)
        target_cls = np.concatenate(self._target_cls) if self._target_cls else np.zeros(0, np.int64)
        thresholds = len(IOU_THRESHOLDS)
        box_tp = np.concatenate(self._box_tp) if self._box_tp else np.zeros((0, thresholds), bool)
        mask_tp = np.concatenate(self._mask_tp) if self._mask_tp else np.zeros((0, thresholds), bool)
        box_ap, classes = ap_per_class(box_tp, conf, pred_cls, target_cls, self.method)
        mask_ap, _ = ap_per_class(mask_tp, conf, pred_cls, target_cls, self.method)
        per_class = {
            self.names.get(int(c), str(int(c))): {
                "box_map50": float(box_ap[i, 0]),
                "box_map": float(box_ap[i].mean()),
                "mask_map50": float(mask_ap[i, 0]),
                "mask_map": float(mask_ap[i].mean()),
                "instances": int((target_cls == c).sum()),
            }
            for i, c in enumerate(classes)
        }

        def mean(values: np.ndarray) -> float:
            return float(values.mean()) if values.size else 0.0

        return EvalResult(
            model=model,
            box_map50=mean(box_ap[:, 0]) if len(classes) else 0.0,
            box_map=mean(box_ap),
            mask_map50=mean(mask_ap[:, 0]) if len(classes) else 0.0,
            mask_map=mean(mask_ap),
            per_class=per_class,
            images=len(self._conf),
            instances=len(target_cls),
        )


def gt_masks(item: LabelledImage, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise the image's label polygons at the frame's resolution."""
    height, width = shape
    masks = np.zeros((len(item.polygons), height, width), np.uint8)
    for mask, polygon in zip(masks, item.polygons, strict=True):
        points = np.round(polygon * np.array([width, height])).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(mask, [points], 1)
    return masks.astype(bool)


def evaluate(
    model: Path | str,
    data: Path | str,
    split: str | None = None,
    conf: float = 0.001,
    iou: float = 0.7,
    max_det: int = 300,
    imgsz: tuple[int, int] | None = None,
    max_images: int | None = None,
    method: APMethod = "coco",
    threads: int = 0,
) -> EvalResult:
    """Run ``model`` (any ONNX the ``onnxruntime`` backend loads) over a data set split; box/mask mAP.

    conf/iou/max_det default to Ultralytics' validation settings (0.001, 0.7, 300).
    """
    from engines.engine import SegmentationEngine
    from trtseg.config import EngineConfig

    dataset = YoloDataset(data, split)
    config = EngineConfig(
        model=Path(model).resolve(),
        backend="onnxruntime",
        imgsz=imgsz,
        batch_size=1,
        max_detections=max_det,
        intra_op_threads=threads,
    )
    engine = SegmentationEngine(config).load()
    _check_names(engine.names, dataset.names, model)
    acc = MetricAccumulator(dataset.names, method)
    start, infer_s = time.perf_counter(), 0.0
    for count, item in enumerate(dataset):
        if max_images is not None and count >= max_images:
            break
        image = item.read()
        t0 = time.perf_counter()
        det = engine.predict([image], conf=conf, iou=iou, max_det=max_det, with_masks=True)[0]
        infer_s += time.perf_counter() - t0
        shape = image.shape[:2]
        pred_masks = None if det.masks is None else det.masks.dense()  # the metrics compare full frames
        acc.add(
            det.boxes, det.scores, det.class_ids, pred_masks, item.boxes(shape), item.class_ids, gt_masks(item, shape)
        )
    result = acc.result(Path(model).name)
    result.seconds = time.perf_counter() - start
    result.ms_per_image = 1000 * infer_s / max(result.images, 1)
    logger.info(
        "evaluated model=%s images=%d box_map50=%.4f box_map=%.4f mask_map50=%.4f mask_map=%.4f seconds=%.1f",
        result.model, result.images, result.box_map50, result.box_map, result.mask_map50, result.mask_map,
        result.seconds,
    )  # fmt: skip
    return result


def _check_names(model_names: dict[int, str], data_names: dict[int, str], model: Path | str) -> None:
    """Class ids must mean the same thing in the model and in the labels, or mAP is meaningless."""
    if model_names != data_names:
        raise ValueError(f"model {model} classes {model_names} differ from the data set's {data_names}")


def accuracy_table(
    models: dict[str, Path | str], dataset: Path | str, split: str | None = None, **kwargs: object
) -> str:
    """Markdown: box/mask mAP50 and mAP50-95 of each model (first one is the reference) on ``dataset``."""
    results = {label: evaluate(path, dataset, split, **kwargs) for label, path in models.items()}  # type: ignore[arg-type]
    return format_table(results)


def format_table(results: dict[str, EvalResult]) -> str:
    """The accuracy table from computed results (mAP in percent; deltas against the first row)."""
    rows = list(results.items())
    if not rows:
        return ""
    ref = rows[0][1]
    lines = [
        "| model | box mAP50 | box mAP50-95 | mask mAP50 | mask mAP50-95 | Δ mask mAP50-95 (pts) | images | ms/image |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in rows:
        delta = 100 * (r.mask_map - ref.mask_map)
        lines.append(
            f"| {label} | {100 * r.box_map50:.2f} | {100 * r.box_map:.2f} | {100 * r.mask_map50:.2f} | "
            f"{100 * r.mask_map:.2f} | {delta:+.2f} | {r.images} | {r.ms_per_image:.1f} |"
        )
    return "\n".join(lines) + "\n"


def iter_results_json(results: dict[str, EvalResult]) -> Iterable[dict[str, object]]:
    """JSON-ready rows (for --json output of the accuracy report)."""
    for label, r in results.items():
        yield {"label": label, **r.as_dict()}
