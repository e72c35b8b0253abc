"""Frames in host memory -> detections with masks, with every step between on the GPU.

``GpuSegmentationEngine`` is a ``SegmentationEngine`` (same ``predict`` contract, batching, class
filters and timings) whose batches go: pinned staging -> one upload -> fused letterbox kernel writing
into the backend's own input buffer -> network ('cuda' or 'tensorrt' backend) -> GPU NMS and masks ->
only results back. Backends that can take part implement ``DeviceBackend``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, runtime_checkable

import numpy as np

from engines.base import EngineError
from engines.engine import SegmentationEngine, StageTimings
from engines.gpu.postprocess import GpuPostprocess
from engines.gpu.preprocess import GpuLetterbox, Staged
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
        self._stager = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trtseg-prefetch")

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
        self._stager.shutdown(wait=True)
        if self._letterbox is not None:
            self._letterbox.close()
        if self._post is not None:
            self._post.close()

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
        started = time.perf_counter()
        staged = self._stage(frames)
        return self._finish(staged, started, conf, iou, classes, with_masks, max_det, agnostic, timings)

    def predict_stream(
        self,
        batches: Iterable[Sequence[np.ndarray]],
        conf: float = 0.25,
        iou: float = 0.7,
        classes: Sequence[int | str] | None = None,
        with_masks: bool = True,
        max_det: int | None = None,
        agnostic: bool = False,
    ) -> Iterator[list[Detections]]:
        """``predict`` over a stream of batches, uploading batch k+1 while batch k computes.

        Yields one list of ``Detections`` per batch, in order; each batch holds at most
        ``max_batch`` frames. The throughput path for a segmentation actor with a queue of batches.
        """
        class_ids = self.class_ids(classes)
        limit = max_det if max_det is not None else self.config.max_detections
        iterator = iter(batches)
        pending = self._stager.submit(self._stage_next, iterator)
        while True:
            item = pending.result()
            if item is None:
                return
            started, staged = item
            pending = self._stager.submit(self._stage_next, iterator)  # overlaps the GPU work below
            timings = StageTimings()
            yield self._finish(staged, started, conf, iou, class_ids, with_masks, limit, agnostic, timings)
            self.last_timings = timings
            self.total_timings.add(timings)

    # -- internals ------------------------------------------------------------------------------
    def _stage_next(self, iterator: Iterator[Sequence[np.ndarray]]) -> tuple[float, Staged] | None:
        frames = next(iterator, None)
        if frames is None:
            return None
        frames = list(frames)
        if not 0 < len(frames) <= self.max_batch:
            raise EngineError(f"a batch holds 1..{self.max_batch} frames, got {len(frames)}")
        started = time.perf_counter()
        return started, self._stage(frames)

    def _stage(self, frames: list[np.ndarray]) -> Staged:
        assert self._letterbox is not None
        geometries = self._letterbox.geometry(frames, self.target_size, self.info.stride, self.rectangular)
        return self._letterbox.stage(frames, geometries)

    def _finish(
        self,
        staged: Staged,
        started: float,
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
        launched = time.perf_counter()
        canvas = staged.geometries[0].input_shape
        size = backend.plan_batch(staged.count)
        view = backend.input_view(size, canvas)
        events = [cp.cuda.Event() for _ in range(3)]
        events[0].record(ctx.stream)
        self._letterbox.launch(staged, view)
        events[1].record(ctx.stream)
        output0, output1 = backend.run(size, canvas)
        events[2].record(ctx.stream)
        detections = self._post.run(
            output0,
            output1,
            staged.geometries,
            conf=conf,
            iou=iou,
            classes=classes,
            with_masks=with_masks,
            max_det=max_det,
            agnostic=agnostic,
        )
        # pre: host staging + upload wait + letterbox kernel; infer: the network on the GPU; post: the rest.
        wall_ms = (time.perf_counter() - started) * 1e3
        pre_ms = (launched - started) * 1e3 + cp.cuda.get_elapsed_time(events[0], events[1])
        infer_ms = cp.cuda.get_elapsed_time(events[1], events[2])
        post_ms = max(wall_ms - pre_ms - infer_ms, 0.0)
        timings.add(StageTimings(pre_ms, infer_ms, post_ms, frames=staged.count, batches=1))
        return detections


def create_engine(config: EngineConfig) -> SegmentationEngine:
    """The engine for ``config``: the GPU pipeline for GPU backends, the host one otherwise."""
    if config.backend in GPU_BACKENDS:
        return GpuSegmentationEngine(config)
    return SegmentationEngine(config)
