"""The generated sequences' truth is consistent: masks fit boxes, fractions are what was asked, occlusion happens."""

from __future__ import annotations

import numpy as np
import pytest

from datasets import sequence_scenarios as sc
from datasets.scenes import CABLE, PERSON
from datasets.sequence_truth import true_incidents
from datasets.sequences import FrameTruth, line_side, zone_mask

SMALL = (320, 180)
MEDIUM = (640, 360)


def _tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_masks_match_boxes_and_zone_fractions() -> None:
    seq = sc.cables(3, seconds=1.0, size=SMALL)
    seq.zones["left"] = [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]
    seq._zone_masks["left"] = zone_mask(seq.zones["left"], (SMALL[1], SMALL[0]))
    seen = 0
    for image, truth in seq.frames(fps=5):
        assert image.shape == (SMALL[1], SMALL[0], 3) and image.dtype == np.uint8
        for obj in truth.all():
            seen += 1
            dense = obj.dense((SMALL[1], SMALL[0]))
            assert obj.area == int(dense.sum()) >= seq.min_area
            assert obj.box == _tight_box(dense)  # the crop is exactly the mask's box
            assert 0.0 < obj.visibility <= 1.0
            # fillPoly counts the polygon's edge pixels as inside: columns 0..160 of 320.
            expected = float((dense & (np.arange(SMALL[0]) <= SMALL[0] // 2)[None, :]).sum()) / obj.area
            assert obj.inside["left"] == pytest.approx(expected, abs=1e-9)
    assert seen >= 5 * 4  # >= 3 cables, a bike, maybe a walker, in 5 frames
    assert {o.class_id for o in truth.all()} >= {CABLE}


@pytest.mark.parametrize(("seed", "outside"), [(0, 0.0), (0, 0.4), (0, 1.0), (11, 0.25), (12, 0.75)])
def test_cable_outside_fraction_is_what_was_asked(seed: int, outside: float) -> None:
    seq = sc.fraction(seed, outside, seconds=1.0, size=MEDIUM)
    assert seq.meta["true_outside"] == pytest.approx(outside, abs=0.01)  # within a point
    fractions = [1.0 - o.inside[sc.ZONE] for _, t in seq.frames(fps=5) for o in t.all() if o.class_id == CABLE]
    assert len(fractions) == 5
    assert float(np.median(fractions)) == pytest.approx(outside, abs=0.015)  # sway moves it by a fraction of a point
    points = seq.zones[sc.ZONE]
    assert len(points) >= 3 and all(0.0 <= v <= 1.0 for p in points for v in p)


def test_fraction_truth_incidents_follow_the_threshold() -> None:
    above = sc.fraction(5, 0.7, seconds=2.0, size=MEDIUM)
    below = sc.fraction(5, 0.1, seconds=2.0, size=MEDIUM)
    inc_above = true_incidents(above, [t for _, t in above.frames(fps=5)])
    inc_below = true_incidents(below, [t for _, t in below.frames(fps=5)])
    assert [(i.rule, i.track_id, i.open_s) for i in inc_above] == [("cable_danger", 1, 0.0)]
    assert inc_above[0].fraction == pytest.approx(0.7, abs=0.02) and inc_above[0].threshold == sc.DANGER_OUTSIDE
    assert [(i.rule, i.track_id) for i in inc_below] == [("cable_inside", 1)]  # 90 % inside >= 80 %


def test_occlusion_really_happens() -> None:
    seq = sc.occlusion(4, seconds=4.0, size=SMALL)
    far = next(a for a in seq.actors if a.track_id == 1)
    hidden = 0
    for _, truth in seq.frames(fps=12.5):
        x, _ = far.position(truth.t)
        if not far.present(truth.t) or not 0.1 * SMALL[0] < x < 0.9 * SMALL[0]:
            continue
        seen = {o.track_id: o for o in truth.all()}
        if 1 not in seen or seen[1].visibility < 0.5:
            hidden += 1
    assert hidden >= 2  # at 12.5 fps: at least 0.16 s mostly or wholly hidden behind the near person
    assert 0.5 <= seq.meta["occlusion_s"] <= 1.5


def test_same_seed_same_sequence_other_seed_other() -> None:
    a = sc.crossing(21, seconds=2.0, size=SMALL)
    b = sc.crossing(21, seconds=2.0, size=SMALL)
    c = sc.crossing(22, seconds=2.0, size=SMALL)
    for i in (0, 25, 49):
        (ia, ta), (ib, tb) = a.render(i), b.render(i)
        assert np.array_equal(ia, ib)
        assert _signature(ta) == _signature(tb)
    assert a.lines == b.lines and a.lines != c.lines
    assert not np.array_equal(a.render(0)[0], c.render(0)[0])


def _signature(truth: FrameTruth) -> list[tuple[int, tuple[int, int, int, int], int]]:
    return [(o.track_id, o.box, o.area) for o in truth.all()]


def test_dwell_truth_needs_the_minimum_wait() -> None:
    short = sc.dwell(8, 0.0, size=SMALL, passer=False)
    long = sc.dwell(8, 6.0, size=SMALL, passer=False)
    assert true_incidents(short, [t for _, t in short.frames(fps=5)]) == []
    found = true_incidents(long, [t for _, t in long.frames(fps=5)])
    assert [(i.rule, i.track_id) for i in found] == [("dwell", 1)]
    person = long.actors[0]
    arrive = person.path[1][0]
    # Opens min_dwell_s after the person is at least half inside: before arriving, after the 3 s.
    assert arrive - 1.5 <= found[0].open_s - sc.DWELL_MIN_S <= arrive + 0.3
    assert found[0].close_s >= person.path[2][0]


def test_crossing_truth_counts_sides_in_both_directions() -> None:
    seq = sc.crossing(2, seconds=20.0, size=SMALL)
    truths = [t for _, t in seq.frames(fps=5)]
    found = true_incidents(seq, truths)
    line = seq.lines[sc.LINE]
    for inc in found:
        actor = next(a for a in seq.actors if a.track_id == inc.track_id)
        assert actor.class_id == PERSON
        before = line_side(actor.position(inc.open_s - 0.4), line, seq.size)
        after = line_side(actor.position(inc.open_s + 0.2), line, seq.size)
        assert (before, after) == ((1, -1) if inc.rule == "cross_lr" else (-1, 1))
    walkers = [a for a in seq.actors if a.class_id == PERSON]
    crossing_walkers = {
        a.track_id
        for a in walkers
        if len({line_side(a.position(t.t), line, seq.size) for t in truths if a.present(t.t)} - {0}) == 2
    }
    assert {i.track_id for i in found} == crossing_walkers
