"""Smoke test of bench/bench_pipeline.py: one small camera through the real system for a few seconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "bench_pipeline.py"
WIDTH, HEIGHT = 320, 192


@pytest.mark.slow
@pytest.mark.ray
def test_one_camera_report_is_complete_and_plausible(tmp_path: Path) -> None:
    out, png = tmp_path / "report.json", tmp_path / "plot.png"
    cmd = [
        sys.executable, str(SCRIPT), "--cameras", "1", "--seconds", "5", "--warmup", "2",
        "--size", f"{WIDTH}x{HEIGHT}", "--clip-seconds", "2", "--inference-fps", "5",
        "--clip-dir", str(tmp_path / "clips"), "--out", str(out), "--plot", str(png),
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["settings"]["inference_fps"] == 5.0 and report["settings"]["push"] == "hls"
    (step,) = report["steps"]
    (cam,) = step["per_camera"]
    assert step["cameras"] == 1 and 4.0 <= step["seconds"] <= 30.0
    assert cam["state"] == "live" and cam["source_fps"] == pytest.approx(25.0, rel=0.01)
    # Frames moved, never more than the camera produced (a little slack for the windows' edges).
    assert 0 < cam["frames_streamed"] <= cam["frames_out"] + 5 and cam["frames_out"] <= cam["frames_expected"] * 1.1 + 3
    assert 0 < cam["frames_in"] <= cam["frames_expected"] * 1.1 + 3
    assert 0.0 <= cam["drop_rate"] <= 1.0
    assert 0.0 < cam["inference_fps"] <= 5.0 * 1.3
    # Latency from the pipeline's own histogram: observed, ordered, positive.
    assert cam["latency_samples"] > 0
    assert 0.0 < cam["latency_p50_ms"] <= cam["latency_p99_ms"]
    # CPU of each role was measured (decoder and pusher actors, the FFmpeg encoder of the HLS push).
    for role in ("decode_cores", "pusher_cores", "encode_cores"):
        assert cam[role] is not None and 0.0 < cam[role] < 4.0, role
    assert cam["frame_bytes"] == WIDTH * HEIGHT * 3
    expected_mb_s = cam["frames_submitted"] * cam["frame_bytes"] / step["seconds"] / 1e6
    assert cam["object_store_mb_s"] == pytest.approx(expected_mb_s, rel=0.01)
    assert isinstance(step["realtime"], bool) and report["largest_realtime_cameras"] in (0, 1)
    assert "| cameras |" in report["markdown"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments_fail_clearly() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--size", "3x3"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "size must be even and at least 16x16" in done.stderr
