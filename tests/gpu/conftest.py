"""Fixtures of the GPU tests: the model, generated 720p scenes and frames of awkward sizes.

The model is ``$TRTSEG_TEST_MODEL`` when set, else the shipped ``models/trtseg-cable-n.onnx``; tests
that need one skip with the reason when neither exists.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def model_path() -> Path | None:
    candidates = [os.environ.get("TRTSEG_TEST_MODEL"), str(ROOT / "models" / "trtseg-cable-n.onnx")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def seg_model() -> Path:
    path = model_path()
    if path is None:
        pytest.skip("no segmentation model (set TRTSEG_TEST_MODEL or add models/trtseg-cable-n.onnx)")
    return path


@pytest.fixture(scope="session")
def scenes() -> list[np.ndarray]:
    """Generated 1280x720 scenes with cables, e-bikes and people (the demo model's domain)."""
    from datasets.scenes import generate_scene

    return [generate_scene(seed).image for seed in (3, 11, 19, 27)]


@pytest.fixture(scope="session")
def odd_frames(scenes: list[np.ndarray]) -> list[np.ndarray]:
    """Sizes that exercise the geometry: 4:3, portrait, odd sides, tiny."""
    rng = np.random.default_rng(5)
    return [
        cv2.resize(scenes[0], (640, 480), interpolation=cv2.INTER_AREA),
        np.ascontiguousarray(cv2.resize(scenes[1], (405, 720), interpolation=cv2.INTER_AREA)),
        rng.integers(0, 256, (333, 517, 3), dtype=np.uint8),
        rng.integers(0, 256, (17, 29, 3), dtype=np.uint8),
    ]


@pytest.fixture(scope="session")
def gpu_context():  # type: ignore[no-untyped-def]
    from engines.gpu.memory import GpuContext

    ctx = GpuContext("cuda")
    yield ctx
    ctx.release()
