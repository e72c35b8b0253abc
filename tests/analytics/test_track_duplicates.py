"""ObjectTracker's duplicate-track merge: two tracks on one object become one, the older id stays."""

from __future__ import annotations

import pytest

from tests.analytics.test_tracking import Obj, run
from trtseg.config.analytics import TrackerConfig

B = (400.0, 200.0, 500.0, 400.0)  # a standing person
B2 = (405.0, 200.0, 505.0, 400.0)  # a second box of the same person (IoU 0.90 with B)


def frames() -> list[list[Obj]]:
    """The person alone, then reported twice for five frames (a second track starts and is confirmed),
    then alone again, its box swinging between the two."""
    return [[Obj(B)]] * 10 + [[Obj(B), Obj(B2)]] * 5 + [[Obj(B2)], [Obj(B)]] * 10


def test_a_lost_track_on_the_same_box_as_a_matched_one_is_merged_into_the_older() -> None:
    tracker, ids = run(frames(), TrackerConfig())
    assert ids[0] == [1]
    assert ids[12:15] == [[1, 2]] * 3  # two boxes in one frame: two tracks once the second is confirmed
    assert {i for row in ids[15:] for i in row} == {1}  # one object again: the first id, never the second
    assert tracker.stats["lost"] == 0  # the younger track is gone, not coasting


def test_without_the_merge_the_two_tracks_take_turns() -> None:
    tracker, ids = run(frames(), TrackerConfig(duplicate_track_iou=1.0))
    assert ids[12:15] == [[1, 2]] * 3
    assert {i for row in ids[15:] for i in row} == {1, 2}  # the two take the object in turns
    assert tracker.stats["lost"] == 1


@pytest.mark.parametrize("shift", [60.0, 150.0])
def test_two_people_side_by_side_keep_both_ids(shift: float) -> None:
    # Boxes that overlap less than duplicate_track_iou are two objects, one hidden by the other.
    other = (B[0] + shift, B[1], B[2] + shift, B[3])
    _, ids = run([[Obj(B), Obj(other)]] * 10 + [[Obj(B)]] * 10 + [[Obj(B), Obj(other)]] * 3)
    assert ids[0] == [1, 2] and ids[-1] == [1, 2]
