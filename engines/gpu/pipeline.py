"""Frames in host memory -> detections with masks, with every step between on the GPU.

``GpuSegmentationEngine`` is a ``SegmentationEngine`` (same ``predict`` contract, batching, class
filters and timings) whose batches go: pinned staging -> one upload -> fused letterbox kernel writing
into the backend's own input buffer -> network ('cuda' or 'tensorrt' backend) -> GPU NMS and masks ->
only results back. Backends that can take part implement ``DeviceBackend``.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol, runtime_checkable

import numpy as np

from engines.base import EngineError
from engines.engine import SegmentationEngine, StageTimings
from engines.gpu.postprocess import GpuPostprocess
from engines.gpu.preprocess import GpuLetterbox
from trtseg.config import EngineConfig
from trtseg.detections import Detections

logger = logging.getLogger(__name__)

GPU_BACKENDS = frozenset({"cuda", "tensorrt"})


@runtime_checkable
class DeviceBackend(Protocol):
    """A backend whose input and output buffers live on the GPU (``engines.gpu.memory``)."""

    context: Any

    def plan_batch(self, count: int) -> int:
        """The batch the network runs for ``count`` frames (>= count; padding slots are ignored)."""

    def input_view(self, batch: int, hw: tuple[int, int]) -> Any:
        """The CuPy (batch, 3, H, W) buffer to fill before ``run`` (any strides, fp32 or fp16)."""

    def run(self, batch: int, hw: tuple[int, int]) -> tuple[Any, Any]:
        """Run on the filled buffer; device outputs valid until the next ``run``."""


class GpuSegmentationEngine(SegmentationEngine):
    """``SegmentationEngine`` with GPU pre- and post-processing around a device backend."""

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self._letterbox: GpuLetterbox | None = None
        self._post: GpuPostprocess | None = None

    def load(self) -> GpuSegmentationEngine:
        if self._backend is not None:
            return self
        super().load()
        if not isinstance(self.backend, DeviceBackend):
            raise EngineError(f"backend '{self.backend.name}' keeps its buffers on the host; use SegmentationEngine")
        ctx = self.backend.context
        self._letterbox = GpuLetterbox(ctx)
        self._post = GpuPostprocess(ctx, self.info.names, self.config.mask_threshold)
        return self

    def close(self) -> None:
        if self._letterbox is not None:
            self._letterbox.close()

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
        assert self._letterbox is not None and self._post is not None
        backend: Any = self.backend
        ctx = backend.context
        cp = ctx.cp
        t0 = time.perf_counter()
        geometries = self._letterbox.geometry(frames, self.target_size, self.info.stride, self.rectangular)
        canvas = geometries[0].input_shape
        size = backend.plan_batch(len(frames))
        view = backend.input_view(size, canvas)
        events = [cp.cuda.Event() for _ in range(3)]
        events[0].record(ctx.stream)
        self._letterbox.run(frames, geometries, view)
        events[1].record(ctx.stream)
        output0, output1 = backend.run(size, canvas)
        events[2].record(ctx.stream)
        detections = self._post.run(
            output0,
            output1,
            geometries,
            conf=conf,
            iou=iou,
            classes=classes,
            with_masks=with_masks,
            max_det=max_det,
            agnostic=agnostic,
        )
        total_ms = (time.perf_counter() - t0) * 1e3
        pre_ms = cp.cuda.get_elapsed_time(events[0], events[1])
        infer_ms = cp.cuda.get_elapsed_time(events[1], events[2])
        timings.add(
            StageTimings(pre_ms, infer_ms, max(total_ms - pre_ms - infer_ms, 0.0), frames=len(frames), batches=1)
        )
        return detections


def create_engine(config: EngineConfig) -> SegmentationEngine:
    """The engine for ``config``: the GPU pipeline for GPU backends, the host one otherwise."""
    if config.backend in GPU_BACKENDS:
        return GpuSegmentationEngine(config)
    return SegmentationEngine(config)
