"""A camera's hand-off over the channel: real sockets, real shared memory, real threads, no Ray.

The 'segmenter' here reads the picture from its slot and reports its mean grey value as the score
of one box, so each test can tell that detections went with the frame they were made from.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pytest

from tests.core.gpu_doubles import DeviceImage, RecordingLocker
from trtseg.channel import Listener, channel_available, new_address
from trtseg.detections import Detections
from trtseg.frames import Frame
from trtseg.handoff import ChannelHandoff, Endpoint, InferNote, serve_frames, serve_inference

pytestmark = pytest.mark.skipif(not channel_available(), reason="the channel needs Linux (memfd, abstract sockets)")

NODE = "node-a"


class FakePusher:
    """The pusher's side as the actor runs it: ``serve_frames`` on a listener, frames recorded."""

    def __init__(self, delay_s: float = 0.0, fail_on: set[int] | None = None) -> None:
        self.address = new_address("pusher", "test")
        self.frames: list[tuple[int, int, float | None, bool]] = []  # seq, grey value, score, infer_failed
        self.delay_s = delay_s
        self.fail_on = fail_on or set()
        self.listener = Listener(self.address, lambda c: serve_frames(c, self.process), name="pusher")

    def process(self, frame: Frame, detections: Detections | None, failed: bool) -> float:
        time.sleep(self.delay_s)
        if frame.seq in self.fail_on:
            raise RuntimeError(f"encoder refused frame {frame.seq}")
        score = float(detections.scores[0]) if detections is not None and len(detections) else None
        self.frames.append((frame.seq, int(frame.image[0, 0, 0]), score, failed))
        return 1.0

    def endpoint(self) -> Endpoint:
        return Endpoint(self.address, NODE)


class FakeSegmenter:
    def __init__(
        self, delay_s: float = 0.0, fail_on: set[int] | None = None, locker: RecordingLocker | None = None
    ) -> None:
        self.address = new_address("segmenter", "test")
        self.delay_s = delay_s
        self.fail_on = fail_on or set()
        self.seen: list[InferNote] = []
        self.pool = ThreadPoolExecutor(4)
        self.listener = Listener(self.address, lambda c: serve_inference(c, self.submit, locker), name="segmenter")

    def submit(self, note: InferNote, image: np.ndarray) -> Future[Detections]:
        self.seen.append(note)
        return self.pool.submit(self._infer, note.seq, image)

    def _infer(self, seq: int, image: np.ndarray) -> Detections:
        time.sleep(self.delay_s)
        if seq in self.fail_on:
            raise RuntimeError(f"engine failed on {seq}")
        return Detections(
            boxes=np.array([[0, 0, 2, 2]], np.float32),
            scores=np.array([float(image.mean())], np.float32),
            class_ids=np.array([0], np.int32),
            frame_shape=image.shape[:2],
        )

    def endpoint(self) -> Endpoint:
        return Endpoint(self.address, NODE)

    def close(self) -> None:
        self.listener.close()
        self.pool.shutdown(wait=False)


def _frame(seq: int, infer: bool = True, shape: tuple[int, int] = (8, 10)) -> Frame:
    image = np.full((*shape, 3), seq % 250, np.uint8)
    return Frame("cam", seq, time.time(), image, pts_s=seq / 25, infer=infer)


def _wait(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def _run(handoff: ChannelHandoff, frames: list[Frame], limit: int = 3) -> None:
    for frame in frames:
        assert handoff.wait_room(limit, timeout_s=10.0)
        assert handoff.submit(frame, slots_wanted=limit + 1)
    assert handoff.drain(10.0)


def test_frames_reach_the_pusher_in_order_with_their_own_detections() -> None:
    pusher, segmenter = FakePusher(), FakeSegmenter(delay_s=0.02)
    handoff = ChannelHandoff("cam", pusher.endpoint, segmenter.endpoint, NODE, thresholds=(0.4, 0.6, ("person",)))
    # Every third frame is inferred: the ones after it wait behind it although they need nothing.
    frames = [_frame(i, infer=i % 3 == 0) for i in range(30)]
    _run(handoff, frames)
    assert [f[0] for f in pusher.frames] == list(range(30))
    for seq, grey, score, failed in pusher.frames:
        assert grey == seq % 250  # the picture of this frame, not of a reused slot
        assert not failed
        assert (score is not None) == (seq % 3 == 0)
        if score is not None:
            assert score == pytest.approx(seq % 250)
    assert {(n.conf, n.iou, n.classes) for n in segmenter.seen} == {(0.4, 0.6, ("person",))}
    assert handoff.figures.completed == 30 and handoff.in_flight == 0
    stats = handoff.stats()
    assert stats["channel_pusher"]["connected"] and stats["channel_segmenter"]["connected"]
    handoff.close()
    segmenter.close()
    pusher.listener.close()


def test_gpu_pictures_go_straight_into_page_locked_slots() -> None:
    """NVDEC frames: each downloaded once, into its slot of a ring the decoder and segmenter page-lock."""
    reader_locker, locker = RecordingLocker(), RecordingLocker()
    pusher, segmenter = FakePusher(), FakeSegmenter(locker=reader_locker)
    handoff = ChannelHandoff("cam", pusher.endpoint, segmenter.endpoint, NODE, locker=locker)
    frames = [dataclasses.replace(f, image=DeviceImage(f.image)) for f in (_frame(i) for i in range(12))]
    _run(handoff, frames)
    assert [(seq, grey, score) for seq, grey, score, _ in pusher.frames] == [(i, i, i) for i in range(12)]
    assert all(frame.image.downloads == 1 for frame in frames)
    assert handoff.stats()["channel_ring_page_locked"] is True
    assert len(locker.registered) == 1 and len(reader_locker.registered) == 1
    handoff.close()
    segmenter.close()
    pusher.listener.close()
    assert locker.unregistered == [locker.registered[0][0]]
    _wait(lambda: reader_locker.unregistered == [reader_locker.registered[0][0]])


def test_in_flight_stays_within_the_limit_and_slots_are_reused() -> None:
    pusher = FakePusher(delay_s=0.01)
    handoff = ChannelHandoff("cam", pusher.endpoint, None, NODE)
    peak = 0
    for i in range(40):
        assert handoff.wait_room(2, timeout_s=10.0)
        handoff.submit(_frame(i, infer=False), slots_wanted=3)
        peak = max(peak, handoff.in_flight)
    handoff.drain(10.0)
    assert peak <= 2
    assert handoff.figures.rings == 1  # one ring of three slots served forty frames
    assert [f[1] for f in pusher.frames] == [i % 250 for i in range(40)]
    handoff.close()
    pusher.listener.close()


def test_a_failed_inference_still_pushes_the_frame() -> None:
    pusher, segmenter = FakePusher(), FakeSegmenter(fail_on={2})
    handoff = ChannelHandoff("cam", pusher.endpoint, segmenter.endpoint, NODE)
    _run(handoff, [_frame(i) for i in range(5)])
    assert [(f[0], f[3]) for f in pusher.frames] == [(0, False), (1, False), (2, True), (3, False), (4, False)]
    assert handoff.figures.infer_failed == 1
    handoff.close()
    segmenter.close()
    pusher.listener.close()


def test_a_segmenter_that_goes_away_fails_only_the_frames_it_held() -> None:
    pusher, segmenter = FakePusher(), FakeSegmenter(delay_s=5.0)
    handoff = ChannelHandoff("cam", pusher.endpoint, segmenter.endpoint, NODE)
    for i in range(2):
        handoff.submit(_frame(i), slots_wanted=4)
    _wait(lambda: len(segmenter.seen) == 2)
    segmenter.close()  # its process is gone: the decoder must not wait out the timeout
    started = time.monotonic()
    assert handoff.drain(5.0)
    assert time.monotonic() - started < 2.0
    assert [(f[0], f[3]) for f in pusher.frames] == [(0, True), (1, True)]
    assert handoff.figures.infer_failed == 2
    handoff.close()
    pusher.listener.close()


def test_detections_that_never_come_time_out() -> None:
    pusher, segmenter = FakePusher(), FakeSegmenter(delay_s=3.0)
    handoff = ChannelHandoff("cam", pusher.endpoint, segmenter.endpoint, NODE, detections_timeout_s=0.2)
    handoff.submit(_frame(0), slots_wanted=3)
    handoff.submit(_frame(1, infer=False), slots_wanted=3)
    assert handoff.drain(5.0)
    assert [(f[0], f[3]) for f in pusher.frames] == [(0, True), (1, False)]
    assert handoff.figures.infer_timeouts == 1
    handoff.close()
    segmenter.close()
    pusher.listener.close()


def test_frames_wait_for_a_segmenter_that_is_not_up_yet() -> None:
    pusher, segmenter = FakePusher(), FakeSegmenter()
    ready = threading.Event()
    handoff = ChannelHandoff("cam", pusher.endpoint, lambda: segmenter.endpoint() if ready.is_set() else None, NODE)
    handoff.submit(_frame(0), slots_wanted=3)
    time.sleep(0.2)
    assert pusher.frames == []  # held, not pushed without detections
    ready.set()
    time.sleep(1.1)  # the next try to connect is due
    handoff.submit(_frame(1), slots_wanted=3)
    assert handoff.drain(5.0)
    assert [(f[0], f[2] is not None, f[3]) for f in pusher.frames] == [(0, True, False), (1, True, False)]
    handoff.close()
    segmenter.close()
    pusher.listener.close()


def test_a_restarted_pusher_is_found_again_and_lost_frames_are_counted() -> None:
    first = FakePusher(delay_s=0.5)
    current = {"pusher": first}
    handoff = ChannelHandoff("cam", lambda: current["pusher"].endpoint(), None, NODE)
    handoff.submit(_frame(0, infer=False), slots_wanted=3)
    _wait(lambda: handoff.in_flight == 1)
    first.listener.close()  # the pusher's process died with frame 0 in flight
    _wait(lambda: handoff.in_flight == 0)
    assert handoff.figures.lost == 1
    current["pusher"] = second = FakePusher()
    time.sleep(1.1)
    assert handoff.submit(_frame(1, infer=False), slots_wanted=3)
    assert handoff.drain(5.0)
    assert [f[0] for f in second.frames] == [1]
    assert handoff.stats()["channel_pusher"]["connects"] == 2
    handoff.close()
    second.listener.close()


def test_a_new_picture_size_gets_a_new_ring_and_old_frames_stay_right() -> None:
    pusher, segmenter = FakePusher(delay_s=0.01), FakeSegmenter()
    handoff = ChannelHandoff("cam", pusher.endpoint, segmenter.endpoint, NODE)
    frames = [_frame(i, shape=(8, 10) if i < 5 else (6, 4)) for i in range(10)]
    _run(handoff, frames)
    assert [f[1] for f in pusher.frames] == list(range(10))
    assert [f[2] for f in pusher.frames] == pytest.approx([float(i) for i in range(10)])
    assert handoff.figures.rings == 2
    handoff.close()
    segmenter.close()
    pusher.listener.close()


def test_an_endpoint_on_another_node_asks_for_the_object_store() -> None:
    pusher = FakePusher()
    handoff = ChannelHandoff("cam", lambda: Endpoint(pusher.address, "node-b"), None, NODE)
    assert not handoff.submit(_frame(0, infer=False), slots_wanted=3)
    assert handoff.needs_object_store
    assert "node-b" in handoff.stats()["channel_pusher"]["last_error"]
    handoff.close()
    pusher.listener.close()


def test_a_frame_the_pusher_fails_on_is_counted_and_the_stream_goes_on() -> None:
    pusher = FakePusher(fail_on={1})
    handoff = ChannelHandoff("cam", pusher.endpoint, None, NODE)
    _run(handoff, [_frame(i, infer=False) for i in range(4)])
    assert [f[0] for f in pusher.frames] == [0, 2, 3]
    assert handoff.figures.completed == 4 and handoff.figures.push_errors == 1
    assert "encoder refused frame 1" in (handoff.stats()["channel_last_push_error"] or "")
    handoff.close()
    pusher.listener.close()
