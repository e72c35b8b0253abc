"""Per-camera pipeline logic without Ray: grouped batch inference and the camera's output stage."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.engine import SegmentationEngine
from tests.actors.system_helpers import MODEL
from trtseg.config import CameraConfig, EngineConfig, PusherConfig
from trtseg.detections import Detections
from trtseg.events import EventRecord
from trtseg.frames import Frame
from trtseg.masks import InstanceMasks
from trtseg.pipeline import (
    MAX_FRAMES_IN_FLIGHT,
    CameraOutput,
    InferRequest,
    frames_in_flight_limit,
    infer_grouped,
    stream_targets,
)


@pytest.fixture(scope="module")
def engine() -> SegmentationEngine:
    if not MODEL.is_file():
        pytest.skip("models/trtseg-cable-n.onnx is missing")
    return SegmentationEngine(EngineConfig(model=MODEL, intra_op_threads=1)).load()


@pytest.fixture(scope="module")
def scenes() -> list[np.ndarray]:
    from datasets.scenes import SceneConfig, generate_scene

    return [generate_scene(seed, SceneConfig(size=(480, 288))).image for seed in (1, 2, 3)]


def _same(a: Detections, b: Detections) -> None:
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-3)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1.0)


def test_grouped_batch_equals_separate_calls(engine: SegmentationEngine, scenes: list[np.ndarray]) -> None:
    first, second, third = scenes
    requests = [
        InferRequest(first, conf=0.25, iou=0.7),
        InferRequest(second, conf=0.6, iou=0.7),  # shares the call above at conf 0.25, cut at 0.6 after
        InferRequest(third, conf=0.25, iou=0.5),
        InferRequest(first, conf=0.25, iou=0.7, classes=("charging_cable",)),
        InferRequest(second, conf=0.4, iou=0.7),
    ]
    got = infer_grouped(engine, requests)
    assert len(got) == len(requests)
    for request, result in zip(requests, got, strict=True):
        expected = engine.predict([request.image], conf=request.conf, iou=request.iou, classes=request.classes)[0]
        _same(result, expected)
        assert result.frame_shape == request.image.shape[:2]
    assert sum(len(r) for r in got) > 0, "the scenes hold objects the model finds"
    assert all(float(s) >= 0.6 for s in got[1].scores)
    assert set(got[3].class_names) <= {"charging_cable"}


def test_grouped_batch_refuses_unknown_classes(engine: SegmentationEngine, scenes: list[np.ndarray]) -> None:
    with pytest.raises(ValueError, match="unknown class"):
        infer_grouped(engine, [InferRequest(scenes[0], classes=("no_such_class",))])


def _camera(**extra: object) -> CameraConfig:
    events = {"window": 3, "min_hits": 2, "min_confidence": 0.3, "min_area": 0.0, "close_after_s": 60}
    return CameraConfig(id="cam-x", source="rtsp://example/stream", push="none", events=events, **extra)


def _cable(shape: tuple[int, int], score: float) -> Detections:
    height, width = shape
    mask = np.zeros((1, height, width), bool)
    mask[0, 40:120, 100:110] = True
    return Detections(
        boxes=np.array([[100, 40, 110, 120]], np.float32),
        scores=np.array([score], np.float32),
        class_ids=np.array([0], np.int32),
        masks=InstanceMasks.from_dense(mask),
        names={0: "charging_cable", 1: "ebike"},
        frame_shape=shape,
    )


def _frame(seq: int, image: np.ndarray, infer: bool = True) -> Frame:
    return Frame("cam-x", seq, time.time(), image, pts_s=seq / 10, infer=infer, meta={"fps": 10.0})


def test_camera_output_annotates_pushes_and_raises_events(tmp_path: Path) -> None:
    sent: list[EventRecord] = []
    output = CameraOutput(_camera(), PusherConfig(hls_dir=tmp_path), {0: "charging_cable", 1: "ebike"}, sent.extend)
    image = np.full((240, 320, 3), 90, np.uint8)
    assert output.latest_jpeg() is None

    output.process(_frame(0, image), _cable((240, 320), 0.9))
    assert sent == [], "one hit of two is not an event yet"
    output.process(_frame(1, image, infer=False), None)  # drawn with the last detections, no event step
    latency = output.process(_frame(2, image), _cable((240, 320), 0.8))
    assert latency >= 0
    assert [r.status for r in sent] == ["open"] and sent[0].class_name == "charging_cable"
    assert sent[0].keyframe_annotated_jpeg and sent[0].keyframe_raw_jpeg

    jpeg = output.latest_jpeg()
    assert jpeg is not None and output.latest_jpeg() is jpeg, "encoded once per frame"
    picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (240, 320, 3)
    assert np.abs(picture.astype(int) - 90).max() > 60, "the mask and box are drawn on the picture"

    stats = output.stats()
    assert stats["frames"] == 3 and stats["inferred"] == 2 and stats["events"] == 1
    assert stats["push"]["frames_in"] == 3

    output.close()
    assert [r.status for r in sent][-1] == "closed", "closing the camera closes its open event"


def test_failed_inference_is_counted_and_the_frame_still_pushed(tmp_path: Path) -> None:
    output = CameraOutput(_camera(), PusherConfig(hls_dir=tmp_path), {0: "charging_cable"})
    output.process(_frame(0, np.zeros((64, 96, 3), np.uint8)), None, infer_failed=True)
    stats = output.stats()
    assert stats["infer_errors"] == 1 and stats["frames"] == 1
    output.close()


def test_stream_targets_hide_credentials(tmp_path: Path) -> None:
    pusher = PusherConfig(hls_dir=tmp_path)
    assert stream_targets(_camera(), pusher) == {}
    hls = CameraConfig(id="c1", source="rtsp://h/s", push="hls")
    assert stream_targets(hls, pusher) == {"hls": str(tmp_path / "c1" / "index.m3u8")}
    rtmp = CameraConfig(id="c2", source="rtsp://h/s", push="rtmp://user:secret@media:1935/live/c2")
    assert "secret" not in stream_targets(rtmp, pusher)["rtmp"]


def test_metrics_are_a_no_op_outside_ray() -> None:
    from trtseg.metrics import CameraMetrics, SegmenterMetrics

    CameraMetrics("cam-x").count("frames_pushed")
    CameraMetrics("cam-x").capture_to_push_ms(12.0)
    SegmenterMetrics("seg").batch(4, 0.01)


def test_frames_in_flight_make_room_for_an_inference_interval() -> None:
    every_frame = CameraConfig(id="a", source="rtsp://h/x")
    interval = CameraConfig(id="b", source="rtsp://h/x", inference_fps=5)
    assert frames_in_flight_limit(2, every_frame, 25.0) == 2
    assert frames_in_flight_limit(2, interval, 25.0) == 2 + 5
    assert frames_in_flight_limit(3, interval, 30.0) == 3 + 6
    assert frames_in_flight_limit(2, interval, 0.0) == 2 + 5  # rate not known yet: 25 fps assumed
    slow = CameraConfig(id="c", source="rtsp://h/x", inference_fps=0.1)
    assert frames_in_flight_limit(2, slow, 25.0) == MAX_FRAMES_IN_FLIGHT
