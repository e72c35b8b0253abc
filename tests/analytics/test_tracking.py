"""ObjectTracker: ids across motion, crossings and occlusion, probation, the low-score stage, mask
association of thin cables, uneven time steps, classes, clocks that go back, frames without objects."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from trtseg.analytics import track_kalman as kalman
from trtseg.analytics.track_match import TrackMask, crop_iou
from trtseg.analytics.tracking import ObjectTracker
from trtseg.config.analytics import TrackerConfig
from trtseg.detections import Detections
from trtseg.masks import InstanceMasks

H, W = 720, 1280
FPS = 25.0


@dataclass(frozen=True)
class Obj:
    """One detection to feed: its box, and a mask filling the box, a diagonal line in it, or none."""

    box: tuple[float, float, float, float]
    score: float = 0.9
    cls: int = 0
    mask: str | None = "box"  # "box", "\\" (top-left to bottom-right), "/" or None
    thickness: int = 3


def _crop(obj: Obj) -> tuple[int, int, np.ndarray]:
    x0, y0, x1, y1 = (round(v) for v in obj.box)
    w, h = x1 - x0, y1 - y0
    if obj.mask == "box":
        return x0, y0, np.ones((h, w), bool)
    canvas = np.zeros((h, w), np.uint8)
    ends = ((0, 0), (w - 1, h - 1)) if obj.mask == "\\" else ((0, h - 1), (w - 1, 0))
    cv2.line(canvas, ends[0], ends[1], 1, obj.thickness)
    return x0, y0, canvas.view(bool)


def dets(objs: Sequence[Obj], with_masks: bool = True) -> Detections:
    with_masks = with_masks and all(o.mask is not None for o in objs)
    return Detections(
        boxes=np.array([o.box for o in objs], np.float32).reshape(-1, 4),
        scores=np.array([o.score for o in objs], np.float32),
        class_ids=np.array([o.cls for o in objs], np.int32),
        masks=InstanceMasks.from_crops((H, W), [_crop(o) for o in objs]) if with_masks else None,
        names={0: "person", 1: "charging_cable"},
        frame_shape=(H, W),
    )


def ids_of(out: Detections, objs: Sequence[Obj]) -> list[int | None]:
    """The id given to each fed object (None: not shown), found by its box."""
    assert out.tracker_ids is not None and out.tracker_ids.dtype == np.int64
    found: list[int | None] = []
    for obj in objs:
        hit = np.flatnonzero(np.all(np.isclose(out.boxes, np.array(obj.box, np.float32)), axis=1))
        found.append(int(out.tracker_ids[hit[0]]) if len(hit) else None)
    return found


def run(
    frames: Sequence[Sequence[Obj]], config: TrackerConfig | None = None, times: Sequence[float] | None = None
) -> tuple[ObjectTracker, list[list[int | None]]]:
    tracker = ObjectTracker(config or TrackerConfig())
    times = times if times is not None else [i / FPS for i in range(len(frames))]
    return tracker, [ids_of(tracker.update(dets(objs), t), objs) for objs, t in zip(frames, times, strict=True)]


def moving(x: float, y: float, w: float, h: float, vx: float, vy: float, t: float, **kw: object) -> Obj:
    """An object of size w x h whose top-left corner was at (x, y) at t=0, moving at (vx, vy) px/s."""
    x0, y0 = x + vx * t, y + vy * t
    return Obj((x0, y0, x0 + w, y0 + h), **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- basics


def test_ids_kept_for_moving_objects_after_probation() -> None:
    times = [i / FPS for i in range(50)]
    frames = [
        [
            moving(100, 100, 60, 120, 120, 30, t),
            moving(900, 200, 50, 50, -150, 60, t),
            moving(600, 500, 80, 40, 40, -100, t),
        ]
        for t in times
    ]
    # Objects in view at the tracker's first frame would be confirmed at once (confirm_at_start): off here.
    _, ids = run(frames, TrackerConfig(probation_frames=3, confirm_at_start=False), times)
    assert ids[0] == [None] * 3 and ids[1] == [None] * 3  # tentative
    assert ids[2] == [1, 2, 3]  # confirmed on the third frame
    assert all(row == [1, 2, 3] for row in ids[2:])


def test_two_objects_crossing_keep_their_ids() -> None:
    # Two people walk towards each other on nearly the same line; for a few frames their boxes
    # overlap almost completely. The predicted motion carries each through.
    times = [i / FPS for i in range(60)]
    frames = [[moving(100, 300, 50, 120, 300, 0, t), moving(800, 310, 50, 120, -300, 0, t)] for t in times]
    _, ids = run(frames, times=times)
    first = ids[2]
    assert None not in first and first[0] != first[1]
    assert all(row == first for row in ids[2:]), "an id switched at the crossing"


@pytest.mark.parametrize(("gap_s", "same"), [(1.0, True), (3.0, False)])
def test_occlusion_shorter_than_the_buffer_keeps_the_id_longer_gives_a_new_one(gap_s: float, same: bool) -> None:
    # The object walks behind something for gap_s seconds (frames keep coming, without it) and comes
    # out where its motion takes it. lost_track_s is 2 s.
    tracker = ObjectTracker(TrackerConfig(lost_track_s=2.0))

    def at(t: float) -> Detections:
        return dets([moving(100, 300, 60, 60, 100, 0, t)])

    t = 0.0
    for i in range(20):
        t = i / FPS
        out = tracker.update(at(t), t)
    (before,) = out.tracker_ids.tolist()  # type: ignore[union-attr]
    end = t + gap_s
    while t < end - 1e-9:
        t = min(t + 1 / FPS, end)
        assert len(tracker.update(dets([]), t)) == 0
    assert tracker.stats["lost"] == (1 if same else 0)
    t += 1 / FPS
    after = tracker.update(at(t), t).tracker_ids.tolist()  # type: ignore[union-attr]
    if same:
        assert after == [before]
    else:
        assert after == [] and tracker.removed_ids == () and tracker.stats["tentative"] == 1
        for _ in range(2):
            t += 1 / FPS
            after = tracker.update(at(t), t).tracker_ids.tolist()  # type: ignore[union-attr]
        assert after == [before + 1]


def test_probation_drops_a_tentative_track_that_misses_a_frame() -> None:
    obj = Obj((200, 200, 260, 320))
    frames = [[obj], [], [obj], [obj], [obj], [obj]]
    tracker, ids = run(frames, TrackerConfig(probation_frames=3, confirm_at_start=False))
    assert ids[0] == [None]
    assert ids[2] == [None] and ids[3] == [None]  # a fresh probation after the miss
    assert ids[4] == [2]  # the first tentative track (id 1) was dropped, never shown
    assert ids[5] == [2]
    assert tracker.stats["started"] == 2

    _, ids = run([[obj], [obj]], TrackerConfig(probation_frames=1, confirm_at_start=False))
    assert ids == [[1], [1]]  # probation of one frame: confirmed at birth


def test_what_is_in_view_at_the_start_is_confirmed_at_once_newcomers_serve_probation() -> None:
    first, later = Obj((200, 200, 260, 320)), Obj((700, 300, 760, 420))
    frames = [[first], [first], [first, later], [first, later], [first, later]]
    tracker, ids = run(frames, TrackerConfig(probation_frames=3, probation_s=None))
    assert ids[0] == [1]  # born in the first frame: shown at once
    assert ids[2] == [1, None] and ids[3] == [1, None] and ids[4] == [1, 2]
    tracker.reset()  # a camera reconfigured: what is in view then is confirmed at once again
    assert ids_of(tracker.update(dets([later]), 10.0), [later]) == [3]

    _, ids = run(frames, TrackerConfig(probation_frames=3, probation_s=None, confirm_at_start=False))
    assert ids[0] == [None] and ids[2] == [1, None]


@pytest.mark.parametrize(("fps", "shown_from"), [(25.0, 2), (5.0, 1)])
def test_probation_in_seconds_needs_fewer_frames_at_a_low_rate(fps: float, shown_from: int) -> None:
    # probation_frames 3 or two sightings 0.15 s apart: 3 frames at 25 fps, 2 at 5 fps.
    newcomer = [Obj((200, 200, 260, 320))]
    config = TrackerConfig(probation_frames=3, probation_s=0.15, confirm_at_start=False)
    _, ids = run([newcomer] * 5, config, [i / fps for i in range(5)])
    assert [row[0] for row in ids] == [None] * shown_from + [1] * (5 - shown_from)


def test_low_score_detections_extend_tracks_but_never_start_them() -> None:
    def frame(i: int, score: float) -> list[Obj]:
        t = i / FPS
        return [moving(100, 300, 60, 60, 100, 0, t, score=score), Obj((900, 100, 960, 160), score=0.3)]

    scores = [0.9] * 5 + [0.3] * 10 + [0.9] * 5  # the object fades (partly hidden), the other is always doubtful
    frames = [frame(i, s) for i, s in enumerate(scores)]
    tracker, ids = run(frames)
    assert all(row[0] == 1 for row in ids[2:]), "the low-score stage did not rescue the fading object"
    assert all(row[1] is None for row in ids)  # a low-score detection never starts a track
    assert tracker.stats["started"] == 1

    # Without the second stage (low_score above the faded score) the object is lost while faded.
    _, ids = run(frames, TrackerConfig(low_score=0.4))
    assert all(row[0] is None for row in ids[5:15])
    assert ids[15][0] == 1  # and found again within the lost-track buffer


def test_a_score_between_high_and_new_track_matches_but_does_not_start() -> None:
    obj = Obj((200, 200, 260, 320), score=0.55)  # >= high_score 0.5, < new_track_score 0.6
    tracker, ids = run([[obj]] * 4)
    assert tracker.stats["started"] == 0 and ids == [[None]] * 4


# ----------------------------------------------------------------------------------- thin cables


def _cable_slides_along_itself() -> list[list[Obj]]:
    # A 200x200 diagonal cable, 3 px thick, at rest, then (inference at 5 fps) it slides 100 px
    # along itself between two inferred frames: box IoU 0.14, below the 0.2 threshold; mask IoU 0.33.
    rest = [Obj((400, 200, 600, 400), mask="\\", cls=1)]
    moved = [Obj((500, 300, 700, 500), mask="\\", cls=1)]
    return [rest] * 5 + [moved] * 4


def test_thin_cable_sliding_along_itself_is_matched_by_its_mask() -> None:
    frames = _cable_slides_along_itself()
    times = [i * 0.2 for i in range(len(frames))]
    _, ids = run(frames, TrackerConfig(), times)
    assert [row[0] for row in ids[2:]] == [1] * 7


def test_thin_cable_sliding_along_itself_is_lost_by_boxes_alone() -> None:
    # The same input with box IoU only: the track is lost at the slide and a new one starts.
    frames = _cable_slides_along_itself()
    times = [i * 0.2 for i in range(len(frames))]
    tracker, ids = run(frames, TrackerConfig(use_masks=False), times)
    assert ids[5] == [None]
    assert ids[7] == [2]
    assert tracker.stats["started"] == 2


def _crossing_cables() -> list[list[Obj]]:
    # Two cables crossing as an X: their boxes are 4 px apart, so boxes can hardly tell them apart.
    # Then both sway 4 px towards each other: now each one's box is where the *other's* box was.
    a0, b0 = Obj((400, 200, 600, 400), mask="\\", thickness=5), Obj((404, 200, 604, 400), mask="/", thickness=5)
    a1, b1 = Obj((404, 200, 604, 400), mask="\\", thickness=5), Obj((400, 200, 600, 400), mask="/", thickness=5)
    return [[a0, b0]] * 5 + [[a1, b1]] * 3


def test_crossing_cables_keep_their_ids_by_mask() -> None:
    frames = _crossing_cables()
    _, ids = run(frames, TrackerConfig())
    assert ids[4] == [1, 2]
    assert all(row == [1, 2] for row in ids[5:]), "the crossing cables swapped ids"


@pytest.mark.parametrize("config", [TrackerConfig(use_masks=False), TrackerConfig(mask_weight=0.0)])
def test_crossing_cables_swap_ids_without_the_mask_tie_break(config: TrackerConfig) -> None:
    # Each cable's new box overlaps the other's predicted box exactly (IoU 1.0) and its own at 0.96:
    # the box, and max(box, mask), both prefer the swap. Only the mask score keeps them apart.
    frames = _crossing_cables()
    _, ids = run(frames, config)
    assert ids[4] == [1, 2] and ids[5] == [2, 1]


# ------------------------------------------------------------------------------------- time


def test_uneven_large_time_steps_are_predicted_by_seconds() -> None:
    # 150 px/s, a 60 px box; inference first at 10 fps, then alternating 2 fps and 10 fps: a 0.5 s step
    # moves the box 75 px, past its own width, so only a prediction by elapsed seconds keeps the id.
    steps = [0.1] * 6 + [0.5, 0.1] * 6
    times = np.concatenate([[0.0], np.cumsum(steps)]).tolist()
    frames = [[moving(100, 300, 60, 60, 150, 20, t)] for t in times]
    tracker, ids = run(frames, TrackerConfig(), times)
    assert [row[0] for row in ids[2:]] == [1] * (len(times) - 2)
    assert tracker.stats["started"] == 1


def test_kalman_steps_compose_and_match_the_full_matrix_filter() -> None:
    rng = np.random.default_rng(3)
    z = kalman.xyxy_to_cxcywh(np.array([[100.0, 100.0, 160.0, 220.0], [400.0, 50.0, 403.0, 300.0]]))
    mean, cov = kalman.initiate(z)
    # One step of 0.4 s moves the mean as two of 0.2 s do.
    m1, _ = kalman.predict(*kalman.update(mean, cov, z + 5.0), 0.4)
    m2, _ = kalman.predict(*kalman.predict(*kalman.update(mean, cov, z + 5.0), 0.2), 0.2)
    np.testing.assert_allclose(m1, m2)

    # The block form equals the textbook 8x8 filter.
    def full(p: np.ndarray) -> np.ndarray:
        out = np.zeros((len(p), 8, 8))
        for k in range(4):
            out[:, k, k], out[:, k, k + 4], out[:, k + 4, k], out[:, k + 4, k + 4] = (
                p[:, 0, k],
                p[:, 1, k],
                p[:, 1, k],
                p[:, 2, k],
            )
        return out

    hmat = np.hstack([np.eye(4), np.zeros((4, 4))])
    m, p = mean.copy(), full(cov)
    for dt in (0.04, 0.2, 0.5):
        fmat = np.eye(8)
        fmat[np.arange(4), np.arange(4, 8)] = dt
        scale = np.maximum(np.hstack([m[:, 2:4], m[:, 2:4]]), kalman.MIN_SIZE_PX)
        q = np.hstack([(kalman.WEIGHT_POSITION * scale) ** 2, (kalman.WEIGHT_VELOCITY * 25 * scale) ** 2]) * dt * 25
        m, p = m @ fmat.T, fmat @ p @ fmat.T + np.stack([np.diag(v) for v in q])
        mean, cov = kalman.predict(mean, cov, dt)
        np.testing.assert_allclose(mean, m)
        np.testing.assert_allclose(full(cov), p)
        meas = m[:, :4] + rng.normal(0, 3, (2, 4))
        scale = np.maximum(np.hstack([m[:, 2:4], m[:, 2:4]]), kalman.MIN_SIZE_PX)
        s = hmat @ p @ hmat.T + np.stack([np.diag(v) for v in (kalman.WEIGHT_POSITION * scale) ** 2])
        gain = p @ hmat.T @ np.linalg.inv(s)
        m = m + np.einsum("tij,tj->ti", gain, meas - m[:, :4])
        p = p - gain @ s @ np.swapaxes(gain, 1, 2)
        mean, cov = kalman.update(mean, cov, meas)
        np.testing.assert_allclose(mean, m)
        np.testing.assert_allclose(full(cov), p, atol=1e-9)


def test_timestamps_going_back_count_as_no_time_and_warn_once(caplog: pytest.LogCaptureFixture) -> None:
    tracker = ObjectTracker(TrackerConfig(lost_track_s=2.0))
    obj = Obj((200, 200, 260, 320))
    caplog.set_level(logging.DEBUG, logger="trtseg.analytics.tracking")
    for t in (100.0, 100.04, 100.08):
        out = tracker.update(dets([obj]), t)
    assert out.tracker_ids.tolist() == [1]  # type: ignore[union-attr]
    for t in (3.0, 2.0, float("nan"), 3.04):  # the clock restarted, went back again, then a broken stamp
        out = tracker.update(dets([obj]), t)
        assert out.tracker_ids.tolist() == [1]  # type: ignore[union-attr]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "stepped back" in warnings[0].getMessage()
    # Time goes on from the new base: unseen for longer than the buffer, the track is given up.
    for k in range(1, 12):
        tracker.update(dets([]), 3.04 + 0.25 * k)
    assert tracker.stats["lost"] == 0 and tracker.stats["confirmed"] == 0


# --------------------------------------------------------------------------------- classes, input


def test_class_aware_matching() -> None:
    person, cable = Obj((200, 200, 260, 320), cls=0), Obj((200, 200, 260, 320), cls=1)
    frames = [[person]] * 4 + [[cable]] * 4
    _, ids = run(frames, TrackerConfig(class_aware=True))
    assert ids[3] == [1] and ids[4] == [None] and ids[6] == [2]  # another class is another object

    tracker = ObjectTracker(TrackerConfig(class_aware=False))
    outs = [tracker.update(dets(objs), i / FPS) for i, objs in enumerate(frames)]
    assert [o.tracker_ids.tolist() for o in outs[2:]] == [[1]] * 6  # type: ignore[union-attr]
    assert outs[-1].class_ids.tolist() == [1]  # the detection's class is reported


def test_empty_frames_age_tracks_until_the_buffer_runs_out() -> None:
    tracker = ObjectTracker(TrackerConfig(lost_track_s=1.0))
    obj = Obj((200, 200, 260, 320))
    for i in range(3):
        tracker.update(dets([obj]), i / FPS)
    assert tracker.stats["active"] == 1
    empties = [Detections.empty((H, W)), Detections.empty((H, W), with_masks=False), Detections.empty()]
    t = 2 / FPS
    for k in range(24):
        t += 1 / FPS
        out = tracker.update(empties[k % 3], t)
        assert len(out) == 0 and out.tracker_ids is not None and out.tracker_ids.dtype == np.int64
    assert tracker.stats["lost"] == 1 and tracker.removed_ids == ()
    tracker.update(Detections.empty((H, W)), t + 0.1)  # 1.06 s unseen
    assert tracker.stats["lost"] == 0 and tracker.removed_ids == (1,)


def test_detections_without_masks_track_by_box() -> None:
    tracker = ObjectTracker(TrackerConfig(use_masks=True))
    outs = []
    for i in range(10):
        objs = [moving(100, 300, 60, 60, 100, 0, i / FPS), moving(700, 300, 60, 60, -50, 0, i / FPS)]
        d = dets(objs, with_masks=i % 3 != 0)  # masks come and go
        outs.append(ids_of(tracker.update(d, i / FPS), objs))
    assert all(row == [1, 2] for row in outs[2:])


def test_output_keeps_masks_and_order_and_ids_are_never_reused() -> None:
    tracker = ObjectTracker(TrackerConfig(probation_frames=1))
    objs = [Obj((10, 10, 50, 90)), Obj((300, 300, 340, 340), mask="/"), Obj((900, 10, 960, 60), score=0.05)]
    d = dets(objs)
    out = tracker.update(d, 0.0)
    assert out.tracker_ids.tolist() == [1, 2]  # type: ignore[union-attr]  (the third scores below low_score)
    assert out.masks is not None and len(out.masks) == 2
    for k in range(2):
        np.testing.assert_array_equal(out.masks.crop(k).mask, d.masks.crop(k).mask)  # type: ignore[union-attr]
    tracker.reset()
    assert tracker.stats["active"] == 0
    out = tracker.update(d, 0.0)
    assert out.tracker_ids.tolist() == [3, 4]  # type: ignore[union-attr]


def test_crop_iou_equals_the_dense_iou() -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        a = rng.random((rng.integers(1, 30), rng.integers(1, 30))) > 0.5
        b = rng.random((rng.integers(1, 30), rng.integers(1, 30))) > 0.5
        ax, ay, bx, by = (int(v) for v in rng.integers(0, 20, 4))
        dense_a, dense_b = np.zeros((60, 60), bool), np.zeros((60, 60), bool)
        dense_a[ay : ay + a.shape[0], ax : ax + a.shape[1]] = a
        dense_b[by : by + b.shape[0], bx : bx + b.shape[1]] = b
        union = np.logical_or(dense_a, dense_b).sum()
        expected = np.logical_and(dense_a, dense_b).sum() / union if union else 0.0
        assert crop_iou(TrackMask(a), ax, ay, TrackMask(b), bx, by) == pytest.approx(expected)
