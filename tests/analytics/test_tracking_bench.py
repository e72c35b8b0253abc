"""bench/bench_analytics_cost.py runs end to end on a tiny scene (so the benchmark does not rot)."""

from __future__ import annotations

import pytest

from bench import bench_analytics_cost


def test_cost_bench_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_analytics_cost.main(["--objects", "2,4", "--frames", "8", "--warmup", "2", "--with-rules"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split("|")[1].strip() for row in rows] == ["2", "4"]
    assert "n/a" not in out  # the camera analytics ran too


def test_scene_moves_objects_with_masks_inside_the_frame() -> None:
    scene = bench_analytics_cost.make_scene(6, 30, seed=1)
    assert len(scene) == 30
    for dets in scene:
        assert dets.masks is not None and len(dets.masks) == len(dets)
        assert (dets.boxes[:, :2] >= 0).all() and (dets.boxes[:, 2] <= 1280).all() and (dets.boxes[:, 3] <= 720).all()
