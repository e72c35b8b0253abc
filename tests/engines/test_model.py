"""Model loading: metadata parsing, static/dynamic shapes, and clear refusal of unusable files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engines.base import EngineError
from engines.model import load_model_info, parse_imgsz, parse_names
from tests.engines.onnx_builders import NAMES, classify_model, detect_only_model, tiny_seg_model


def test_dynamic_model_info(tmp_path: Path):
    info = load_model_info(tiny_seg_model(tmp_path / "m.onnx"))
    assert info.names == NAMES and info.num_classes == 3
    assert info.imgsz == (640, 640) and info.stride == 32 and info.task == "segment"
    assert info.dynamic_batch and info.batch is None and info.dynamic_hw
    assert info.input_name == "images" and info.output_names == ("output0", "output1")


def test_static_model_info(tmp_path: Path):
    info = load_model_info(tiny_seg_model(tmp_path / "m.onnx", batch=4, hw=(320, 480)))
    assert info.batch == 4 and not info.dynamic_batch and not info.dynamic_hw
    assert info.imgsz == (320, 480)


def test_names_are_parsed_without_evaluating_code():
    assert parse_names("{0: 'a', 1: 'b'}") == {0: "a", 1: "b"}
    assert parse_names("['a', 'b']") == {0: "a", 1: "b"}
    for bad in ("__import__('os').system('true')", "{}", "{'x': 'a'}", "{0: 'a', 2: 'b'}", "[0, "):
        with pytest.raises(EngineError, match=r"names|class ids"):
            parse_names(bad)


def test_imgsz_parsing():
    assert parse_imgsz("[384, 640]") == (384, 640)
    assert parse_imgsz("640") == (640, 640)
    with pytest.raises(EngineError):
        parse_imgsz("[640]")


def test_missing_and_empty_files(tmp_path: Path):
    with pytest.raises(EngineError, match="not found"):
        load_model_info(tmp_path / "nope.onnx")
    with pytest.raises(EngineError, match="directory"):
        load_model_info(tmp_path)
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(EngineError, match="empty"):
        load_model_info(tmp_path / "empty.onnx")


def test_random_bytes_and_truncated_file(tmp_path: Path):
    (tmp_path / "noise.onnx").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    with pytest.raises(EngineError, match="not a readable ONNX model"):
        load_model_info(tmp_path / "noise.onnx")
    whole = tiny_seg_model(tmp_path / "m.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(EngineError, match="not a readable ONNX model"):
        load_model_info(tmp_path / "cut.onnx")


def test_text_file_is_refused(tmp_path: Path):
    (tmp_path / "model.onnx").write_text("this is not a model\n" * 20)
    with pytest.raises(EngineError):
        load_model_info(tmp_path / "model.onnx")


def test_detection_only_model_is_refused(tmp_path: Path):
    path = detect_only_model(tmp_path / "det.onnx")
    with pytest.raises(EngineError, match="'detect' model"):
        load_model_info(path)


def test_detection_output_with_segment_metadata_is_refused(tmp_path: Path):
    import onnx

    path = detect_only_model(tmp_path / "det.onnx")
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == "task":
            prop.value = "segment"
    onnx.save(model, str(path))
    with pytest.raises(EngineError, match="detection-only"):
        load_model_info(path)


def test_classification_model_is_refused(tmp_path: Path):
    with pytest.raises(EngineError, match="'classify' model"):
        load_model_info(classify_model(tmp_path / "cls.onnx"))
    with pytest.raises(EngineError, match="outputs"):
        load_model_info(classify_model(tmp_path / "cls2.onnx", task="segment"))


def test_names_disagreeing_with_outputs_are_refused(tmp_path: Path):
    path = tiny_seg_model(tmp_path / "m.onnx", metadata={"names": repr({0: "a", 1: "b"})})
    import onnx

    model = onnx.load(str(path))
    out0 = model.graph.output[0].type.tensor_type.shape.dim[1]
    out0.dim_value = 4 + 3 + 32  # the real width: 3 classes, but metadata says 2
    onnx.save(model, str(path))
    with pytest.raises(EngineError, match="disagree"):
        load_model_info(path)


def test_end2end_export_is_refused(tmp_path: Path):
    path = tiny_seg_model(tmp_path / "m.onnx", metadata={"end2end": "True"})
    with pytest.raises(EngineError, match="end-to-end"):
        load_model_info(path)
