"""Event rules of EventTracker: K of N, thresholds, area, region, best frame, closing, classes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import cv2
import numpy as np
import pytest

from trtseg.config import CameraConfig
from trtseg.detections import Detections
from trtseg.events import EventRecord, EventTracker
from trtseg.frames import Frame
from trtseg.masks import InstanceMasks

NAMES = {0: "charging_cable", 1: "person", 2: "window"}
H, W = 48, 64
T0 = 1_700_000_000.0


def camera(**events: object) -> CameraConfig:
    rules = {"min_confidence": 0.5, "min_area": 0.01, "window": 5, "min_hits": 3, "close_after_s": 5.0, **events}
    return CameraConfig(
        id="cam1", site="block-7", source="rtsp://127.0.0.1/x", classes=["charging_cable", "person"], events=rules
    )


def frame(ts: float, seq: int = 0, fill: int = 0, infer: bool = True) -> Frame:
    return Frame("cam1", seq, ts, np.full((H, W, 3), fill, np.uint8), infer=infer)


def dets(*items: tuple[int, float, tuple[int, int, int, int]], masks: bool = True) -> Detections:
    """Instances as (class id, score, (x1, y1, x2, y2)); masks are the filled boxes."""
    if not items:
        return Detections.empty((H, W), NAMES, with_masks=masks)
    boxes = np.array([box for _, _, box in items], np.float32)
    mask_arr = np.zeros((len(items), H, W), bool)
    for i, (_, _, (x1, y1, x2, y2)) in enumerate(items):
        mask_arr[i, y1:y2, x1:x2] = True
    return Detections(
        boxes=boxes,
        scores=np.array([s for _, s, _ in items], np.float32),
        class_ids=np.array([c for c, _, _ in items], np.int32),
        masks=InstanceMasks.from_dense(mask_arr) if masks else None,
        names=NAMES,
        frame_shape=(H, W),
    )


CABLE = (0, 0.8, (10, 10, 30, 30))  # 400 px of 3072: 13 % of the frame


def feed(tracker: EventTracker, pattern: str, start: float = T0, step: float = 0.1) -> list[EventRecord]:
    """'x' = a frame with a cable, '.' = an empty frame; returns every record emitted."""
    out: list[EventRecord] = []
    for i, ch in enumerate(pattern):
        out += tracker.update(frame(start + i * step, i), dets(CABLE) if ch == "x" else dets())
    return out


def test_opens_on_k_of_n_and_not_before() -> None:
    tracker = EventTracker(camera(), NAMES)
    assert feed(tracker, "x.x..") == []  # 2 of 5
    assert tracker.open_events == {}
    records = feed(EventTracker(camera(), NAMES), "x.x.x")
    assert [r.status for r in records] == ["open"]
    record = records[0]
    assert record.class_name == "charging_cable" and record.site == "block-7" and record.camera_id == "cam1"
    assert record.frames_seen == 3
    assert record.started_at == datetime.fromtimestamp(T0, UTC)  # the first hit, not the opening frame
    assert len(record.event_id) == 32 and int(record.event_id, 16) >= 0


def test_sparse_hits_never_open() -> None:
    assert feed(EventTracker(camera(), NAMES), "x....x....x....x") == []


def test_confidence_threshold() -> None:
    tracker = EventTracker(camera(min_confidence=0.85), NAMES)
    weak = [tracker.update(frame(T0 + i, i), dets((0, 0.84, (10, 10, 30, 30)))) for i in range(6)]
    assert not any(weak)
    strong = [tracker.update(frame(T0 + 10 + i, i), dets((0, 0.85, (10, 10, 30, 30)))) for i in range(3)]
    assert [r.status for rs in strong for r in rs] == ["open"]


def test_min_area_fraction_of_the_frame() -> None:
    tracker = EventTracker(camera(min_area=0.05), NAMES)  # 5 % = 153.6 px
    small = (0, 0.9, (0, 0, 12, 12))  # 144 px
    large = (0, 0.9, (0, 0, 13, 12))  # 156 px
    assert not any(tracker.update(frame(T0 + i, i), dets(small)) for i in range(5))
    opened = [r for i in range(3) for r in tracker.update(frame(T0 + 10 + i, i), dets(large))]
    assert len(opened) == 1


def test_region_mask_overlap_and_box_centre() -> None:
    left_half = {"points": [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]}
    right = (0, 0.9, (40, 10, 60, 30))
    touching = (0, 0.9, (30, 10, 50, 30))  # mask crosses x = 32
    tracker = EventTracker(camera(region=left_half), NAMES)
    assert not any(tracker.update(frame(T0 + i, i), dets(right)) for i in range(5))
    assert len([r for i in range(3) for r in tracker.update(frame(T0 + 10 + i, i), dets(touching))]) == 1
    # without masks the box centre decides: centre x = 40 is outside, 20 is inside
    boxes_only = EventTracker(camera(region=left_half), NAMES)
    outside = (0, 0.9, (30, 10, 50, 30))
    assert not any(boxes_only.update(frame(T0 + i, i), dets(outside, masks=False)) for i in range(5))
    inside = (0, 0.9, (10, 10, 30, 30))
    opened = [r for i in range(3) for r in boxes_only.update(frame(T0 + 10 + i, i), dets(inside, masks=False))]
    assert len(opened) == 1 and opened[0].instances[0]["polygon"]


def _decoded_fill(jpeg: bytes) -> int:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return round(float(image.mean()))


def test_best_frame_is_key_frame_and_improvements_are_throttled() -> None:
    tracker = EventTracker(camera(min_hits=1, window=1), NAMES)
    scores = [0.6, 0.9, 0.7, 0.95, 0.8]
    records: list[EventRecord] = []
    for i, score in enumerate(scores):  # 0.3 s apart: the 0.95 improvement waits for the 1 s throttle
        ts = T0 + i * 0.3
        annotated = np.full((H, W, 3), 200 - i * 10, np.uint8)
        records += tracker.update(frame(ts, i, fill=i * 40), dets((0, score, (10, 10, 30, 30))), annotated)
    records += tracker.update(frame(T0 + 1.5, 9, fill=250), dets())
    assert [r.status for r in records] == ["open", "open"]
    opened, improved = records
    assert opened.best_confidence == pytest.approx(0.6) and _decoded_fill(opened.keyframe_raw_jpeg or b"") == 0
    assert improved.best_confidence == pytest.approx(0.95)
    assert _decoded_fill(improved.keyframe_raw_jpeg or b"") == 120  # the frame of score 0.95
    assert _decoded_fill(improved.keyframe_annotated_jpeg or b"") == 170
    assert improved.instances[0]["score"] == pytest.approx(0.95, abs=1e-4)
    json.dumps(improved.instances)
    # no new best: no record, and a record without a new best carries no JPEG
    assert tracker.update(frame(T0 + 3.0, 10), dets((0, 0.5, (10, 10, 30, 30)))) == []
    closed = tracker.close_all(T0 + 4.0)
    assert closed[0].status == "closed" and closed[0].keyframe_raw_jpeg is None


def test_tie_in_confidence_prefers_larger_area() -> None:
    tracker = EventTracker(camera(min_hits=1, window=1), NAMES)
    tracker.update(frame(T0, 0, fill=10), dets((0, 0.8, (0, 0, 10, 10))))
    tracker.update(frame(T0 + 2, 1, fill=90), dets((0, 0.8, (0, 0, 20, 20))))
    later = tracker.update(frame(T0 + 4, 2, fill=170), dets((0, 0.8, (0, 0, 15, 15))))
    assert later == []
    (closed,) = tracker.close_all(T0 + 5)
    assert closed.instances[0]["box"] == [0.0, 0.0, 20.0, 20.0]


def test_closes_after_t_without_the_class_by_capture_time() -> None:
    tracker = EventTracker(camera(close_after_s=5.0), NAMES)
    assert [r.status for r in feed(tracker, "xxx", start=T0, step=1.0)] == ["open"]
    last_seen = T0 + 2.0
    for k, ts in enumerate([T0 + 3, T0 + 5, T0 + 6.99]):
        assert tracker.update(frame(ts, 10 + k), dets()) == []
    (closed,) = tracker.update(frame(T0 + 7.0, 20), dets())
    assert closed.status == "closed" and closed.frames_seen == 3
    assert closed.ended_at == closed.last_seen_at == datetime.fromtimestamp(last_seen, UTC)
    assert tracker.open_events == {}
    # a new sighting later is a new event
    again = feed(tracker, "xxx", start=T0 + 100)
    assert [r.status for r in again] == ["open"] and again[0].event_id != closed.event_id


def test_frames_not_inferred_do_not_count_but_still_close() -> None:
    tracker = EventTracker(camera(), NAMES)
    for i in range(10):
        assert tracker.update(frame(T0 + i * 0.1, i, infer=False), dets(CABLE)) == []
    feed(tracker, "xxx", start=T0 + 2)
    assert tracker.open_events
    (closed,) = tracker.update(frame(T0 + 30, 99, infer=False), dets())
    assert closed.status == "closed"


def test_several_classes_are_separate_events() -> None:
    tracker = EventTracker(camera(close_after_s=2.0), NAMES)
    both = dets(CABLE, (1, 0.9, (40, 5, 60, 45)), (2, 0.99, (0, 0, 60, 40)))  # class 2 is not of interest
    records = [r for i in range(3) for r in tracker.update(frame(T0 + i * 0.1, i), both)]
    assert sorted(r.class_name for r in records) == ["charging_cable", "person"]
    assert len({r.event_id for r in records}) == 2
    person_only = dets((1, 0.9, (40, 5, 60, 45)))
    records = [r for i in range(30) for r in tracker.update(frame(T0 + 1 + i * 0.1, i), person_only)]
    assert [(r.class_name, r.status) for r in records] == [("charging_cable", "closed")]
    assert set(tracker.open_events) == {"person"}
    closed = tracker.close_all(T0 + 10)
    assert [(r.class_name, r.status) for r in closed] == [("person", "closed")]


def test_record_json_round_trip() -> None:
    (record,) = feed(EventTracker(camera(), NAMES), "xxx")
    again = EventRecord.from_json(record.to_json())
    assert again.keyframe_raw_jpeg is None
    assert (again.event_id, again.started_at, again.instances) == (record.event_id, record.started_at, record.instances)
