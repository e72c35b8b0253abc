"""TrackRelinker: a new track where a lost one of the same class just was keeps its identity."""

from __future__ import annotations

import numpy as np

from trtseg.analytics.relink import TrackRelinker

CABLE = np.array([[10, 10, 50, 90]], np.float32)


def test_a_new_track_in_a_lost_tracks_place_takes_its_identity() -> None:
    relinker = TrackRelinker(window_s=3.0, min_iou=0.4)
    assert relinker.identities([1], ["charging_cable"], CABLE, 0.0) == [1]
    assert relinker.identities([], [], np.zeros((0, 4)), 0.5) == []
    assert relinker.identities([7], ["charging_cable"], CABLE + 2, 1.0) == [1]
    assert relinker.identities([7], ["charging_cable"], CABLE + 3, 1.2) == [1] and relinker.relinked == 1


def test_no_relink_for_another_class_another_place_a_present_track_or_too_late() -> None:
    relinker = TrackRelinker(window_s=3.0, min_iou=0.4)
    relinker.identities([1], ["charging_cable"], CABLE, 0.0)
    assert relinker.identities([2], ["person"], CABLE, 0.5) == [2]  # another class
    assert relinker.identities([3], ["charging_cable"], CABLE + 100, 0.6) == [3]  # elsewhere
    both = np.concatenate([CABLE, CABLE + 1])
    assert relinker.identities([1, 4], ["charging_cable"] * 2, both, 0.7) == [1, 4]  # 1 is still there
    late = TrackRelinker(window_s=3.0)
    late.identities([1], ["charging_cable"], CABLE, 0.0)
    assert late.identities([5], ["charging_cable"], CABLE, 3.5) == [5]
    assert late.relinked == 0 and relinker.relinked == 0


def test_a_walker_is_relinked_where_its_pace_would_have_taken_it() -> None:
    relinker = TrackRelinker(window_s=3.0, min_iou=0.4)
    person = np.array([[100, 100, 140, 200]], np.float32)
    for step in range(4):  # 40 px a second to the right
        relinker.identities([1], ["person"], person + np.array([40 * step, 0, 40 * step, 0]), float(step))
    hidden_for = 1.5  # behind a pillar, then a new track where the walk leads
    later = person + np.array([40 * (3 + hidden_for), 0, 40 * (3 + hidden_for), 0])
    assert relinker.identities([9], ["person"], later, 3.0 + hidden_for) == [1]
    standing = TrackRelinker(window_s=3.0, min_iou=0.4)
    standing.identities([1], ["person"], person, 0.0)
    assert standing.identities([9], ["person"], later, 1.5) == [9]  # nobody walked there


def test_a_waiting_person_whose_box_jumped_when_hidden_is_relinked_where_last_seen() -> None:
    # Someone waits; a passer-by hides half of them, so the box shrinks for a frame and the pace from
    # the last two sightings is a jump. They reappear in place under a new id: where they were last
    # seen counts as much as where that pace would have taken them.
    relinker = TrackRelinker(window_s=3.0, min_iou=0.4)
    person = np.array([[100, 100, 160, 260]], np.float32)
    relinker.identities([1], ["person"], person, 0.0)
    relinker.identities([1], ["person"], person, 0.2)
    relinker.identities([1], ["person"], np.array([[100, 100, 130, 260]], np.float32), 0.4)  # half hidden
    assert relinker.identities([2], ["person"], person, 1.4) == [1]
    far = TrackRelinker(window_s=3.0, min_iou=0.4)
    far.identities([1], ["person"], person, 0.0)
    assert far.identities([2], ["person"], person + np.array([70, 0, 70, 0]), 1.0) == [2]  # not where it was
