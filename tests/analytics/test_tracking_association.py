"""ObjectTracker's association details: ByteTrack's order, the strict low-score stage, scores per class,
second sightings at a low rate, one object reported twice, the filter's process noise."""

from __future__ import annotations

import numpy as np
import pytest

from tests.analytics.test_tracking import FPS, Obj, dets, ids_of, moving, run
from trtseg.analytics import track_kalman as kalman
from trtseg.analytics.tracking import ObjectTracker
from trtseg.config.analytics import TrackerConfig

PERSON, CABLE = 0, 1  # the classes of tests.analytics.test_tracking.dets: {0: "person", 1: "charging_cable"}


def _column(ids: list[list[int | None]], k: int) -> list[int | None]:
    return [row[k] for row in ids]


# ------------------------------------------------------------------------------------ order, stages


def test_a_confirmed_track_is_matched_before_a_tentative_one_may_take_its_object() -> None:
    # A person is tracked; a ghost box appears beside it for one frame (a tentative track); then the
    # person's box moves onto the ghost's place. Matched together, the tentative track (overlapping it
    # more) would take the person's detection and the person's id would be lost.
    person = Obj((100, 100, 160, 250))
    ghost = Obj((130, 100, 190, 250), score=0.7)
    moved = Obj((128, 100, 188, 250))
    frames = [[person]] * 4 + [[person, ghost], [moved], [moved]]
    tracker, ids = run(frames, TrackerConfig(probation_frames=2, probation_s=None, confirm_at_start=False))
    assert _column(ids, 0)[1:] == [1] * 6
    assert tracker.stats["started"] == 2  # the ghost started a track, which died at its first miss


@pytest.mark.parametrize(("least", "extended"), [(0.5, False), (0.2, True)])
def test_a_doubtful_detection_must_overlap_well_to_extend_a_track(least: float, extended: bool) -> None:
    # The tracked object fades to a low score and its box is now a loose one around it (IoU 0.35 with
    # the prediction): ByteTrack's second stage wants IoU 0.5, so that a ghost box does not take over.
    tracked = Obj((300, 300, 360, 420))
    loose = Obj((300, 300, 400, 500), score=0.3, mask=None)
    frames = [[tracked]] * 4 + [[loose]]
    _, ids = run(frames, TrackerConfig(low_match_threshold=least, use_masks=False))
    assert ids[3] == [1]
    assert ids[4] == ([1] if extended else [None])


def test_scores_per_class_let_a_cable_start_where_a_person_could_not() -> None:
    frames = [
        [Obj((100, 100, 160, 250), score=0.3, cls=PERSON), Obj((400, 200, 600, 400), score=0.3, cls=CABLE, mask="\\")]
    ]
    tracker, ids = run(frames * 4)
    assert ids[-1] == [None, 1]  # the default scores a cable at 0.25, a person at 0.5 / 0.6
    assert tracker.stats["started"] == 1

    _, ids = run(frames * 4, TrackerConfig(class_high_score={}, class_new_track_score={}))
    assert ids[-1] == [None, None]


# ---------------------------------------------------------------------------------- low rates


def _walker_at_5fps(steps: int) -> tuple[list[list[Obj]], list[float]]:
    # A far, thin walker (30 x 150 px) at 225 px/s, inferred at 5 fps: it moves 45 px, 1.5 widths,
    # between frames, so its boxes never overlap.
    times = [i / 5.0 for i in range(steps)]
    return [[moving(1200, 300, 30, 150, -225, 0, t)] for t in times], times


def test_a_thin_fast_walker_at_5fps_is_found_again_by_distance() -> None:
    frames, times = _walker_at_5fps(8)
    config = TrackerConfig(confirm_at_start=False)
    tracker, ids = run(frames, config, times)
    assert _column(ids, 0) == [None] + [1] * 7  # seen twice 0.2 s apart: confirmed (probation_s)
    assert tracker.stats["started"] == 1

    tracker, ids = run(frames, TrackerConfig(confirm_at_start=False, second_sighting_speed=0.0), times)
    assert _column(ids, 0) == [None] * 8  # every frame a new tentative track, dropped at the next
    assert tracker.stats["started"] == 8


def test_a_second_sighting_needs_the_same_class_and_size() -> None:
    times = [0.0, 0.2]
    walker = moving(1200, 300, 30, 150, -225, 0, 0.0)
    other = moving(1200, 300, 30, 150, -225, 0, 0.2)
    for second in (Obj(other.box, cls=CABLE, mask=None), Obj((other.box[0], 300, other.box[0] + 30, 390))):
        tracker = ObjectTracker(TrackerConfig(confirm_at_start=False))
        tracker.update(dets([walker]), times[0])
        tracker.update(dets([second], with_masks=False), times[1])
        assert tracker.stats["started"] == 2  # another class, or 60 % of the height: a new object


# ------------------------------------------------------------------------------ one object twice


def _cable_and_its_upper_part(fraction: float) -> tuple[Obj, Obj]:
    # One diagonal cable reported as a whole and again as its upper ``fraction``.
    whole = Obj((400, 200, 600, 400), cls=CABLE, mask="\\", thickness=5, score=0.7)
    end = 400 + 200 * fraction
    part = Obj((400, 200, end, end - 200), cls=CABLE, mask="\\", thickness=5, score=0.6)
    return whole, part


def test_a_cable_reported_twice_starts_one_track() -> None:
    whole, part = _cable_and_its_upper_part(0.9)  # mask IoU about 0.9
    tracker, ids = run([[whole, part]] * 5)
    assert ids[-1] == [1, None]
    assert tracker.stats["started"] == 1

    tracker, ids = run([[whole, part]] * 5, TrackerConfig(duplicate_iou=1.0, duplicate_cover=1.0))
    assert ids[-1] == [1, 2]


def test_two_people_overlapping_are_two_people() -> None:
    # The same masks as persons: duplicate_classes is the cables only.
    whole, part = _cable_and_its_upper_part(0.9)
    people = [Obj(o.box, cls=PERSON, mask=o.mask, thickness=5, score=0.9) for o in (whole, part)]
    _, ids = run([people] * 5)
    assert ids[-1] == [1, 2]


def test_a_part_of_a_tracked_cable_is_kept_but_not_shown() -> None:
    # The upper 60 % appears later (someone walks in front of the rest): IoU 0.6 < duplicate_iou, so it
    # starts a track; its mask lies wholly inside the older cable's, so that track is never shown.
    whole, part = _cable_and_its_upper_part(0.6)
    frames = [[whole]] * 3 + [[whole, part]] * 6
    tracker, ids = run(frames)
    assert all(row == [1, None] for row in ids[3:])
    assert tracker.stats["confirmed"] == 2 and tracker.stats["active"] == 2

    _, ids = run(frames, TrackerConfig(duplicate_cover=1.0))
    assert ids[-1] == [1, 2]

    # Alone, the part is shown under its own id.
    out = tracker.update(dets([part]), 9 / FPS)
    assert ids_of(out, [part]) == [2]


# ------------------------------------------------------------------------------ the filter


def test_motion_noise_scales_the_process_noise() -> None:
    z = kalman.xyxy_to_cxcywh(np.array([[100.0, 100.0, 160.0, 220.0]]))
    mean, cov = kalman.update(*kalman.initiate(z), z + 3.0)
    _, full = kalman.predict(mean, cov, 0.2)
    _, tenth = kalman.predict(mean, cov, 0.2, 0.1)
    _, none = kalman.predict(mean, cov, 0.2, 1e-12)
    np.testing.assert_allclose(tenth - none, 0.1 * (full - none), rtol=1e-9)
    assert (tenth[:, 0] < full[:, 0]).all()


def test_defaults_keep_ids_of_people_crossing_at_5fps() -> None:
    # Two thin walkers (40 x 120 px) crossing at 180 px/s, inferred at 5 fps: 36 px a step, so their
    # first two boxes barely overlap (a track born in the first frame has no speed yet either).
    times = [i / 5.0 for i in range(24)]
    frames = [[moving(100, 300, 40, 120, 180, 0, t), moving(1000, 310, 40, 120, -180, 0, t)] for t in times]
    tracker, ids = run(frames, TrackerConfig(), times)
    assert ids[0] == [1, 2]
    assert all(row == [1, 2] for row in ids), "an id switched at the crossing"
    assert tracker.stats["started"] == 2
