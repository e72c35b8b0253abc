"""Soak: the leak analysis finds leaks in made-up series, and a short real soak passes it (tools/soak.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tools.soak import MODEL, Bounds, analyse, run_soak


def _samples(
    rss: list[float], fds: list[float], ffmpeg_count: float = 1.0, frames_step: int = 10
) -> list[dict[str, Any]]:
    out = []
    for i, (r, f) in enumerate(zip(rss, fds, strict=True)):
        out.append(
            {
                "t": 1000.0 + 5 * i,
                "processes": {"pusher:cam": {"rss_mb": r, "fds": f}},
                "ffmpeg": {"pusher:cam": {"rss_mb": 50.0, "fds": 3.0, "count": ffmpeg_count}},
                "queues": {"camera:cam": {"frames_out": frames_step * i, "frames_in": 10 * i, "drops": 0}},
                "gpu_mb": None,
            }
        )
    return out


def test_analysis_flags_memory_fd_and_encoder_leaks_and_stalls() -> None:
    flat = _samples([200.0 + (i % 2) for i in range(20)], [50.0] * 20)
    assert analyse(flat, warmup_s=10, bounds=Bounds())["ok"]

    growing = _samples([200.0 + 3 * i for i in range(20)], [50.0] * 20)
    found = analyse(growing, warmup_s=10, bounds=Bounds())
    assert not found["ok"] and any("RSS" in f for f in found["failures"])

    fds = _samples([200.0] * 20, [50.0 + i for i in range(20)])
    assert any("open files" in f for f in analyse(fds, 10, Bounds())["failures"])

    encoders = _samples([200.0] * 20, [50.0] * 20, ffmpeg_count=2.0)
    assert any("FFmpeg" in f for f in analyse(encoders, 10, Bounds())["failures"])

    stalled = _samples([200.0] * 20, [50.0] * 20, frames_step=0)
    assert any("stalled" in f for f in analyse(stalled, 10, Bounds())["failures"])

    early_growth_only = _samples([100.0 + 20 * min(i, 3) for i in range(20)], [50.0] * 20)
    assert analyse(early_growth_only, warmup_s=20, bounds=Bounds())["ok"], "warm-up growth is not a leak"


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.skipif(not MODEL.is_file(), reason="models/trtseg-cable-n.onnx is missing")
def test_short_soak_two_cameras(tmp_path: Path) -> None:
    report = run_soak(tmp_path, cameras=2, duration_s=75.0, warmup_s=25.0, interval_s=3.0, inference_fps=3.0)
    assert report["ok"], report["failures"]
    assert set(report["frames_out_steady"]) == {"camera:soak0", "camera:soak1"}
    kinds = {key.split(":")[0] for key in report["processes"]}
    assert {"decoder", "pusher", "SegmenterActor", "SinkActor", "Controller"} <= kinds, kinds
    assert len(report["ffmpeg"]) == 2
    assert report["events"]["opened"] > 0 and report["events"]["ok"], report["events"]
