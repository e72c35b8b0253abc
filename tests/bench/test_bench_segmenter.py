"""Smoke test of bench/bench_segmenter.py: the segmentation service fed by decoder-like processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "bench_segmenter.py"


@pytest.mark.slow
def test_two_cameras_through_the_channel_are_all_answered(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    cmd = [
        sys.executable, str(SCRIPT), "--cameras", "2", "--fps", "4", "--seconds", "3", "--warmup", "1",
        "--ramp", "8", "--engine-seconds", "1", "--clients", "2", "--size", "320x192", "--batch-size", "2",
        "--distinct-frames", "2", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["cameras"] == 2 and report["errors"] == 0
    # 2 cameras at 4 fps for 3 s: about 24 frames offered; a few at the window's edges may fall out.
    assert 18 <= report["offered_per_s"] * 3 <= 30
    assert 0.0 < report["answered_per_s"] <= report["offered_per_s"] + 1
    assert report["batching"]["batches"] > 0 and 1.0 <= report["batching"]["mean_batch_size"] <= 2.0
    stages = report["engine_in_service"]
    assert stages["infer_ms_per_batch"] > 0 and stages["post_ms_per_batch"] >= 0
    assert report["engine_alone"]["pageable"]["frames_per_s"] > 0
    assert report["latency_ms"]["p50"] is not None and report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]
