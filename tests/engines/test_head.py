"""Opening a fixed-size export's head (``engines.head``): same outputs as the export, at any size.

The fixed-size model is made here from the shipped dynamic export the way a static export is:
ONNX Runtime folds every shape computation for a 1x3x640x640 input into constants (anchor grid and
reshapes included) and saves the result. A real Ultralytics ``dynamic=False`` export is timed in
``bench/bench_engine.py --export-static``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from engines.base import EngineError
from engines.engine import SegmentationEngine
from engines.head import HeadDecoder, find_head, open_model, opened_path
from engines.model import load_model_info
from tests.engines.onnx_builders import tiny_seg_model
from trtseg.config import EngineConfig

ROOT = Path(__file__).resolve().parents[2]
DYNAMIC = ROOT / "models" / "trtseg-cable-n.onnx"
NUM_CLASSES = 3


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def scene_frames() -> list[np.ndarray]:
    from datasets.scenes import SceneConfig, generate_scene

    return [generate_scene(1000 + i, SceneConfig(size=(1280, 720))).image for i in range(3)]


@pytest.fixture(scope="module")
def static_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped model frozen to a fixed 1x3x640x640 input, constants folded."""
    target = tmp_path_factory.mktemp("static") / "trtseg-cable-n-static.onnx"
    options = ort.SessionOptions()
    for name, size in (("batch", 1), ("height", 640), ("width", 640)):
        options.add_free_dimension_override_by_name(name, size)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(str(DYNAMIC), options, providers=["CPUExecutionProvider"])
    frozen = onnx.load(str(target))
    dims = [d.dim_value for d in frozen.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 640, 640]
    info = load_model_info(target)
    assert not info.dynamic_hw and info.batch == 1
    return target


def test_find_head_names_three_levels_of_each_role(static_model: Path) -> None:
    layout = find_head(onnx.load(str(static_model)), NUM_CLASSES)
    assert layout.reg_max == 16
    assert len(layout.box) == len(layout.cls) == len(layout.coeffs) == 3
    assert all("cv2." in n for n in layout.box) and all("cv3." in n for n in layout.cls)
    assert all("cv4." in n for n in layout.coeffs) and layout.protos == "output1"
    # The dynamic export has the same head, reached through its shape computations.
    assert find_head(onnx.load(str(DYNAMIC)), NUM_CLASSES) == layout


@pytest.mark.parametrize("shape", [(1, 3, 384, 640), (2, 3, 640, 640), (3, 3, 352, 480)])
def test_opened_model_decodes_to_the_exports_own_outputs(
    static_model: Path, tmp_path: Path, shape: tuple[int, int, int, int]
) -> None:
    """At the export's size and at others, batch 1 or more: output0/output1 as the dynamic export gives them."""
    path, layout = opened_path(tmp_path, static_model, NUM_CLASSES)
    opened, reference = _session(path), _session(DYNAMIC)
    x = np.random.default_rng(sum(shape)).random(shape, dtype=np.float32)
    raw = dict(zip(layout.outputs, opened.run(layout.outputs, {"images": x}), strict=True))
    output0, output1 = HeadDecoder(layout).decode(raw, shape[2:])
    want0, want1 = reference.run(None, {"images": x})
    assert output0.shape == want0.shape and output0.dtype == np.float32
    np.testing.assert_allclose(output0[:, :4], want0[:, :4], atol=2e-3)  # box pixels
    np.testing.assert_allclose(output0[:, 4:], want0[:, 4:], atol=1e-4)  # scores and mask coefficients
    np.testing.assert_array_equal(output1, want1)


def test_engine_runs_a_fixed_size_export_rectangular_with_the_same_detections(
    static_model: Path, tmp_path: Path, scene_frames: list[np.ndarray]
) -> None:
    dynamic = SegmentationEngine(EngineConfig(model=DYNAMIC)).load()
    opened = SegmentationEngine(EngineConfig(model=static_model, cache_dir=tmp_path, batch_size=4)).load()
    closed = SegmentationEngine(EngineConfig(model=static_model, cache_dir=tmp_path, open_head="off")).load()
    assert opened.rectangular and opened.max_batch == 4
    assert not closed.rectangular and closed.max_batch == 1
    want = dynamic.predict(scene_frames)
    got = opened.predict(scene_frames)  # one batch of several frames on a batch-1 export
    assert opened.last_input_shape == (len(scene_frames), 3, 384, 640)
    assert sum(len(d) for d in want) > 0
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(a.class_ids, b.class_ids)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=0.05)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    closed.predict(scene_frames[:1])
    assert closed.last_input_shape == (1, 3, 640, 640)


def test_opened_model_is_cached_by_content(static_model: Path, tmp_path: Path) -> None:
    first, _ = opened_path(tmp_path, static_model, NUM_CLASSES)
    os.utime(first, (1, 1))
    again, _ = opened_path(tmp_path, static_model, NUM_CLASSES)
    assert again == first and first.stat().st_mtime == 1  # reused, not rewritten
    first.write_bytes(b"damaged")
    rebuilt, layout = opened_path(tmp_path, static_model, NUM_CLASSES)
    assert rebuilt == first and find_head(onnx.load(str(static_model)), NUM_CLASSES) == layout
    assert onnx.load(str(rebuilt)).metadata_props[-1].key == "trtseg_open_head"


def test_a_graph_without_an_ultralytics_head_is_refused_or_run_as_exported(tmp_path: Path) -> None:
    model = tiny_seg_model(tmp_path / "tiny.onnx", batch=1, hw=(64, 64))
    with pytest.raises(EngineError, match="head"):
        open_model(model, NUM_CLASSES)
    with pytest.raises(EngineError, match="head"):
        SegmentationEngine(EngineConfig(model=model, cache_dir=tmp_path, open_head="on")).load()
    engine = SegmentationEngine(EngineConfig(model=model, cache_dir=tmp_path)).load()  # auto: as exported
    assert not engine.rectangular
    assert not engine.backend.flexible_input


def test_open_head_on_decodes_a_dynamic_export_too(tmp_path: Path, scene_frames: list[np.ndarray]) -> None:
    engine = SegmentationEngine(EngineConfig(model=DYNAMIC, cache_dir=tmp_path, open_head="on")).load()
    assert engine.backend.flexible_input
    assert engine.backend.output_shapes[0] == ("batch", 4 + NUM_CLASSES + 32, "anchors")
    reference = SegmentationEngine(EngineConfig(model=DYNAMIC, open_head="off")).load()
    for a, b in zip(reference.predict(scene_frames[:2]), engine.predict(scene_frames[:2]), strict=True):
        np.testing.assert_array_equal(a.class_ids, b.class_ids)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=0.05)


def test_open_head_is_validated_by_the_configuration() -> None:
    with pytest.raises(ValueError, match="open_head"):
        EngineConfig(open_head="sometimes")  # type: ignore[arg-type]


def _bake_a_size_into_the_backbone(source: Path, target: Path) -> Path:
    """As YOLO11's attention blocks do in a fixed-size export: a reshape to constant dims mid-network."""
    from onnx import helper, numpy_helper

    model = onnx.shape_inference.infer_shapes(onnx.load(str(source)))
    first = next(n for n in model.graph.node if n.op_type == "Conv")
    shape = next(v for v in model.graph.value_info if v.name == first.output[0])
    dims = [d.dim_value for d in shape.type.tensor_type.shape.dim]
    baked = first.output[0] + "_baked"
    for node in model.graph.node:
        node.input[:] = [baked if name == first.output[0] else name for name in node.input]
    model.graph.initializer.append(numpy_helper.from_array(np.array(dims, np.int64), "baked_shape"))
    model.graph.node.insert(
        1 + list(model.graph.node).index(first), helper.make_node("Reshape", [first.output[0], "baked_shape"], [baked])
    )
    onnx.save(model, str(target))
    return target


def test_an_opened_model_that_cannot_change_size_falls_back_to_the_export(static_model: Path, tmp_path: Path) -> None:
    baked = _bake_a_size_into_the_backbone(static_model, tmp_path / "baked.onnx")
    engine = SegmentationEngine(EngineConfig(model=baked, cache_dir=tmp_path)).load()
    assert not engine.rectangular and not engine.backend.flexible_input
    frame = np.full((720, 1280, 3), 114, np.uint8)
    engine.predict([frame])
    assert engine.last_input_shape == (1, 3, 640, 640)
    with pytest.raises(EngineError, match="other sizes"):
        SegmentationEngine(EngineConfig(model=baked, cache_dir=tmp_path, open_head="on")).load()
