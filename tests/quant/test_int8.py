"""INT8 Q/DQ calibration of a real YOLOv8-seg export on frames decoded from a real clip.

Stated tolerance, FP32 vs INT8 raw outputs on held-out scenes (not in the calibration set):
correlation >= 0.99 for the box channels, >= 0.98 for class scores, >= 0.97 for mask
coefficients and prototypes; on the anchors FP32 is confident about (score > 0.25), box error
median <= 1 px and 95th percentile <= 4 px, class score mean absolute difference <= 0.03. And at
detection level, at conf 0.5: >= 80 % of FP32 detections have an INT8 detection of the same
class with box IoU >= 0.7. (The demo model, 8 calibration frames at 192x320, measures 0.998,
0.997, 0.990; 0.22 px, 1.3 px, 0.010.) Individual low-confidence anchors can move much more: a
max-difference bound would be meaningless.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from engines.model import load_model_info
from engines.quant.exclusions import HEAD_FINAL_CONV
from engines.quantize import QuantizationError, calibrate, read_provenance, tensorrt_qdq_problems
from tests.quant.conftest import SMALL_IMGSZ
from tests.quant.helpers import corr, heldout_batch, run


@pytest.fixture(scope="module")
def int8_model(seg_model: Path, clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "model.int8.onnx"
    return calibrate(seg_model, [clip], out, count=8, sampling="uniform", method="minmax", imgsz=SMALL_IMGSZ)


def test_int8_outputs_stay_close_to_fp32(seg_model: Path, int8_model: Path) -> None:
    batch = heldout_batch(SMALL_IMGSZ)
    (ref0, ref1), (q0, q1) = run(seg_model, batch), run(int8_model, batch)
    assert q0.shape == ref0.shape and q1.shape == ref1.shape and q0.dtype == np.float32
    nc = len(load_model_info(seg_model).names)
    assert corr(ref0[:, :4], q0[:, :4]) >= 0.99
    assert corr(ref0[:, 4 : 4 + nc], q0[:, 4 : 4 + nc]) >= 0.98
    assert corr(ref0[:, 4 + nc :], q0[:, 4 + nc :]) >= 0.97
    assert corr(ref1, q1) >= 0.97
    confident = ref0[:, 4 : 4 + nc].max(axis=1) > 0.25  # (B, A)
    if not confident.any():
        pytest.skip("the FP32 model is confident about nothing here (untrained test model)")
    box_err = np.abs(ref0[:, :4] - q0[:, :4]).transpose(0, 2, 1)[confident]
    score_err = np.abs(ref0[:, 4 : 4 + nc] - q0[:, 4 : 4 + nc]).transpose(0, 2, 1)[confident]
    assert float(np.median(box_err)) <= 1.0
    assert float(np.percentile(box_err, 95)) <= 4.0
    assert float(score_err.mean()) <= 0.03


def test_int8_detections_match_fp32(seg_model: Path, int8_model: Path) -> None:
    from datasets.scenes import SceneConfig, generate_scene
    from engines.engine import SegmentationEngine
    from engines.quant.metrics import box_iou
    from trtseg.config import EngineConfig

    frames = [generate_scene(7000 + i, SceneConfig(size=(640, 360))).image for i in range(4)]
    config = EngineConfig(model=seg_model, imgsz=SMALL_IMGSZ, intra_op_threads=1)
    fp32 = SegmentationEngine(config).load().predict(frames, conf=0.5)
    int8 = SegmentationEngine(config.model_copy(update={"model": int8_model})).load().predict(frames, conf=0.5)
    total = sum(len(d) for d in fp32)
    if total == 0:
        pytest.skip("the FP32 model detects nothing at conf 0.5 here (untrained test model)")
    matched = 0
    for ref, got in zip(fp32, int8, strict=True):
        if len(got) == 0:
            continue
        iou = box_iou(ref.boxes, got.boxes) * (ref.class_ids[:, None] == got.class_ids[None, :])
        matched += int((iou.max(axis=1) >= 0.7).sum())
    assert matched / total >= 0.8, f"{matched}/{total} FP32 detections found again by INT8"


def test_provenance_and_ultralytics_metadata(seg_model: Path, int8_model: Path) -> None:
    import hashlib

    record = read_provenance(int8_model)
    assert record["precision"] == "int8"
    assert record["source_sha256"] == hashlib.sha256(seg_model.read_bytes()).hexdigest()
    assert record["calibration_frames"] == 8 and record["calibration_method"] == "minmax"
    sidecar = json.loads(int8_model.with_suffix(".calib.json").read_text())
    assert record["calibration_sha256"] == sidecar["sha256"]
    assert {"onnx", "onnxruntime", "trtseg"} <= set(record["tools"])
    info, source = load_model_info(int8_model), load_model_info(seg_model)
    assert (info.names, info.stride, info.imgsz, info.task) == (source.names, source.stride, source.imgsz, "segment")


def test_precision_sensitive_nodes_stay_float(int8_model: Path) -> None:
    model = onnx.load(str(int8_model))
    excluded = set(read_provenance(int8_model)["excluded_nodes"])
    producers = {out: node for node in model.graph.node for out in node.output}
    head = [n for n in model.graph.node if HEAD_FINAL_CONV.match(n.name)]
    proto_out = [n for n in model.graph.node if n.op_type == "Conv" and "/proto/cv3/" in n.name]
    assert len(head) >= 6 and len(proto_out) == 1
    for node in [*head, *proto_out]:
        assert node.name in excluded
        weight = producers.get(node.input[1])
        assert weight is None or weight.op_type != "DequantizeLinear", f"{node.name} has quantized weights"
    quantized_convs = [
        n for n in model.graph.node
        if n.op_type == "Conv" and producers.get(n.input[1]) is not None
        and producers[n.input[1]].op_type == "DequantizeLinear"
    ]  # fmt: skip
    assert len(quantized_convs) >= 40  # the backbone and neck are int8


def test_tensorrt_can_take_it_as_strongly_typed(int8_model: Path) -> None:
    model = onnx.load(str(int8_model))
    assert tensorrt_qdq_problems(model) == []
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 13
    inits = {i.name: i for i in model.graph.initializer}
    weight_dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert weight_dq
    per_channel = [n for n in weight_dq if onnx.numpy_helper.to_array(inits[n.input[1]]).size > 1]
    assert len(per_channel) >= 40  # conv weights: one scale per output channel


@pytest.mark.slow
def test_cpu_target_uses_uint8_activations(seg_model: Path, clip: Path, tmp_path: Path) -> None:
    # Sixteen frames spread over the clip's eight scenes. Four frames at every 3rd (scenes 0-2 only) gave
    # a box correlation of 0.985 in a fresh environment, eight frames 0.9898 in a later one (0.991 with
    # sixteen): percentile ranges from too little of the scene mix, which the clip's encoding (system
    # FFmpeg) and the package versions also shift.
    out = calibrate(
        seg_model, [clip], tmp_path / "cpu.onnx", 16, "uniform", "percentile", target="cpu", imgsz=SMALL_IMGSZ
    )
    problems = tensorrt_qdq_problems(onnx.load(str(out)))
    assert any("uint8" in p for p in problems)
    batch = heldout_batch(SMALL_IMGSZ, 2)
    assert corr(run(seg_model, batch)[0][:, :4], run(out, batch)[0][:, :4]) >= 0.99
    assert read_provenance(out)["calibration_sampling"] == "uniform"


@pytest.mark.slow
def test_entropy_is_not_minmax_in_disguise(seg_model: Path, clip: Path, tmp_path: Path) -> None:
    """ORT's quantize_static runs entropy with 128 bins for 128 levels: one candidate, min-max ranges."""

    def scales(path: Path) -> dict[str, float]:
        model = onnx.load(str(path))
        inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
        return {
            n.input[0]: float(inits[n.input[1]])
            for n in model.graph.node
            if n.op_type == "QuantizeLinear" and n.input[1] in inits and inits[n.input[1]].size == 1
        }

    cache = tmp_path / "c.npy"
    minmax = scales(
        calibrate(seg_model, [clip], tmp_path / "a.onnx", 2, method="minmax", imgsz=SMALL_IMGSZ, cache=cache)
    )
    entropy = scales(
        calibrate(seg_model, [clip], tmp_path / "b.onnx", 2, method="entropy", imgsz=SMALL_IMGSZ, cache=cache)
    )
    common = set(minmax) & set(entropy)
    differ = sum(not np.isclose(minmax[k], entropy[k], rtol=1e-3) for k in common)
    assert len(common) > 50 and differ > len(common) // 4


def test_extra_exclude_patterns_apply(seg_model: Path, clip: Path, tmp_path: Path) -> None:
    out = calibrate(
        seg_model, [clip], tmp_path / "x.onnx", 2, "uniform", "minmax", exclude=[r"^/model\.0/"], imgsz=SMALL_IMGSZ,
        cache=None,
    )  # fmt: skip
    excluded = read_provenance(out)["excluded_nodes"]
    assert any(n.startswith("/model.0/") for n in excluded)
    assert not (tmp_path / "x.calib.npy").exists()
    with pytest.raises(ValueError, match="invalid exclude pattern"):
        calibrate(seg_model, [clip], tmp_path / "y.onnx", 2, exclude=["(unclosed"], imgsz=SMALL_IMGSZ)


def test_bad_models_are_refused_clearly(clip: Path, tmp_path: Path, int8_model: Path, seg_model: Path) -> None:
    from tests.engines.onnx_builders import classify_model, detect_only_model

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(np.random.default_rng(0).bytes(2048))
    cases = {
        tmp_path / "missing.onnx": "not found",
        junk: "not a readable ONNX model",
        detect_only_model(tmp_path / "det.onnx"): "'detect' model|detection-only",
        classify_model(tmp_path / "cls.onnx"): "'classify' model",
        int8_model: "already converted",
    }
    for model, message in cases.items():
        with pytest.raises(QuantizationError, match=message):
            calibrate(model, [clip], tmp_path / "out.onnx", 2, imgsz=SMALL_IMGSZ)
    with pytest.raises(QuantizationError, match="unknown calibration method"):
        calibrate(seg_model, [clip], tmp_path / "out.onnx", 2, method="kl")
    with pytest.raises(QuantizationError, match=r"\.onnx path"):
        calibrate(seg_model, [clip], tmp_path / "out.trt", 2)
    with pytest.raises(QuantizationError, match="cannot open calibration source"):
        calibrate(seg_model, [junk], tmp_path / "out.onnx", 2)
    assert not (tmp_path / "out.onnx").exists()
