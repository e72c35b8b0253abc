"""Make INT8 (Q/DQ) and FP16 models from an FP32 Ultralytics segmentation export.

The entry points the CLI (``calibrate``) and tools/accuracy_report.py call; the work is in
``engines.quant``: frame sampling, the calibration set, INT8 quantization, FP16 conversion, and
the provenance every produced model carries in its ONNX metadata.

Example::

    calibrate("models/trtseg-cable-n.onnx", ["site1.mp4", "rtsp://cam2/stream"],
              "models/trtseg-cable-n.int8.onnx", count=128, sampling="uniform", method="percentile")
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from engines.quant.calibration import CalibrationSet, build_calibration_set
from engines.quant.common import QuantizationError, load_source_model, read_provenance
from engines.quant.exclusions import DEFAULT_PATTERNS
from engines.quant.fp16 import convert_fp16
from engines.quant.int8 import METHODS, Target, quantize_int8, tensorrt_qdq_problems
from engines.quant.sampling import Sampling

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PATTERNS",
    "METHODS",
    "CalibrationSet",
    "QuantizationError",
    "Sampling",
    "calibrate",
    "convert_fp16",
    "read_provenance",
    "tensorrt_qdq_problems",
]


def calibrate(
    model: Path | str,
    sources: Sequence[str | Path],
    out: Path | str,
    count: int = 128,
    sampling: Sampling | str = "uniform",
    method: str = "percentile",
    exclude: Sequence[str] | None = None,
    *,
    target: Target = "tensorrt",
    imgsz: tuple[int, int] | None = None,
    default_exclusions: bool = True,
    cache: Path | str | None = "auto",
) -> Path:
    """Calibrate on ``count`` frames of ``sources`` and write an INT8 Q/DQ model to ``out``.

    sampling: ``uniform`` | ``every:K`` | ``random[:SEED]`` (per source; ``count`` is shared).
    method: ``percentile`` (99.999 %, default: on the demo model the closest to FP32 and fast),
    ``minmax``, or ``entropy`` (TensorRT-style KL search: minutes on a CPU, and no better here).
    exclude: extra node-name regexes kept in float (the head's final convolutions, box decoding
    and prototype output always are, unless ``default_exclusions=False``).
    target: ``tensorrt`` (symmetric int8, also runs on ONNX Runtime) or ``cpu`` (uint8
    activations, ONNX Runtime's fastest CPU form).
    cache: the calibration ``.npy`` (``auto``: next to ``out``; None: not cached). Returns ``out``.
    """
    out = Path(out)
    if out.suffix != ".onnx":
        raise QuantizationError(f"output model must be an .onnx path, got {out}")
    if method.lower() not in METHODS:
        raise QuantizationError(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)}")
    _, info = load_source_model(model)  # refuse a bad model before decoding any video
    cache_path = out.with_suffix(".calib.npy") if cache == "auto" else (Path(cache) if cache else None)
    calib = build_calibration_set(sources, info, count, sampling, imgsz, cache_path)
    return quantize_int8(
        model,
        out,
        calib.as_float(),
        method=method,
        exclude=exclude,
        default_exclusions=default_exclusions,
        target=target,
        provenance=calib.provenance(),
    )
