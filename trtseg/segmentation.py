"""The segmentation service: one engine batching the frames of many cameras (no Ray in here).

``actors.segmenter.SegmenterActor`` is its Ray shell; ``bench/bench_segmenter.py`` drives it in
one process with decoder-like clients in others, to measure the host side of a batch (gathering
frames from the rings, the event loop, the hand-back of detections) against the engine alone.

Frames arrive over the node-local channel (``trtseg.handoff_serve.serve_inference``: one reader
thread per camera, each note handed to the event loop) or as ``segment`` calls. The ``Batcher``
fills a batch from concurrent requests and runs the engine in worker threads (two batches at once
on the GPU engine, whose post-processing of one overlaps the network of the next).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from concurrent.futures import Future
from functools import partial
from typing import Any

import numpy as np

from trtseg.batching import Batcher
from trtseg.channel import Listener, PageLocker, channel_available, new_address
from trtseg.config import EngineConfig
from trtseg.detections import Detections
from trtseg.handoff_messages import InferNote
from trtseg.handoff_serve import serve_inference
from trtseg.metrics import CameraMetrics, SegmenterMetrics
from trtseg.pipeline import InferRequest, infer_grouped

logger = logging.getLogger(__name__)


class SegmentationService:
    """Holds one engine (the GPU pipeline for GPU backends) and batches the cameras' frames into it.

    ``engine`` is loaded (``engines.gpu.pipeline.load_engine``); ``locker`` page-locks the decoders'
    rings for a GPU engine. Its coroutines run on one event loop; call ``listen`` from that loop.
    """

    def __init__(self, engine: Any, config: EngineConfig, key: str, locker: PageLocker | None = None) -> None:
        self.key = key
        if config.switch_interval_ms is not None:
            sys.setswitchinterval(config.switch_interval_ms / 1000.0)
        self.engine = engine
        self._locker = locker
        self.metrics = SegmenterMetrics(key)
        self._camera_metrics: dict[str, CameraMetrics] = {}
        self.batcher: Batcher[InferRequest, Detections] = Batcher(
            partial(infer_grouped, self.engine),
            max_batch=min(config.batch_size, self.engine.max_batch),
            max_wait_ms=config.max_wait_ms,
            name=f"segmenter-{key}",
            observer=self.metrics.batch,
            max_inflight=self.engine.concurrent_batches,
        )
        self._per_camera: dict[str, int] = {}
        self._listener: Listener | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def listen(self) -> str:
        """The channel address decoders send inference notes to ('' without a channel), started once."""
        if self._listener is None and channel_available():
            self._loop = asyncio.get_running_loop()
            self._listener = Listener(
                new_address("segmenter", self.key),
                lambda c: serve_inference(c, self._from_channel, self._locker),
                name="segment",
            )
        return self._listener.address if self._listener else ""

    def _from_channel(self, note: InferNote, image: np.ndarray) -> Future[Detections]:
        """Called on a channel reader thread: the request joins the event loop's batches."""
        assert self._loop is not None
        request = InferRequest(image, note.conf, note.iou, note.classes)
        return asyncio.run_coroutine_threadsafe(self.segment(note.camera_id, request), self._loop)

    async def segment(self, camera_id: str, request: InferRequest) -> Detections:
        """Segment one camera frame (batched with other cameras' concurrent frames)."""
        started = time.perf_counter()
        try:
            result = await self.batcher.submit(request)
        except Exception:
            self.metrics.failure()
            raise
        metrics = self._camera_metrics.get(camera_id)
        if metrics is None:
            metrics = self._camera_metrics[camera_id] = CameraMetrics(camera_id)
        metrics.inference_ms(1000.0 * (time.perf_counter() - started))
        self._per_camera[camera_id] = self._per_camera.get(camera_id, 0) + 1
        return result

    def stats(self) -> dict[str, Any]:
        """Batching figures, engine stage times and frames per camera."""
        return {
            "key": self.key,
            "state": "ready",
            "backend": self.engine.backend.name,
            "device": getattr(self.engine.backend, "device", self.engine.config.device),
            "batching": self.batcher.stats(),
            "engine": self.engine.total_timings.as_dict(),
            "frames_per_camera": dict(self._per_camera),
        }

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        await self.batcher.close()
