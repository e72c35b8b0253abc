"""Rules through CameraAnalytics (the real tracker): presence by mask fraction, escalation, hysteresis,
inertia, cooldown, dwell, crossing, count, anchor membership, refresh, trajectory, key frames."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from tests.analytics.helpers import NAMES, T0, cable_at, camera, frame, objects
from trtseg.analytics.camera import CameraAnalytics
from trtseg.analytics.records import IncidentRecord

FAST_TRACKER = {"tracker": {"probation_frames": 1}}
ORIGIN = {
    "name": "flying_lead",
    "kind": "presence",
    "zone": "safe",
    "classes": ["charging_cable"],
    "label": "safe",
    "escalate": {"min_outside": 0.4, "label": "danger"},
}


def run(analytics: CameraAnalytics, scenes: list[Any], start: float = T0, step: float = 0.2) -> list[IncidentRecord]:
    """Feed one Detections (or None: not inferred) per frame; returns every record."""
    out: list[IncidentRecord] = []
    for i, found in enumerate(scenes):
        out += analytics.update(frame(start + i * step, i), found)
    return out


def make(rules: list[dict[str, Any]], **extra: Any) -> CameraAnalytics:
    extra.setdefault("analytics", FAST_TRACKER)
    return CameraAnalytics(camera(rules, **extra), NAMES)


def test_the_origin_rule_danger_and_safe() -> None:
    danger = run(make([ORIGIN]), [objects(cable_at(0.62))] * 3)
    assert [(r.status, r.severity) for r in danger] == [("open", "alert")]
    assert danger[0].result == "danger: 60 % of charging_cable outside safe"  # the zone's edge column is inside
    assert danger[0].escalated_at is not None and set(danger[0].keyframes) == {"open"}
    safe = run(make([ORIGIN]), [objects(cable_at(0.1))] * 3)
    assert [(r.status, r.severity) for r in safe] == [("open", "detection")]
    assert safe[0].result == "safe: 8 % of charging_cable outside safe" and safe[0].escalated_at is None


def test_escalation_is_one_incident_and_flapping_never_reopens() -> None:
    fractions = [0.1, 0.1, 0.5, 0.5, 0.5] + [0.42, 0.37, 0.41, 0.36, 0.43, 0.38] * 5
    records = run(make([ORIGIN]), [objects(cable_at(x)) for x in fractions])
    assert len({r.incident_id for r in records}) == 1
    assert [r.status for r in records].count("closed") == 0
    stages = [stage for r in records for stage in r.keyframes]
    assert stages == ["open", "alert"]
    assert records[0].severity == "detection" and records[-1].severity == "alert"


def test_hysteresis_margin_and_median() -> None:
    """Below threshold minus margin the state leaves: a count rule's count drops (and recovers)."""
    rule = {"name": "out", "kind": "count", "zone": "safe", "min_outside": 0.4, "min_count": 1, "close_after_s": 0.5}
    analytics = make([rule])
    # 0.5 (in), then 0.37 (inside the 5-point margin: stays), then 0.2 x3 (median falls below 0.35: leaves)
    records = run(analytics, [objects(cable_at(x)) for x in [0.5, 0.5, 0.37, 0.37, 0.2, 0.2, 0.2, 0.2, 0.2]])
    assert [r.status for r in records] == ["open", "closed"]


def test_inertia_and_close_after_and_cooldown() -> None:
    rule = {**ORIGIN, "min_duration_s": 1.0, "close_after_s": 1.0, "cooldown_s": 5.0}
    analytics = make([rule])
    seen = [objects(cable_at(0.6))] * 8  # 1.4 s of frames 0.2 s apart
    gone = [objects()] * 6
    records = run(analytics, seen + gone + seen + gone)
    opened = [r for r in records if r.status == "open" and r.keyframes]
    assert len(opened) == 1  # the second sighting falls inside the cooldown
    assert opened[0].started_at.timestamp() == pytest.approx(T0, abs=1e-3)  # inertia counts from the first frame
    assert opened[0].last_seen_at.timestamp() == pytest.approx(T0 + 1.0, abs=1e-3)
    assert [r.status for r in records].count("closed") == 1


def test_frames_without_detections_coast() -> None:
    analytics = make([{**ORIGIN, "close_after_s": 1.0}])
    records = run(analytics, [objects(cable_at(0.6))] * 3 + [None] * 60 + [objects(cable_at(0.6))] * 3)
    assert [r.status for r in records if r.keyframes] == ["open"]  # 12 s without inference: no close


def test_timestamps_that_jump_count_one_gap_at_most() -> None:
    analytics = make([{**ORIGIN, "close_after_s": 3.0}])
    run(analytics, [objects(cable_at(0.6))] * 3)
    (opened,) = analytics.book.open.values()
    later = analytics.update(frame(T0 + 3600, 9), objects(cable_at(0.6)))  # an hour later: a refresh
    assert [(r.incident_id, r.status) for r in later] == [(opened.incident_id, "open")]
    assert analytics.update(frame(T0 - 50, 10), objects(cable_at(0.6))) == []  # backwards: no crash
    assert list(analytics.book.open.values()) == [opened] and analytics.clock < 3.0


def test_dwell_opens_after_the_time_inside() -> None:
    rule = {"name": "loiter", "kind": "dwell", "zone": "safe", "classes": ["person"], "min_dwell_s": 2.0}
    person_in = objects((2, 0.9, (20, 20, 40, 90)))
    person_out = objects((2, 0.9, (150, 20, 170, 90)))
    records = run(make([rule]), [person_out] * 3 + [person_in] * 15)
    (opened,) = [r for r in records if r.keyframes]
    assert opened.rule == "loiter" and opened.details["dwell_s"] >= 2.0
    assert opened.started_at.timestamp() == pytest.approx(T0 + 3 * 0.2 + 2.0, abs=0.01)


def crossing_scenes(xs: list[int]) -> list[Any]:
    """A person 40 px wide whose box starts at each x (its anchor, the bottom-centre, at x + 20)."""
    return [objects((2, 0.9, (x, 30, x + 40, 70))) for x in xs]


@pytest.mark.parametrize(
    ("direction", "xs", "expected"),
    [
        ("both", [10, 25, 40, 55, 70, 85, 100, 115, 130], ["right_to_left"]),
        ("both", [130, 115, 100, 85, 70, 55, 40, 25, 10], ["left_to_right"]),
        ("left_to_right", [10, 25, 40, 55, 70, 85, 100, 115, 130], []),
    ],
)
def test_line_crossing_direction(direction: str, xs: list[int], expected: list[str]) -> None:
    # A vertical line from top to bottom at x = 0.5: walking down it, the left side is the frame's right.
    lines = [{"name": "door", "points": [[0.5, 0.0], [0.5, 1.0]]}]
    rule = {"name": "cross", "kind": "crossing", "line": "door", "classes": ["person"], "direction": direction}
    records = run(make([rule], lines=lines), crossing_scenes(xs))
    assert [r.details["direction"] for r in records if r.status == "open" and r.keyframes] == expected


def test_crossing_needs_frames_on_the_new_side_and_the_segment() -> None:
    lines = [{"name": "door", "points": [[0.5, 0.0], [0.5, 0.5]]}]  # the upper half only
    rule = {"name": "cross", "kind": "crossing", "line": "door", "classes": ["person"], "min_frames": 3}
    walk = [10, 25, 40, 55, 70, 85, 100, 115, 130, 145]
    below = run(make([rule], lines=lines), crossing_scenes(walk))
    assert below == []  # the anchor (bottom-centre, y=0.7) passes below the segment's end
    full = [{"name": "door", "points": [[0.5, 0.0], [0.5, 1.0]]}]
    assert len(run(make([rule], lines=full), crossing_scenes(walk))) == 1
    bounce = [10, 25, 40, 55, 70, 85, 95, 70, 55, 40]  # anchors 105 and 115 over the line, then back
    assert run(make([rule], lines=full), crossing_scenes(bounce)) == []  # two frames over, then back


def test_crossing_near_a_line_end_counts_within_the_anchor_slack() -> None:
    """A box's bottom stands for the ground point to within a tenth of its height (here 4 px of 40)."""
    rule = {"name": "cross", "kind": "crossing", "line": "door", "classes": ["person"]}
    walk = [10, 25, 40, 55, 70, 85, 100, 115, 130, 145]  # anchors at y = 0.70
    just_short = [{"name": "door", "points": [[0.5, 0.0], [0.5, 0.67]]}]  # ends 3 px above the anchors
    assert len(run(make([rule], lines=just_short), crossing_scenes(walk))) == 1
    too_short = [{"name": "door", "points": [[0.5, 0.0], [0.5, 0.65]]}]  # 5 px: around the end
    assert run(make([rule], lines=too_short), crossing_scenes(walk)) == []


def test_count_rule_keyed_by_zone_and_rule() -> None:
    rule = {"name": "crowd", "kind": "count", "zone": "safe", "classes": ["person"], "min_count": 2}
    one = objects((2, 0.9, (10, 20, 30, 90)))
    two = objects((2, 0.9, (10, 20, 30, 90)), (2, 0.9, (50, 20, 70, 90)))
    three = objects((2, 0.9, (10, 20, 30, 90)), (2, 0.9, (50, 20, 70, 90)), (2, 0.8, (75, 20, 95, 90)))
    analytics = make([rule])
    records = run(analytics, [one] * 3 + [two] * 4 + [three] * 4 + [one] * 40)
    assert len({r.incident_id for r in records}) == 1 and records[0].track_id is None
    assert records[-1].status == "closed" and records[-1].peak_count == 3
    assert records[0].result == "detection: 2 person in safe"


def test_anchor_membership_differs_from_the_mask() -> None:
    """A cable lying mostly outside the zone with its box's bottom-centre inside it."""
    mask = np.zeros((1, 100, 200), np.uint8)
    cv2.line(mask[0], (5, 95), (100, 60), 1, 1)  # a thin tail inside the zone (x < 100) ...
    cv2.line(mask[0], (100, 60), (160, 10), 1, 5)  # ... and a thick run outside it
    mask = mask.astype(bool)
    from trtseg.detections import Detections
    from trtseg.masks import InstanceMasks

    ys, xs = np.nonzero(mask[0])
    cable = Detections(
        np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32),
        np.array([0.9], np.float32),
        np.array([0], np.int32),
        InstanceMasks.from_dense(mask),
        NAMES,
        (100, 200),
    )
    by_mask = {"name": "m", "kind": "presence", "zone": "safe", "min_outside": 0.4, "severity": "alert"}
    by_anchor = {**by_mask, "name": "a", "membership": "anchor"}
    records = run(make([by_mask, by_anchor]), [cable] * 3)
    assert {r.rule for r in records} == {"m"}  # the anchor says 'inside', the mask says 40 %+ outside


def test_refresh_keeps_last_seen_fresh_and_trajectory_is_capped() -> None:
    analytics = make([ORIGIN], analytics={**FAST_TRACKER, "refresh_s": 2.0, "trajectory_points": 20})
    xs = [60 + (i % 10) for i in range(300)]  # one minute at 5 fps, the cable moving a little
    scenes = [objects((0, 0.8, (x, 40, x + 40, 50))) for x in xs]
    records = run(analytics, scenes)
    refreshes = [r for r in records if r.status == "open"]
    gaps = np.diff([r.last_seen_at.timestamp() for r in refreshes])
    assert len(refreshes) >= 25 and gaps.max() <= 2.2
    assert all(not r.keyframes for r in refreshes[1:])  # JPEGs only at open (no escalation here)
    assert 10 <= len(refreshes[-1].trajectory) <= 20
    times = [p[0] for p in refreshes[-1].trajectory]
    assert times == sorted(times) and times[-1] > 50


def test_key_frames_at_open_alert_and_close_are_jpegs() -> None:
    analytics = make([{**ORIGIN, "close_after_s": 0.5}])
    records = run(analytics, [objects(cable_at(0.1))] * 3 + [objects(cable_at(0.7))] * 4 + [objects()] * 5)
    stages = [(stage, sorted(jpegs)) for r in records for stage, jpegs in r.keyframes.items()]
    assert stages == [(s, ["annotated", "raw"]) for s in ("open", "alert", "close")]
    for record in records:
        for jpegs in record.keyframes.values():
            picture = cv2.imdecode(np.frombuffer(jpegs["annotated"], np.uint8), cv2.IMREAD_COLOR)
            assert picture.shape == (100, 200, 3)
    assert records[-1].instance is not None and records[-1].instance["class_name"] == "charging_cable"
