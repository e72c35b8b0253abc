"""The segmentation actor: one per GPU (or a few CPU ones), batching frames of many cameras.

An async actor with high ``max_concurrency``: every camera's frame waits on the ``Batcher``, which
fills a batch from concurrent requests and runs the engine in worker threads (two batches at once
on the GPU engine, whose post-processing of one overlaps the network of the next). Frames come
over the node-local channel (``trtseg.handoff.serve_inference``, one reader thread per camera,
each note handed to the event loop) or as ``infer`` calls with the frame in the object store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Future
from functools import partial
from typing import Any

import numpy as np
import ray

from actors.common import identity
from engines.gpu.memory import CudaPageLocker, GpuContext
from engines.gpu.pipeline import create_engine
from trtseg.batching import Batcher
from trtseg.channel import Listener, PageLocker, channel_available, new_address
from trtseg.config import EngineConfig
from trtseg.detections import Detections
from trtseg.frames import Frame
from trtseg.handoff import Endpoint, InferNote, serve_inference
from trtseg.metrics import CameraMetrics, SegmenterMetrics
from trtseg.pipeline import InferRequest, infer_grouped

logger = logging.getLogger(__name__)

MAX_CONCURRENCY = 1000


def _page_locker(engine: Any) -> PageLocker | None:
    """A GPU engine uploads ring pictures: page-locked rings make that DMA with no host copy."""
    context = getattr(engine.backend, "context", None)
    if not isinstance(context, GpuContext):
        return None
    return CudaPageLocker(context.cp, context.index)


@ray.remote
class SegmenterActor:
    """Holds one engine (the GPU pipeline for GPU backends) and batches the cameras' frames into it."""

    def __init__(self, engine: EngineConfig, key: str) -> None:
        self.key = key
        self._identity = identity("segmenter", key)
        self.engine = create_engine(engine).load()
        if engine.warmup_frame is not None:
            started = time.perf_counter()
            sizes = self.engine.warmup(tuple(engine.warmup_frame))  # type: ignore[arg-type]
            logger.info(
                "segmenter warmed up",
                extra={"key": key, "batch_sizes": sizes, "seconds": round(time.perf_counter() - started, 2)},
            )
        self._metrics = SegmenterMetrics(key)
        self._camera_metrics: dict[str, CameraMetrics] = {}
        self._batcher: Batcher[InferRequest, Detections] = Batcher(
            partial(infer_grouped, self.engine),
            max_batch=min(engine.batch_size, self.engine.max_batch),
            max_wait_ms=engine.max_wait_ms,
            name=f"segmenter-{key}",
            observer=self._metrics.batch,
            max_inflight=self.engine.concurrent_batches,
        )
        self._per_camera: dict[str, int] = {}
        self._listener: Listener | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        logger.info("segmenter ready key=%s node=%s", key, self._identity["node_id"])

    async def infer(
        self, frame: Frame, conf: float = 0.25, iou: float = 0.7, classes: list[str] | None = None
    ) -> Detections:
        """Segment one camera frame (batched with other cameras' concurrent frames)."""
        request = InferRequest(frame.image, conf, iou, tuple(classes) if classes else None)
        return await self._segment(frame.camera_id, request)

    async def endpoint(self) -> Endpoint:
        """Where decoders send inference notes over the channel (started on the first ask)."""
        if self._listener is None and channel_available():
            self._loop = asyncio.get_running_loop()
            locker = _page_locker(self.engine)
            self._listener = Listener(
                new_address("segmenter", self.key),
                lambda c: serve_inference(c, self._from_channel, locker),
                name="segment",
            )
        return Endpoint(self._listener.address if self._listener else "", self._identity["node_id"])

    def _from_channel(self, note: InferNote, image: np.ndarray) -> Future[Detections]:
        """Called on a channel reader thread: the request joins the event loop's batches."""
        assert self._loop is not None
        request = InferRequest(image, note.conf, note.iou, note.classes)
        return asyncio.run_coroutine_threadsafe(self._segment(note.camera_id, request), self._loop)

    async def _segment(self, camera_id: str, request: InferRequest) -> Detections:
        started = time.perf_counter()
        try:
            result = await self._batcher.submit(request)
        except Exception:
            self._metrics.failure()
            raise
        metrics = self._camera_metrics.get(camera_id)
        if metrics is None:
            metrics = self._camera_metrics[camera_id] = CameraMetrics(camera_id)
        metrics.inference_ms(1000.0 * (time.perf_counter() - started))
        self._per_camera[camera_id] = self._per_camera.get(camera_id, 0) + 1
        return result

    async def infer_image(
        self, image: np.ndarray, conf: float = 0.25, iou: float = 0.7, classes: list[str] | None = None
    ) -> Detections:
        """Segment a single uploaded image (same batches as the cameras)."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError("infer_image takes a BGR uint8 image of shape (H, W, 3)")
        return await self._batcher.submit(InferRequest(image, conf, iou, tuple(classes) if classes else None))

    async def ping(self) -> dict[str, Any]:
        return {**self._identity, "names": self.engine.names}

    async def stats(self) -> dict[str, Any]:
        """Batching figures, engine stage times and frames per camera."""
        return {
            "key": self.key,
            "state": "ready",
            "node_id": self._identity["node_id"],
            "backend": self.engine.backend.name,
            "device": getattr(self.engine.backend, "device", self.engine.config.device),
            "batching": self._batcher.stats(),
            "engine": self.engine.total_timings.as_dict(),
            "frames_per_camera": dict(self._per_camera),
        }

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        await self._batcher.close()
