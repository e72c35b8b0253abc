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


def test_without_the_merges_the_two_tracks_take_turns() -> None:
    tracker, ids = run(frames(), TrackerConfig(duplicate_track_iou=1.0, turn_taking_merge=0))
    assert ids[12:15] == [[1, 2]] * 3
    assert {i for row in ids[15:] for i in row} == {1, 2}  # the two take the object in turns
    assert tracker.stats["lost"] == 1


def test_the_turn_taking_merge_alone_also_ends_the_turns() -> None:
    tracker, ids = run(frames(), TrackerConfig(duplicate_track_iou=1.0))
    assert ids[12:15] == [[1, 2]] * 3
    assert {i for row in ids[18:] for i in row} == {1}  # after three handovers in a row, the first id only
    assert tracker.stats["lost"] == 0


@pytest.mark.parametrize("shift", [60.0, 150.0])
def test_two_people_side_by_side_keep_both_ids(shift: float) -> None:
    # Boxes that overlap less than duplicate_track_iou are two objects, one hidden by the other.
    other = (B[0] + shift, B[1], B[2] + shift, B[3])
    _, ids = run([[Obj(B), Obj(other)]] * 10 + [[Obj(B)]] * 10 + [[Obj(B), Obj(other)]] * 3)
    assert ids[0] == [1, 2] and ids[-1] == [1, 2]


# ------------------------------------------------------------------------- tracks taking turns

N = (400.0, 200.0, 460.0, 400.0)  # a walker, legs together
W = (385.0, 200.0, 475.0, 400.0)  # the same walker mid-stride (IoU 0.67 with N: no box merge)
FIVE_FPS = 0.2


def turns() -> list[list[Obj]]:
    """The walker alone, then boxed twice for two frames (a second track starts and, at 5 fps, is
    confirmed), then alone, its box swinging between narrow and wide with the stride."""
    return [[Obj(N)]] * 5 + [[Obj(N), Obj(W)]] * 2 + [[Obj(W)], [Obj(N)]] * 8


def _at_5fps(frames: list[list[Obj]]) -> list[float]:
    return [i * FIVE_FPS for i in range(len(frames))]


def test_without_the_turn_taking_merge_two_tracks_take_one_walker_in_turns() -> None:
    # What #18's duplicate was: the lost track's frozen box fits the next swing better, every frame.
    frames = turns()
    _, ids = run(frames, TrackerConfig(turn_taking_merge=0), _at_5fps(frames))
    assert ids[6] == [1, 2]  # the second box's track is confirmed
    assert [row[0] for row in ids[7:13]] == [2, 1, 2, 1, 2, 1]  # one object, two ids in turns


def test_tracks_that_hand_one_detection_back_and_forth_are_merged_into_the_older() -> None:
    frames = turns()
    tracker, ids = run(frames, TrackerConfig(), _at_5fps(frames))
    assert ids[6] == [1, 2]
    # Handovers at frames 8 (to 1), 9 (to 2) and 10 (to 1, the third in a row): from there one id, the first.
    assert [row[0] for row in ids[7:10]] == [2, 1, 2]
    assert {row[0] for row in ids[10:]} == {1}
    assert tracker.stats["lost"] == 0 and tracker.stats["confirmed"] == 1


def swap_and_return() -> list[list[Obj]]:
    """Two people overlapping (one box each), then seen as one box for three frames while their two
    tracks swap it and swap it back, then apart again."""
    return [[Obj(N), Obj(W)]] * 5 + [[Obj(W)], [Obj(N)], [Obj(W)]] + [[Obj(N), Obj(W)]] * 5


@pytest.mark.parametrize(("need", "kept"), [(3, [1, 2]), (2, [3, 1])])
def test_one_swap_and_its_return_keep_both_tracks(need: int, kept: list[int | None]) -> None:
    # One handover and its return is what an occlusion's id swap and its repair look like: two objects.
    frames = swap_and_return()
    _, ids = run(frames, TrackerConfig(turn_taking_merge=need), _at_5fps(frames))
    assert ids[0] == [1, 2]
    assert [row[0] for row in ids[5:7]] == [2, 1]  # the handover and its return
    assert ids[-1] == kept  # merged after two handovers only when asked to: one of the two comes back as new
