"""``SegmentationEngine``: frames in, ``Detections`` out, on any registered backend.

Owns the pieces every backend shares: model facts (``engines.model``), letterboxing
(``engines.preprocess``) and decoding (``engines.postprocess``); the backend only runs the network.
Per-stage timings (pre / infer / post, ms) are kept for the metrics of the segmentation actor.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engines.base import Backend, EngineError, as_numpy, create_backend
from engines.model import ModelInfo, load_model_info
from engines.postprocess import postprocess
from engines.preprocess import preprocess
from trtseg.config import EngineConfig
from trtseg.detections import Detections

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def resolve_model_path(path: Path) -> Path:
    """Relative model paths are from the project root, wherever the process was started."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


@dataclass(slots=True)
class StageTimings:
    """Milliseconds spent per stage for one ``predict`` call (or summed over many)."""

    pre_ms: float = 0.0
    infer_ms: float = 0.0
    post_ms: float = 0.0
    frames: int = 0
    batches: int = 0

    @property
    def total_ms(self) -> float:
        return self.pre_ms + self.infer_ms + self.post_ms

    def add(self, other: StageTimings) -> None:
        self.pre_ms += other.pre_ms
        self.infer_ms += other.infer_ms
        self.post_ms += other.post_ms
        self.frames += other.frames
        self.batches += other.batches

    def as_dict(self) -> dict[str, float]:
        return {
            "pre_ms": round(self.pre_ms, 3),
            "infer_ms": round(self.infer_ms, 3),
            "post_ms": round(self.post_ms, 3),
            "total_ms": round(self.total_ms, 3),
            "frames": self.frames,
            "batches": self.batches,
        }


FULL_SWEEP_MAX_BATCH = 8


def dynamic_warmup_sizes(max_batch: int) -> list[int]:
    """Batch sizes up to ``max_batch`` and back down, then the largest once more.

    Measured with ONNX Runtime: every size up to 4 once (1, 2, 3, 4, 4) still left the arena 38 MB
    short of where live batches took it; up, down and the largest again reached it. Beyond
    ``FULL_SWEEP_MAX_BATCH`` the sweep takes powers of two, to keep the start short.
    """
    top = max(1, max_batch)
    if top <= FULL_SWEEP_MAX_BATCH:
        rising = list(range(1, top + 1))
    else:
        rising = sorted({2**k for k in range(top.bit_length()) if 2**k <= top} | {top})
    return [*rising, *reversed(rising), top]


class SegmentationEngine:
    """A loaded YOLOv8/YOLO11-seg model behind the configured backend.

    ``predict`` may be called from several threads; ``concurrent_batches`` says how many calls at
    once gain anything (one here: the backend's own threads already fill the machine).
    """

    concurrent_batches = 1

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.model_path = resolve_model_path(config.model)
        self._info: ModelInfo | None = None
        self._backend: Backend | None = None
        self.last_timings = StageTimings()
        self.total_timings = StageTimings()
        self._timings_lock = threading.Lock()
        self.last_input_shape: tuple[int, ...] = ()  # (B, 3, H, W) of the latest network input

    # -- set-up ---------------------------------------------------------------------------------
    def load(self) -> SegmentationEngine:
        """Validate the model and start the backend; safe to call twice."""
        if self._backend is not None:
            return self
        info = load_model_info(self.model_path)
        backend = create_backend(self.config.model_copy(update={"model": self.model_path}))
        backend.load()
        if getattr(backend, "flexible_input", False):  # a fixed-size export whose head was opened
            info = replace(info, dynamic_hw=True, batch=None)
        if self.config.imgsz is not None and not info.dynamic_hw and tuple(self.config.imgsz) != info.imgsz:
            raise EngineError(
                f"engine.imgsz {tuple(self.config.imgsz)} differs from the fixed input {info.imgsz} of "
                f"{self.model_path}; re-export with dynamic=True, use engine.open_head, or drop engine.imgsz"
            )
        self._info, self._backend = info, backend
        logger.info(
            "segmentation engine ready",
            extra={"model": str(self.model_path), "backend": backend.name, "classes": info.num_classes},
        )
        return self

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            raise EngineError("engine used before load()")
        return self._info

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            raise EngineError("engine used before load()")
        return self._backend

    @property
    def names(self) -> dict[int, str]:
        return dict(self.info.names)

    @property
    def target_size(self) -> tuple[int, int]:
        """(height, width) frames are scaled to fit."""
        return tuple(self.config.imgsz) if self.config.imgsz is not None else self.info.imgsz  # type: ignore[return-value]

    @property
    def rectangular(self) -> bool:
        """Rectangular (``auto``) inputs: only for dynamic-shape models without a fixed engine.imgsz."""
        return self.info.dynamic_hw and self.config.imgsz is None

    @property
    def max_batch(self) -> int:
        return self.info.batch or self.config.batch_size

    def warmup(self, shape: tuple[int, int] = (720, 1280)) -> list[int]:
        """Run each batch size the backend plans (``batch_sizes``) on blank frames of ``shape``; a
        backend that plans none gets ``dynamic_warmup_sizes(max_batch)``.

        Backends set up lazily per shape (the 'cuda' backend builds and captures a CUDA graph per
        batch size, which takes a second or more), and ONNX Runtime's memory arena grows the first
        times each batch size comes, in the order they come (+65 MB at a second batch of 4 for a
        480x272 camera): done at start, neither lands on live frames, and a segmenter's memory is at
        its plateau before it serves. Returns the batch sizes run, in order.
        """
        planned = getattr(self.backend, "batch_sizes", None)
        if planned:
            sizes = [size for size in planned if size <= self.max_batch] or [1]
        else:
            sizes = dynamic_warmup_sizes(self.max_batch)
        blank = np.full((*shape, 3), 114, np.uint8)
        for size in sizes:
            self.predict([blank] * size, with_masks=True)
        self.total_timings = StageTimings()  # figures are for real frames
        return sizes

    # -- inference -------------------------------------------------------------------------------
    def class_ids(self, classes: Sequence[int | str] | None) -> list[int] | None:
        """Class filter given as ids or names -> ids; unknown classes are an error."""
        if classes is None:
            return None
        by_name = {name: cid for cid, name in self.info.names.items()}
        ids: list[int] = []
        for item in classes:
            if isinstance(item, str) and not item.isdigit():
                if item not in by_name:
                    raise ValueError(f"unknown class '{item}'; the model has {sorted(by_name)}")
                ids.append(by_name[item])
            else:
                cid = int(item)
                if cid not in self.info.names:
                    raise ValueError(f"unknown class id {cid}; the model has 0..{self.info.num_classes - 1}")
                ids.append(cid)
        return ids

    def predict(
        self,
        images: Sequence[np.ndarray] | np.ndarray,
        conf: float = 0.25,
        iou: float = 0.7,
        classes: Sequence[int | str] | None = None,
        with_masks: bool = True,
        max_det: int | None = None,
        agnostic: bool = False,
    ) -> list[Detections]:
        """Segment BGR uint8 frames (any sizes); one ``Detections`` per frame, in frame pixels."""
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        frames = list(images)
        if not 0.0 <= conf <= 1.0 or not 0.0 <= iou <= 1.0:
            raise ValueError(f"conf and iou must be in [0, 1], got conf={conf}, iou={iou}")
        class_ids = self.class_ids(classes)
        limit = max_det if max_det is not None else self.config.max_detections
        if limit < 1:
            raise ValueError(f"max_det must be at least 1, got {limit}")
        timings = StageTimings()
        results: list[Detections] = []
        step = self.max_batch
        for start in range(0, len(frames), step):
            chunk = frames[start : start + step]
            results.extend(self._predict_batch(chunk, conf, iou, class_ids, with_masks, limit, agnostic, timings))
        self._record(timings)
        return results

    def _record(self, timings: StageTimings) -> None:
        """Keep one call's timings as the latest and add them to the totals (thread-safe)."""
        with self._timings_lock:
            self.last_timings = timings
            self.total_timings.add(timings)

    def _predict_batch(
        self,
        frames: list[np.ndarray],
        conf: float,
        iou: float,
        classes: list[int] | None,
        with_masks: bool,
        max_det: int,
        agnostic: bool,
        timings: StageTimings,
    ) -> list[Detections]:
        t0 = time.perf_counter()
        batch, geometries = preprocess(frames, self.target_size, self.info.stride, self.rectangular)
        if self.info.batch is not None and batch.shape[0] < self.info.batch:  # fixed-batch model: pad
            filler = np.zeros((self.info.batch - batch.shape[0], *batch.shape[1:]), np.float32)
            batch = np.concatenate([batch, filler])
        t1 = time.perf_counter()
        self.last_input_shape = tuple(batch.shape)
        output0, output1 = self.backend.infer(batch)
        output0 = as_numpy(output0)
        output1 = as_numpy(output1) if with_masks else None
        t2 = time.perf_counter()
        detections = postprocess(
            output0,
            output1,
            geometries,
            self.info.names,
            conf=conf,
            iou=iou,
            classes=classes,
            agnostic=agnostic,
            max_det=max_det,
            with_masks=with_masks,
            mask_threshold=self.config.mask_threshold,
        )
        t3 = time.perf_counter()
        timings.add(StageTimings((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, frames=len(frames), batches=1))
        return detections
