"""Shared checks of the quantization tests: run a model in ONNX Runtime on held-out scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from engines.preprocess import preprocess


def heldout_batch(imgsz: tuple[int, int], count: int = 4) -> np.ndarray:
    """Letterboxed inputs of scenes never used for calibration (seeds far from the clip's)."""
    from datasets.scenes import SceneConfig, generate_scene

    frames = [generate_scene(5000 + i, SceneConfig(size=(640, 360))).image for i in range(count)]
    batch, _ = preprocess(frames, imgsz, 32, rectangular=False)
    return batch


def run(model: Path, batch: np.ndarray) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch})


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])
