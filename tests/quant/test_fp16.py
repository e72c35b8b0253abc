"""FP16 conversion of a real YOLOv8-seg export: loads, keeps FP32 I/O, matches FP32.

Stated tolerance (held-out scenes, every anchor): box channels within 2.5 px of FP32 (the DFL
logits are FP16, and one logit step moves a side by up to ~1.5 px at stride 32; the decoding
itself stays FP32), class scores within 0.02, mask coefficients and prototypes correlation
>= 0.999. (The demo model measures 1.5 px, 0.003, 0.9999997.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from engines.model import load_model_info
from engines.quant.exclusions import decode_nodes
from engines.quantize import QuantizationError, convert_fp16, read_provenance
from tests.quant.conftest import SMALL_IMGSZ
from tests.quant.helpers import corr, heldout_batch, run


@pytest.fixture(scope="module")
def fp16_model(seg_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_fp16(seg_model, tmp_path_factory.mktemp("fp16") / "model.fp16.onnx")


def test_fp16_matches_fp32(seg_model: Path, fp16_model: Path) -> None:
    batch = heldout_batch(SMALL_IMGSZ)
    (ref0, ref1), (h0, h1) = run(seg_model, batch), run(fp16_model, batch)
    assert h0.dtype == np.float32 and h1.dtype == np.float32
    nc = len(load_model_info(seg_model).names)
    assert float(np.abs(ref0[:, :4] - h0[:, :4]).max()) <= 2.5
    assert float(np.abs(ref0[:, 4 : 4 + nc] - h0[:, 4 : 4 + nc]).max()) <= 0.02
    assert corr(ref0[:, 4 + nc :], h0[:, 4 + nc :]) >= 0.999
    assert corr(ref1, h1) >= 0.999


def test_fp16_graph_is_half_inside_float_outside(seg_model: Path, fp16_model: Path) -> None:
    model = onnx.load(str(fp16_model))
    float_io = onnx.TensorProto.FLOAT
    assert all(v.type.tensor_type.elem_type == float_io for v in [*model.graph.input, *model.graph.output])
    half = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    single = [i for i in model.graph.initializer if i.data_type == float_io and onnx.numpy_helper.to_array(i).size > 64]
    assert len(half) >= 50 and not single  # every conv weight is FP16
    source_names = [n.name for n in onnx.load(str(seg_model)).graph.node]
    record = read_provenance(fp16_model)
    assert record["precision"] == "fp16"
    assert set(decode_nodes(source_names)) <= set(record["fp32_nodes"])
    assert load_model_info(fp16_model).names == load_model_info(seg_model).names


def test_fp16_runs_in_the_engine(seg_model: Path, fp16_model: Path) -> None:
    from datasets.scenes import SceneConfig, generate_scene
    from engines.engine import SegmentationEngine
    from trtseg.config import EngineConfig

    frame = generate_scene(9001, SceneConfig(size=(640, 360))).image
    config = EngineConfig(model=fp16_model, imgsz=SMALL_IMGSZ, intra_op_threads=1)
    ref = SegmentationEngine(config.model_copy(update={"model": seg_model})).load().predict([frame], conf=0.3)[0]
    got = SegmentationEngine(config).load().predict([frame], conf=0.3)[0]
    assert got.frame_shape == (360, 640)
    assert abs(len(got) - len(ref)) <= max(1, len(ref) // 10)


def test_fp16_refuses_bad_input(tmp_path: Path, fp16_model: Path) -> None:
    with pytest.raises(QuantizationError, match="already converted"):
        convert_fp16(fp16_model, tmp_path / "again.onnx")
    with pytest.raises(QuantizationError, match="not found"):
        convert_fp16(tmp_path / "none.onnx", tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()
