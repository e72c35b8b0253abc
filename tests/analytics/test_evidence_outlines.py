"""The outline track an incident keeps for the clip overlay: simplified, normalised, at a bounded pace
and count, copied on write, carried in the records through the JSON round trip, and resumed."""

from __future__ import annotations

import dataclasses
import itertools
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest

from tests.analytics.helpers import NAMES, T0, cable_at, camera, objects
from tests.analytics.test_rules import FAST_TRACKER, ORIGIN, make, run
from trtseg.analytics.camera import CameraAnalytics
from trtseg.analytics.evidence import OUTLINE_KEY, OutlineRecorder, outlines_of, simplified_outline
from trtseg.analytics.records import IncidentRecord
from trtseg.detections import Detections
from trtseg.masks import InstanceMasks


def _disk(h: int = 200, w: int = 400, centre: tuple[int, int] = (300, 100), radius: int = 60) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    cv2.circle(mask, centre, radius, 1, cv2.FILLED)
    return mask


def test_a_round_mask_becomes_a_few_normalised_points_around_it() -> None:
    polygon = simplified_outline(_disk(), (0, 0), (200, 400), max_points=12)
    assert 4 <= len(polygon) <= 12
    xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
    assert min(xs) == pytest.approx(240 / 400, abs=0.01) and max(xs) == pytest.approx(360 / 400, abs=0.01)
    assert min(ys) == pytest.approx(40 / 200, abs=0.01) and max(ys) == pytest.approx(160 / 200, abs=0.01)
    assert simplified_outline(np.zeros((5, 5), np.uint8), (0, 0), (200, 400), 12) == []


def test_a_crop_is_placed_by_its_origin_and_the_largest_part_wins() -> None:
    full = np.zeros((100, 200), bool)
    full[10:20, 30:40] = True  # small part
    full[40:90, 100:180] = True  # large part
    detections = Detections(
        boxes=np.array([[30, 10, 180, 90]], np.float32),
        scores=np.array([0.9], np.float32),
        class_ids=np.array([0], np.int32),
        masks=InstanceMasks.from_dense(full[None]),
        names=NAMES,
        frame_shape=(100, 200),
    )
    (polygon,) = outlines_of(detections, max_objects=4, max_points=16)
    xs, ys = sorted({p[0] for p in polygon}), sorted({p[1] for p in polygon})
    assert xs[0] == pytest.approx(0.5) and xs[-1] == pytest.approx(179 / 200)
    assert ys[0] == pytest.approx(0.4) and ys[-1] == pytest.approx(89 / 100)


def _incident(started: float) -> Any:
    return SimpleNamespace(incident_id="inc-1", key=("r", 1), rule="r", started_ts=started, details={})


def _obs(detections: Detections | None) -> Any:
    return SimpleNamespace(key=("r", 1), detections=detections)


def test_samples_are_paced_and_bounded_over_a_long_incident() -> None:
    shapes = [("safe", [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0)], True)]
    recorder = OutlineRecorder(lambda rule: shapes, every_s=0.2, max_samples=20)
    incident = _incident(T0)
    found = objects(cable_at(0.5))
    for i in range(25 * 60):  # one minute at 25 fps
        recorder.observe({("r", 1): incident}, [_obs(found)], T0 + i / 25, [])
    track = incident.details[OUTLINE_KEY]
    samples = track["samples"]
    assert len(samples) <= 20
    times = [s[0] for s in samples]
    assert times[0] == 0.0 and times[-1] >= 55.0  # the whole span is kept, at a coarser pace
    assert min(b - a for a, b in itertools.pairwise(times)) >= track["every_s"] / 2 - 1e-6
    assert track["every_s"] > 0.2 and track["t0"] == T0
    assert track["shapes"] == [{"name": "safe", "points": [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0]], "closed": True}]
    assert all(len(poly) <= 16 for _, polys in samples for poly in polys)
    # a fresh incident at 25 fps is sampled at most 5 times a second
    second = _incident(T0)
    for i in range(25):
        recorder.observe({("r", 1): second}, [_obs(found)], T0 + i / 25, [])
    assert len(second.details[OUTLINE_KEY]["samples"]) == 5


def test_nothing_is_recorded_without_an_object_or_an_open_incident() -> None:
    recorder = OutlineRecorder(lambda rule: [])
    incident = _incident(T0)
    recorder.observe({("r", 1): incident}, [_obs(None)], T0, [])
    recorder.observe({}, [_obs(objects(cable_at(0.5)))], T0, [])
    assert OUTLINE_KEY not in incident.details and recorder.samples == 0
    with pytest.raises(ValueError, match="max_samples"):
        OutlineRecorder(lambda rule: [], max_samples=1)


def test_a_record_handed_out_keeps_its_version_and_this_frames_records_get_the_new_one() -> None:
    recorder = OutlineRecorder(lambda rule: [])
    incident = _incident(T0)
    found = objects(cable_at(0.5))
    recorder.observe({("r", 1): incident}, [_obs(found)], T0, [])
    earlier = dict(incident.details)  # what a record made now holds (IncidentBook copies details)
    record = SimpleNamespace(incident_id="inc-1", details={})
    recorder.observe({("r", 1): incident}, [_obs(found)], T0 + 0.5, [record])
    assert len(earlier[OUTLINE_KEY]["samples"]) == 1
    assert len(record.details[OUTLINE_KEY]["samples"]) == 2


def _stored(record: IncidentRecord) -> IncidentRecord:
    return IncidentRecord.from_json(dataclasses.replace(record, keyframes={}).to_json())


def test_a_camera_records_the_outline_of_its_incident_and_the_zone() -> None:
    analytics = make([{**ORIGIN, "close_after_s": 1.0}])
    records = run(analytics, [objects(cable_at(0.6))] * 20 + [objects()] * 10)  # 5 inferred frames a second
    opened, closed = records[0], records[-1]
    assert closed.status == "closed" and closed.incident_id == opened.incident_id
    track = _stored(closed).details[OUTLINE_KEY]
    assert track["shapes"][0]["name"] == "safe" and track["shapes"][0]["closed"] is True
    assert track["t0"] == pytest.approx(opened.started_at.timestamp(), abs=1e-3)
    assert 15 <= len(track["samples"]) <= 20  # one per inferred frame at 5 Hz while it was seen
    _, (polygon,) = track["samples"][-1]
    xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
    # cable_at(0.6): x 84..124 of 200, y 40..50 of 100
    assert min(xs) == pytest.approx(0.42, abs=0.01) and max(xs) == pytest.approx(0.615, abs=0.01)
    assert min(ys) == pytest.approx(0.40, abs=0.01) and max(ys) == pytest.approx(0.49, abs=0.01)
    assert OUTLINE_KEY in opened.details  # the first record carries the first outline
    # after a restart, the resumed incident goes on with the track it had
    restarted = CameraAnalytics(camera([{**ORIGIN, "close_after_s": 2.0}], analytics=FAST_TRACKER), NAMES,
                                resume=[_stored(records[len(records) // 3])])  # fmt: skip
    later = run(restarted, [objects(cable_at(0.6))] * 5, start=T0 + 30)
    resumed = later[-1].details[OUTLINE_KEY]["samples"]
    assert resumed[-1][0] > 29.0 and len(resumed) > 5
