"""INT8 static quantization in Q/DQ format with ONNX Runtime, calibrated on the user's frames.

Q/DQ (QuantizeLinear/DequantizeLinear pairs around float ops) is the one INT8 form both runtimes
take: ONNX Runtime fuses the pairs into integer kernels, and TensorRT builds a strongly typed
network from them without a calibrator. Two targets:

- ``tensorrt``: int8 activations with zero point 0 (symmetric) and float biases — TensorRT accepts
  only symmetric int8 scales and has no int32 bias dequantization. ONNX Runtime runs it too.
- ``cpu``: uint8 asymmetric activations (u8s8 kernels; ONNX Runtime's fastest x86 path).

Weights are int8, symmetric, per output channel in both.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data
from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
from onnxruntime.quantization.shape_inference import quant_pre_process

from engines.quant.common import (
    QuantizationError,
    load_source_model,
    metadata_dict,
    save_model,
    sha256_file,
    write_metadata,
)
from engines.quant.exclusions import resolve_exclusions

logger = logging.getLogger(__name__)

Target = Literal["tensorrt", "cpu"]
ENTROPY_BINS = 512  # entropy histogram bins: its KL search runs ~bins/2 python steps per tensor (2048: minutes)
PERCENTILE_BINS = 2048
PERCENTILE = 99.999
METHODS: dict[str, CalibrationMethod] = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


class ArrayReader(CalibrationDataReader):
    """Feeds a (N, 3, H, W) float32 calibration array to the calibrator in small batches."""

    def __init__(self, input_name: str, data: np.ndarray, batch: int = 1) -> None:
        self.input_name, self.data, self.batch = input_name, data, max(1, batch)
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.data):
            return None
        chunk = np.ascontiguousarray(self.data[self.position : self.position + self.batch], dtype=np.float32)
        self.position += self.batch
        return {self.input_name: chunk}

    def rewind(self) -> None:
        self.position = 0


def quantize_int8(
    model: Path | str,
    out: Path | str,
    calibration: np.ndarray,
    method: str = "percentile",
    exclude: Iterable[str] | None = None,
    default_exclusions: bool = True,
    target: Target = "tensorrt",
    provenance: dict[str, object] | None = None,
) -> Path:
    """Quantize an FP32 segmentation export to a Q/DQ INT8 model at ``out``; returns ``out``.

    ``calibration``: letterboxed network inputs (N, 3, H, W) float32 in [0, 1].
    ``exclude``: extra regular expressions of node names kept in float.
    """
    src, out = Path(model), Path(out)
    source, _ = load_source_model(src)
    key = method.lower()
    if key not in METHODS:
        raise QuantizationError(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)}")
    if target not in ("tensorrt", "cpu"):
        raise QuantizationError(f"unknown quantization target {target!r}; use 'tensorrt' or 'cpu'")
    if calibration.ndim != 4 or calibration.shape[1] != 3 or len(calibration) == 0:
        raise QuantizationError(f"calibration data must be (N>0, 3, H, W), got shape {calibration.shape}")
    opset = max((o.version for o in source.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 13:
        raise QuantizationError(f"opset {opset} < 13: per-channel Q/DQ needs opset 13+; re-export the model")

    with tempfile.TemporaryDirectory(prefix="trtseg-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        _pre_process(src, prepared)
        names = [n.name for n in onnx.load(str(prepared), load_external_data=False).graph.node]
        excluded = resolve_exclusions(names, exclude, default_exclusions)
        activation = QuantType.QInt8 if target == "tensorrt" else QuantType.QUInt8
        extra: dict[str, object] = {
            "ActivationSymmetric": target == "tensorrt",
            "WeightSymmetric": True,
            "QuantizeBias": target != "tensorrt",
            "QDQOpTypePerChannelSupportToAxis": {"ConvTranspose": 1},
        }
        logger.info(
            "int8 calibration start model=%s frames=%d shape=%s method=%s target=%s excluded=%d",
            src.name, len(calibration), tuple(calibration.shape[1:]), key, target, len(excluded),
        )  # fmt: skip
        ranges = _calibrate_ranges(prepared, Path(tmp), ArrayReader(source.graph.input[0].name, calibration), key)
        quantized = Path(tmp) / "quantized.onnx"
        quantize_static(
            str(prepared),
            str(quantized),
            None,
            calibration_cache_path=str(ranges),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=activation,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            calibrate_method=METHODS[key],
            extra_options=extra,
        )
        result = onnx.load(str(quantized))
    write_metadata(
        result,
        metadata_dict(source),
        "int8",
        {
            "source_sha256": sha256_file(src),
            "source_name": src.name,
            "calibration_method": key,
            "target": target,
            "activation_type": "int8" if target == "tensorrt" else "uint8",
            "weight_type": "int8 per-channel symmetric",
            "excluded_nodes": excluded,
            **(provenance or {}),
        },
    )
    return save_model(result, out)


def _calibrate_ranges(prepared: Path, tmp: Path, reader: ArrayReader, method: str) -> Path:
    """Measure activation ranges and save them where ``quantize_static`` reads a calibration cache.

    Done here rather than inside ``quantize_static`` because that call cannot set histogram bins:
    its entropy calibrator then has as many bins as quantized bins (128/128), so the KL search has
    a single candidate and entropy silently equals min-max. TensorRT's entropy calibration uses
    2048 bins searched down to 128; so do we.
    """
    options: dict[str, object] = {}
    if method == "entropy":
        options = {"num_bins": ENTROPY_BINS, "num_quantized_bins": 128}
    elif method == "percentile":
        options = {"num_bins": PERCENTILE_BINS, "percentile": PERCENTILE}
    op_types = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))
    calibrator = create_calibrator(
        prepared, op_types, augmented_model_path=str(tmp / "augmented.onnx"), calibrate_method=METHODS[method],
        extra_options=options,
    )  # fmt: skip
    start = time.perf_counter()
    calibrator.collect_data(reader)
    ranges = calibrator.compute_data()
    logger.info("activation ranges measured method=%s tensors=%d seconds=%.1f", method, len(ranges.data),
                time.perf_counter() - start)  # fmt: skip
    path = tmp / "ranges.json"
    save_tensors_data(ranges, path)
    return path


def _pre_process(src: Path, dst: Path) -> None:
    """ORT's recommended preparation (shape inference, constant folding); symbolic shapes are
    optional: dynamic-shape exports often defeat them, plain ONNX shape inference then suffices."""
    # On failure, symbolic inference dumps its partial model (+ external data) into the working
    # directory: run it from the temporary folder so nothing is left in the user's.
    src, dst = src.resolve(), dst.resolve()
    try:
        with contextlib.chdir(dst.parent):
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
    except Exception as exc:  # symbolic inference raises bare Exception on incomplete graphs
        logger.info("symbolic shape inference unavailable, using ONNX shape inference reason=%s", exc)
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)


def tensorrt_qdq_problems(model: onnx.ModelProto) -> list[str]:
    """Why TensorRT would refuse these Q/DQ nodes as a strongly typed network ([] if it would not)."""
    problems: list[str] = []
    inits = {i.name: i for i in model.graph.initializer}
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 13:
        problems.append(f"opset {opset} < 13")
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or node.domain not in ("", "ai.onnx"):
            if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
                problems.append(f"{node.name}: contrib-domain {node.op_type} ({node.domain})")
            continue
        if len(node.input) > 2 and node.input[2]:
            zero = inits.get(node.input[2])
            if zero is None:
                problems.append(f"{node.name}: zero point is not a constant")
                continue
            values = onnx.numpy_helper.to_array(zero)
            if values.dtype != np.int8:
                problems.append(f"{node.name}: {values.dtype} zero point (TensorRT needs int8)")
            elif np.any(values != 0):
                problems.append(f"{node.name}: non-zero zero point (TensorRT needs symmetric scales)")
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            dtype = onnx.numpy_helper.to_array(inits[node.input[0]]).dtype
            if dtype != np.int8:
                problems.append(f"{node.name}: {dtype} constant dequantized (TensorRT needs int8)")
    return problems
