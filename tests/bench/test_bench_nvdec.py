"""bench/bench_nvdec.py on the GPU machine: every step measured, the report rendered (no timing asserted)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from bench import bench_nvdec
from bench.common import CLIP_SIZE

HAS_NVDEC = importlib.util.find_spec("PyNvVideoCodec") is not None and importlib.util.find_spec("cupy") is not None


def test_the_report_renders_without_a_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    decode = {"items": 50, "cpu_ms_per_frame": 0.2, "wall_ms_per_frame": 1.1}
    upload = {"items": 300, "cpu_ms_per_frame": 0.006, "wall_ms_per_frame": 0.05}
    report = {
        "decoder": {"decode (NVDEC, RGB out)": decode},
        "segmenter": {"page-locked slot uploaded by DMA (now)": upload},
    }
    path = tmp_path / "nvdec.json"
    path.write_text(json.dumps(report))
    assert bench_nvdec.main(["--from-json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| decoder: decode (NVDEC, RGB out) | 0.200 | 1.100 |" in out
    assert "| segmenter: page-locked slot uploaded by DMA (now) | 0.006 | 0.050 |" in out


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not HAS_NVDEC, reason="needs PyNvVideoCodec and CuPy on a GPU machine")
def test_every_step_is_measured_on_the_gpu(tmp_path: Path) -> None:
    from datasets.video import render_sample_video

    clip = tmp_path / "clip.mp4"
    render_sample_video(clip, seconds=2.0, fps=25, size=CLIP_SIZE, seed=0)
    out = tmp_path / "nvdec.json"
    assert bench_nvdec.main(["--clip", str(clip), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert len(report["decoder"]) == 6 and len(report["segmenter"]) == 3
    assert all(row["items"] == 50 for row in report["decoder"].values())  # every frame of the clip, each step
    assert all(row["cpu_ms_per_frame"] > 0 and row["wall_ms_per_frame"] > 0 for row in report["segmenter"].values())
