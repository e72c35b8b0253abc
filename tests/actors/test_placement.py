"""Placement: spread by weighted load, node affinity, rebalancing when nodes join or leave."""

from __future__ import annotations

from collections import Counter

import pytest

from trtseg.placement import PlacementPlan, SegmenterSlot, loads, plan, segmenter_slots_for_nodes


def cams(n: int) -> list[str]:
    return [f"cam{i:02d}" for i in range(n)]


def per_segmenter(result: PlacementPlan) -> Counter[str]:
    return Counter(result.assignment.values())


def test_cameras_spread_evenly_over_equal_segmenters() -> None:
    slots = [SegmenterSlot("a", "n1"), SegmenterSlot("b", "n1"), SegmenterSlot("c", "n2")]
    result = plan(cams(7), slots)
    assert sorted(per_segmenter(result).values()) == [2, 2, 3]
    assert result.moved == [] and result.unplaced == []


def test_weights_give_bigger_segmenters_more_cameras() -> None:
    slots = [SegmenterSlot("big", "n1", weight=2.0), SegmenterSlot("small", "n2", weight=1.0)]
    result = plan(cams(9), slots)
    assert per_segmenter(result) == Counter({"big": 6, "small": 3})


def test_node_affinity_follows_the_segmenter() -> None:
    slots = [SegmenterSlot("a", "node-A"), SegmenterSlot("b", "node-B")]
    result = plan(cams(4), slots)
    for camera_id, key in result.assignment.items():
        assert result.node_of(camera_id, slots) == {"a": "node-A", "b": "node-B"}[key]
    assert result.node_of("missing", slots) is None


def test_existing_assignment_is_kept_when_balanced() -> None:
    slots = [SegmenterSlot("a", "n1"), SegmenterSlot("b", "n2")]
    current = {"cam00": "b", "cam01": "a", "cam02": "b"}
    result = plan(cams(3), slots, current)
    assert result.assignment == current and result.moved == []


def test_new_camera_goes_to_least_loaded() -> None:
    slots = [SegmenterSlot("a", "n1"), SegmenterSlot("b", "n2")]
    current = {"cam00": "a", "cam01": "a", "cam02": "b"}
    result = plan([*current, "new"], slots, current)
    assert result.assignment["new"] == "b"
    assert result.moved == []


def test_node_join_moves_cameras_to_the_new_segmenter() -> None:
    old = [SegmenterSlot("a", "n1")]
    first = plan(cams(6), old)
    assert per_segmenter(first) == Counter({"a": 6})
    joined = [*old, SegmenterSlot("b", "n2")]
    second = plan(cams(6), joined, first.assignment)
    assert per_segmenter(second) == Counter({"a": 3, "b": 3})
    assert len(second.moved) == 3 and all(second.assignment[c] == "b" for c in second.moved)


def test_node_loss_reassigns_its_cameras_only() -> None:
    slots = [SegmenterSlot("a", "n1"), SegmenterSlot("b", "n2"), SegmenterSlot("c", "n3")]
    first = plan(cams(6), slots)
    lost = {c for c, k in first.assignment.items() if k == "c"}
    survivors = [s for s in slots if s.key != "c"]
    second = plan(cams(6), survivors, first.assignment)
    assert set(second.moved) == lost
    for camera_id in set(cams(6)) - lost:
        assert second.assignment[camera_id] == first.assignment[camera_id]
    assert sorted(per_segmenter(second).values()) == [3, 3]


def test_rebalance_can_be_disabled_or_bounded() -> None:
    slots = [SegmenterSlot("a", "n1"), SegmenterSlot("b", "n2")]
    current = dict.fromkeys(cams(6), "a")
    assert plan(cams(6), slots, current, rebalance=False).moved == []
    assert len(plan(cams(6), slots, current, max_moves=1).moved) == 1


def test_no_segmenters_leaves_cameras_unplaced() -> None:
    result = plan(cams(2), [])
    assert result.assignment == {} and result.unplaced == ["cam00", "cam01"]


def test_removed_cameras_drop_out_of_the_assignment() -> None:
    slots = [SegmenterSlot("a", "n1")]
    result = plan(["cam01"], slots, {"cam00": "a", "cam01": "a"})
    assert result.assignment == {"cam01": "a"}


def test_loads_are_weighted() -> None:
    slots = [SegmenterSlot("a", "n1", 0.5), SegmenterSlot("b", "n1", 1.0)]
    assert loads({"x": "a", "y": "b", "z": "b"}, slots) == {"a": 2.0, "b": 2.0}


def test_bad_weight_is_refused() -> None:
    with pytest.raises(ValueError, match="weight"):
        SegmenterSlot("a", "n1", 0)


def _node(node_id: str, gpus: float = 0, alive: bool = True) -> dict[str, object]:
    resources: dict[str, float] = {"CPU": 4.0}
    if gpus:
        resources["GPU"] = gpus
    return {"NodeID": node_id, "Alive": alive, "Resources": resources}


def test_one_segmenter_per_gpu_on_gpu_nodes() -> None:
    slots = segmenter_slots_for_nodes([_node("n1", 2), _node("n2", 1), _node("n3", 0)], 1, cpu_segmenters=4)
    assert Counter(s.node_id for s in slots) == Counter({"n1": 2, "n2": 1})
    assert all(s.weight == 1.0 for s in slots)
    result = plan(cams(6), slots)
    nodes = Counter(result.node_of(c, slots) for c in cams(6))
    assert nodes == Counter({"n1": 4, "n2": 2}), "a node with two GPUs takes twice the cameras"


def test_segmenters_per_gpu_share_the_gpu_weight() -> None:
    slots = segmenter_slots_for_nodes([_node("n1", 1)], 2, cpu_segmenters=1)
    assert [s.weight for s in slots] == [0.5, 0.5]


def test_cpu_cluster_spreads_cpu_segmenters_and_skips_dead_nodes() -> None:
    slots = segmenter_slots_for_nodes([_node("n1"), _node("n2"), _node("n3", alive=False)], 1, cpu_segmenters=3)
    assert [s.key for s in slots] == ["cpu-n1-0", "cpu-n2-0", "cpu-n1-1"]
    assert [s.node_id for s in slots] == ["n1", "n2", "n1"]
    joined = segmenter_slots_for_nodes([_node("n1"), _node("n2"), _node("n3")], 1, cpu_segmenters=3)
    assert [s.node_id for s in joined] == ["n1", "n2", "n3"], "a joining node gets a CPU segmenter"
    assert {s.key for s in slots} - {s.key for s in joined} == {"cpu-n1-1"}, "only the surplus one moves"
    assert segmenter_slots_for_nodes([], 1, cpu_segmenters=2) == []
