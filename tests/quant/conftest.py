"""Fixtures of the quantization tests: a real YOLOv8-seg export, a real clip, a real data set.

The model is the shipped demo model (``models/trtseg-cable-n.onnx``, a trained YOLOv8n-seg), or
the export named by ``TRTSEG_TEST_SEG_MODEL``; quantization is exercised on a real network graph,
not on a toy one, because what it must get right (which nodes stay float, Q/DQ placement, output
agreement) depends on that graph. Calibration runs at a small input (192x320) to stay fast.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL_IMGSZ = (192, 320)


@pytest.fixture(scope="session")
def seg_model() -> Path:
    """The FP32 segmentation ONNX the tests quantize."""
    path = Path(os.environ.get("TRTSEG_TEST_SEG_MODEL", ROOT / "models" / "trtseg-cable-n.onnx"))
    if not path.is_file():
        pytest.skip(f"no segmentation model at {path} (set TRTSEG_TEST_SEG_MODEL to an Ultralytics -seg ONNX)")
    return path


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4 s 320x180 H.264 clip of rendered scenes: real footage for PyAV to sample."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    import cv2

    from datasets.scenes import SceneConfig, generate_scene

    folder = tmp_path_factory.mktemp("clip")
    for i in range(8):
        scene = generate_scene(1000 + i, SceneConfig(size=(320, 180)))
        cv2.imwrite(str(folder / f"f{i:03d}.png"), scene.image)
    out = folder / "scenes.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-framerate", "2", "-i", str(folder / "f%03d.png"),
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "2", "-r", "10", str(out)],
        check=True, timeout=60,
    )  # fmt: skip
    return out


@pytest.fixture(scope="session")
def scenes_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small held-out YOLO segmentation data set drawn by datasets.yolo (data.yaml path)."""
    from datasets.scenes import SceneConfig
    from datasets.yolo import write_yolo_dataset

    return write_yolo_dataset(tmp_path_factory.mktemp("ds"), {"test": 6}, SceneConfig(size=(640, 360)))
