"""The segmentation actor: one per GPU (or a few CPU ones), batching frames of many cameras.

A thin Ray shell around ``trtseg.segmentation.SegmentationService``: an async actor with high
``max_concurrency``, so every camera's frame can wait on the service's batcher at once.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import ray

from actors.common import identity
from engines.gpu.pipeline import load_engine
from trtseg.config import EngineConfig
from trtseg.detections import Detections
from trtseg.frames import Frame
from trtseg.handoff import Endpoint
from trtseg.pipeline import InferRequest
from trtseg.segmentation import SegmentationService

logger = logging.getLogger(__name__)

MAX_CONCURRENCY = 1000


@ray.remote
class SegmenterActor:
    """Holds one engine (the GPU pipeline for GPU backends) and batches the cameras' frames into it."""

    def __init__(self, engine: EngineConfig, key: str) -> None:
        self.key = key
        self._identity = identity("segmenter", key)
        loaded, locker = load_engine(engine)
        self.service = SegmentationService(loaded, engine, key, locker)
        self.engine = loaded
        logger.info("segmenter ready key=%s node=%s", key, self._identity["node_id"])

    async def infer(
        self, frame: Frame, conf: float = 0.25, iou: float = 0.7, classes: list[str] | None = None
    ) -> Detections:
        """Segment one camera frame (batched with other cameras' concurrent frames)."""
        request = InferRequest(frame.image, conf, iou, tuple(classes) if classes else None)
        return await self.service.segment(frame.camera_id, request)

    async def endpoint(self) -> Endpoint:
        """Where decoders send inference notes over the channel (started on the first ask)."""
        return Endpoint(self.service.listen(), self._identity["node_id"])

    async def infer_image(
        self, image: np.ndarray, conf: float = 0.25, iou: float = 0.7, classes: list[str] | None = None
    ) -> Detections:
        """Segment a single uploaded image (same batches as the cameras)."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError("infer_image takes a BGR uint8 image of shape (H, W, 3)")
        return await self.service.batcher.submit(InferRequest(image, conf, iou, tuple(classes) if classes else None))

    async def ping(self) -> dict[str, Any]:
        return {**self._identity, "names": self.engine.names}

    async def stats(self) -> dict[str, Any]:
        """Batching figures, engine stage times and frames per camera."""
        return {**self.service.stats(), "node_id": self._identity["node_id"]}

    async def close(self) -> None:
        await self.service.close()
