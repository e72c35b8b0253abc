"""The bench helpers that turn Prometheus histograms and raw samples into the reported figures."""

from __future__ import annotations

import math

import pytest

from bench.common import bucket_delta, bucket_quantile, histogram, markdown_table, percentile, share_above

TEXT = """# TYPE ray_trtseg_capture_to_push_ms histogram
ray_trtseg_capture_to_push_ms_bucket{Component="core_worker",WorkerId="a",camera_id="c1",le="100.0"} 8.0
ray_trtseg_capture_to_push_ms_bucket{Component="core_worker",WorkerId="a",camera_id="c1",le="200.0"} 9.0
ray_trtseg_capture_to_push_ms_bucket{Component="core_worker",WorkerId="a",camera_id="c1",le="+Inf"} 10.0
ray_trtseg_capture_to_push_ms_bucket{Component="core_worker",WorkerId="b",camera_id="c1",le="100.0"} 2.0
ray_trtseg_capture_to_push_ms_bucket{Component="core_worker",WorkerId="b",camera_id="c1",le="200.0"} 2.0
ray_trtseg_capture_to_push_ms_bucket{Component="core_worker",WorkerId="b",camera_id="c1",le="+Inf"} 2.0
ray_trtseg_capture_to_push_ms_bucket{Component="core_worker",WorkerId="a",camera_id="c2",le="100.0"} 1.0
ray_trtseg_capture_to_push_ms_bucket{Component="core_worker",WorkerId="a",camera_id="c2",le="+Inf"} 1.0
ray_trtseg_capture_to_push_ms_count{camera_id="c1"} 12.0
ray_other_bucket{camera_id="c1",le="+Inf"} 99.0
"""


def test_histogram_sums_workers_per_camera() -> None:
    parsed = histogram(TEXT, "ray_trtseg_capture_to_push_ms", "camera_id")
    assert parsed["c1"] == {100.0: 10.0, 200.0: 11.0, math.inf: 12.0}
    assert parsed["c2"] == {100.0: 1.0, math.inf: 1.0}


def test_quantiles_interpolate_inside_buckets_and_share_is_exact() -> None:
    buckets = {100.0: 10.0, 200.0: 11.0, math.inf: 12.0}
    assert bucket_quantile(buckets, 0.5) == pytest.approx(60.0)  # rank 6 of 10 in (0, 100]
    assert bucket_quantile(buckets, 0.99) == 200.0  # beyond the last finite bound: that bound
    assert share_above(buckets, 200.0) == pytest.approx(1 / 12)
    assert share_above(buckets, 150.0) is None  # not a boundary: no exact answer
    assert bucket_quantile({math.inf: 0.0}, 0.5) is None


def test_delta_between_scrapes() -> None:
    before = {100.0: 4.0, math.inf: 5.0}
    assert bucket_delta({100.0: 10.0, math.inf: 12.0}, before) == {100.0: 6.0, math.inf: 7.0}
    assert bucket_delta({100.0: 1.0}, None) == {100.0: 1.0}


def test_percentile_of_samples() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([0.0, 10.0], 0.99) == pytest.approx(9.9)


def test_markdown_table_marks_missing_values() -> None:
    table = markdown_table(["a", "b"], [[1, None], [2.25, "x"]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | - |", "| 2.2 | x |"]
