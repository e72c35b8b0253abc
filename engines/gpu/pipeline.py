"""Frames in host memory -> detections with masks, with every step between on the GPU.

``GpuSegmentationEngine`` is a ``SegmentationEngine`` (same ``predict`` contract, batching, class
filters and timings) whose batches go: pinned staging -> one upload -> fused letterbox kernel writing
into the backend's own input buffer -> network ('cuda' or 'tensorrt' backend) -> GPU NMS and masks ->
only results back, the post-processing of one batch overlapping the network of the next. Backends
that can take part implement ``DeviceBackend``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from engines.base import EngineError
from engines.engine import SegmentationEngine, StageTimings
from engines.gpu.memory import CudaPageLocker, GpuContext, to_cupy
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


@dataclass(slots=True)
class _InFlight:
    """A batch whose network has been launched; its outputs wait in ``slot`` for post-processing."""

    staged: Staged
    started: float
    launched: float
    slot: int
    pred: Any  # (count, channels, anchors) float32, this batch's copy of output0
    protos: Any  # (count, nm, mh, mw) float32 copy of output1, or None without masks
    events: list[Any]  # letterbox start, network start, outputs copied (compute stream)


class GpuSegmentationEngine(SegmentationEngine):
    """``SegmentationEngine`` with GPU pre- and post-processing around a device backend.

    A batch is launched (staging, letterbox, network, outputs copied into one of ``OUTPUT_SLOTS``
    buffers, all on the compute stream) and then collected (NMS and masks on a second stream, results
    to the host). Launches are serialised and so are collections, but a collection overlaps the next
    launch: while the host post-processes batch k, the GPU runs the network of batch k+1. Two
    threads calling ``predict`` (the segmentation actor runs ``concurrent_batches`` of them), or one
    ``predict_stream``, get that overlap.
    """

    OUTPUT_SLOTS = 2
    concurrent_batches = 2
    overlap = True  # predict_stream launches batch k+1 before collecting k (False: one at a time)

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self._letterbox: GpuLetterbox | None = None
        self._post: GpuPostprocess | None = None
        self._stager = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trtseg-prefetch")
        self._launch_lock = threading.Lock()
        self._collect_lock = threading.Lock()
        self._free_slots: queue.SimpleQueue[int] = queue.SimpleQueue()
        for slot in range(self.OUTPUT_SLOTS):
            self._free_slots.put(slot)
        self.overlapped_batches = 0  # launched while another batch was still being collected

    def load(self) -> GpuSegmentationEngine:
        if self._backend is not None:
            return self
        super().load()
        if not isinstance(self.backend, DeviceBackend):
            raise EngineError(f"backend '{self.backend.name}' keeps its buffers on the host; use SegmentationEngine")
        ctx = self.backend.context
        self._letterbox = GpuLetterbox(ctx)
        self._post = GpuPostprocess(ctx.lane(), self.info.names, self.config.mask_threshold)
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
        with self._launch_lock:  # staging slots are reused in launch order
            flight = self._launch(self._stage(frames), started, with_masks)
        return self._collect(flight, conf, iou, classes, with_masks, max_det, agnostic, timings)

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
        """``predict`` over a stream of batches, pipelined: one list of ``Detections`` per batch, in order.

        Batch k+1 is staged and uploaded while batch k computes, and when it is ready in time its
        network is launched before batch k is post-processed; when it is not (a live source that
        has nothing yet), batch k is finished at once rather than held back. Each batch holds at
        most ``max_batch`` frames. The throughput path for a queue of batches.
        """
        class_ids = self.class_ids(classes)
        limit = max_det if max_det is not None else self.config.max_detections
        iterator = iter(batches)
        pending = self._stager.submit(self._stage_next, iterator)

        def finish(batch: _InFlight) -> list[Detections]:
            timings = StageTimings()
            detections = self._collect(batch, conf, iou, class_ids, with_masks, limit, agnostic, timings)
            self._record(timings)  # per batch: a stream has no end at which to record a sum
            return detections

        flight: _InFlight | None = None  # launched, not yet collected
        try:
            while True:
                if flight is not None and (not self.overlap or not pending.done()):  # nothing to overlap with
                    done, flight = flight, None
                    yield finish(done)
                item = pending.result()
                if item is None:
                    break
                started, staged = item
                pending = self._stager.submit(self._stage_next, iterator)  # overlaps the GPU work below
                with self._launch_lock:
                    launched = self._launch(staged, started, with_masks)
                done, flight = flight, launched
                if done is not None:
                    yield finish(done)
            if flight is not None:
                done, flight = flight, None
                yield finish(done)
        finally:
            if flight is not None:  # the caller stopped early, or a batch failed: hand the slot back
                self._release(flight)

    # -- internals ------------------------------------------------------------------------------
    def _release(self, flight: _InFlight) -> None:
        """Free the output slot of a launched batch that will not be collected."""
        with contextlib.suppress(Exception):
            flight.events[2].synchronize()
        self._free_slots.put(flight.slot)

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

    def _launch(self, staged: Staged, started: float, with_masks: bool) -> _InFlight:
        """Letterbox, network and a copy of the outputs into a free slot, queued on the compute stream."""
        assert self._letterbox is not None
        backend: Any = self.backend
        ctx = backend.context
        cp = ctx.cp
        slot = self._free_slots.get()  # blocks only with more batches in flight than slots
        if self._free_slots.qsize() < self.OUTPUT_SLOTS - 1:
            self.overlapped_batches += 1
        try:
            launched = time.perf_counter()
            canvas = staged.geometries[0].input_shape
            size = backend.plan_batch(staged.count)
            view = backend.input_view(size, canvas)
            events = [cp.cuda.Event() for _ in range(3)]
            events[0].record(ctx.stream)
            self._letterbox.launch(staged, view)
            events[1].record(ctx.stream)
            output0, output1 = backend.run(size, canvas)
            count = staged.count
            with ctx.active():
                # float32 copies the post-processing kernels index directly; the backend's own
                # outputs are overwritten by the next batch's network while these are read.
                out0 = to_cupy(output0)[:count]
                pred = ctx.device_buffer(f"engine.pred.{slot}", tuple(out0.shape), np.float32)
                pred[...] = out0
                protos = None
                if with_masks:
                    out1 = to_cupy(output1)[:count]
                    protos = ctx.device_buffer(f"engine.protos.{slot}", tuple(out1.shape), np.float32)
                    protos[...] = out1
            events[2].record(ctx.stream)
        except BaseException:
            self._free_slots.put(slot)
            raise
        return _InFlight(staged, started, launched, slot, pred, protos, events)

    def _collect(
        self,
        flight: _InFlight,
        conf: float,
        iou: float,
        classes: list[int] | None,
        with_masks: bool,
        max_det: int,
        agnostic: bool,
        timings: StageTimings,
    ) -> list[Detections]:
        """NMS and masks of a launched batch on the post-processing lane; frees its output slot."""
        assert self._post is not None
        post = self._post
        with self._collect_lock:
            try:
                collecting = time.perf_counter()
                post.ctx.stream.wait_event(flight.events[2])
                detections = post.run(
                    flight.pred,
                    flight.protos if with_masks else flight.pred,
                    flight.staged.geometries,
                    conf=conf,
                    iou=iou,
                    classes=classes,
                    with_masks=with_masks,
                    max_det=max_det,
                    agnostic=agnostic,
                )
                finished = time.perf_counter()
            finally:
                # Nothing of this batch may still read the slot when it is handed on, failed or not.
                with contextlib.suppress(Exception):
                    post.ctx.synchronize()
                self._free_slots.put(flight.slot)
        cp = post.ctx.cp
        # pre: host staging and launch + the letterbox kernel; infer: the network on the GPU;
        # post: host time of NMS, masks and results (overlapping the next batch's network).
        events = flight.events
        pre_ms = (flight.launched - flight.started) * 1e3 + cp.cuda.get_elapsed_time(events[0], events[1])
        infer_ms = cp.cuda.get_elapsed_time(events[1], events[2])
        post_ms = (finished - collecting) * 1e3
        timings.add(StageTimings(pre_ms, infer_ms, post_ms, frames=flight.staged.count, batches=1))
        return detections


def create_engine(config: EngineConfig) -> SegmentationEngine:
    """The engine for ``config``: the GPU pipeline for GPU backends, the host one otherwise."""
    if config.backend in GPU_BACKENDS:
        return GpuSegmentationEngine(config)
    return SegmentationEngine(config)


def load_engine(config: EngineConfig) -> tuple[SegmentationEngine, CudaPageLocker | None]:
    """The loaded engine of a segmentation service, warmed up when asked, and the locker that
    page-locks the decoders' rings for a GPU engine (pictures then upload with no host copy)."""
    engine = create_engine(config).load()
    if config.warmup_frame is not None:
        started = time.perf_counter()
        sizes = engine.warmup(tuple(config.warmup_frame))  # type: ignore[arg-type]
        logger.info(
            "segmenter warmed up",
            extra={"batch_sizes": sizes, "seconds": round(time.perf_counter() - started, 2)},
        )
    context = getattr(engine.backend, "context", None)
    locker = CudaPageLocker(context.cp, context.index) if isinstance(context, GpuContext) else None
    return engine, locker
