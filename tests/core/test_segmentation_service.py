"""The segmentation service without Ray: batching across cameras, the channel, the GIL setting."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from engines.engine import StageTimings
from trtseg.channel import Connection, FrameSlots, channel_available
from trtseg.config import EngineConfig
from trtseg.detections import Detections
from trtseg.handoff_messages import InferNote, InferReply, RingAnnounce
from trtseg.pipeline import InferRequest
from trtseg.segmentation import SegmentationService


class CountingEngine:
    """Answers each frame with no detections and remembers the batches it was given."""

    max_batch = 8
    concurrent_batches = 1

    def __init__(self) -> None:
        self.names = {0: "charging_cable"}
        self.batches: list[int] = []
        self.total_timings = StageTimings()
        self.backend = type("Backend", (), {"name": "counting", "device": "cpu"})()
        self.config = EngineConfig()

    def predict(self, images: list[np.ndarray], *args: Any, **kwargs: Any) -> list[Detections]:
        self.batches.append(len(images))
        self.total_timings.add(StageTimings(infer_ms=1.0, frames=len(images), batches=1))
        return [Detections.empty(image.shape[:2]) for image in images]


@pytest.fixture
def restore_switch_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_frames_of_many_cameras_share_batches_and_are_counted(restore_switch_interval: None) -> None:
    engine = CountingEngine()
    service = SegmentationService(engine, EngineConfig(batch_size=8, max_wait_ms=50), "t")

    async def run() -> list[Detections]:
        image = np.zeros((36, 64, 3), np.uint8)
        found = await asyncio.gather(*(service.segment(f"cam{i % 3}", InferRequest(image)) for i in range(6)))
        await service.close()
        return list(found)

    found = asyncio.run(run())
    assert len(found) == 6 and all(len(d) == 0 for d in found)
    assert sum(engine.batches) == 6 and max(engine.batches) > 1  # cameras batched together
    stats = service.stats()
    assert stats["frames_per_camera"] == {"cam0": 2, "cam1": 2, "cam2": 2}
    assert stats["engine"]["frames"] == 6 and stats["batching"]["items"] == 6


def test_the_switch_interval_is_set_only_when_configured(restore_switch_interval: None) -> None:
    before = sys.getswitchinterval()
    SegmentationService(CountingEngine(), EngineConfig(), "t")
    assert sys.getswitchinterval() == before
    SegmentationService(CountingEngine(), EngineConfig(switch_interval_ms=20), "t")
    assert sys.getswitchinterval() == pytest.approx(0.020)


@pytest.mark.skipif(not channel_available(), reason="the node-local channel needs Linux")
def test_a_decoder_over_the_channel_gets_its_answer(restore_switch_interval: None) -> None:
    engine = CountingEngine()
    service = SegmentationService(engine, EngineConfig(batch_size=4, max_wait_ms=1), "t")
    answers: list[InferReply] = []

    def decoder(address: str) -> None:
        ring = FrameSlots((36, 64, 3), 1)
        connection = Connection.connect(address)
        connection.send(RingAnnounce(ring.info), (ring.fd,))
        ring.write(0, np.full((36, 64, 3), 7, np.uint8))
        connection.send(InferNote("cam0", 5, ring.info.ring_id, 0, 0.25, 0.7, None))
        message, _ = connection.recv()
        answers.append(message)
        connection.close()
        ring.close()

    async def run() -> None:
        address = service.listen()
        thread = threading.Thread(target=decoder, args=(address,))
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.01)
        await service.close()

    asyncio.run(run())
    (reply,) = answers
    assert reply.seq == 5 and reply.error is None and reply.detections is not None
    assert engine.batches == [1] and service.stats()["frames_per_camera"] == {"cam0": 1}
