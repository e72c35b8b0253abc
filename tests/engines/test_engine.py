"""SegmentationEngine on real ONNX Runtime sessions: shapes, batching, filters, errors, timings."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.base import EngineError, available_backends
from engines.engine import PROJECT_ROOT, SegmentationEngine, dynamic_warmup_sizes, resolve_model_path
from engines.onnxruntime_backend import provider_options
from tests.engines.onnx_builders import tiny_seg_model
from trtseg.config import EngineConfig
from trtseg.detections import Detections


def frames(seed: int, shapes: list[tuple[int, int]]) -> list[np.ndarray]:
    """Smooth random pictures (so pooled features, hence boxes, differ between frames)."""
    rng = np.random.default_rng(seed)
    out = []
    for h, w in shapes:
        small = rng.integers(0, 256, (max(h // 32, 1), max(w // 32, 1), 3), dtype=np.uint8)
        out.append(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR))
    return out


@pytest.fixture(scope="module")
def dynamic_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_seg_model(tmp_path_factory.mktemp("models") / "dyn.onnx")


def engine_for(path: Path, **kwargs) -> SegmentationEngine:
    return SegmentationEngine(EngineConfig(model=path, **kwargs)).load()


def same(a: Detections, b: Detections) -> None:
    assert a.class_ids.tolist() == b.class_ids.tolist()
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
    assert a.masks is not None and b.masks is not None
    assert (a.masks.dense() != b.masks.dense()).sum() <= 4


def test_onnxruntime_is_registered():
    assert "onnxruntime" in available_backends()


def test_720p_frame_uses_rectangular_input(dynamic_model: Path):
    engine = engine_for(dynamic_model)
    (dets,) = engine.predict(frames(0, [(720, 1280)]), conf=0.0)
    assert engine.last_input_shape == (1, 3, 384, 640)
    assert dets.frame_shape == (720, 1280) and dets.masks is not None and dets.masks.shape[1:] == (720, 1280)
    assert len(dets) > 0
    assert (dets.boxes[:, [0, 2]] <= 1280).all() and (dets.boxes[:, [1, 3]] <= 720).all()
    assert engine.names == {0: "charging_cable", 1: "e_bike", 2: "person"}


def test_fixed_imgsz_gives_square_input(dynamic_model: Path):
    engine = engine_for(dynamic_model, imgsz=(640, 640))
    engine.predict(frames(0, [(720, 1280)]), conf=0.5)
    assert engine.last_input_shape == (1, 3, 640, 640)


def test_dynamic_batch_equals_one_by_one(dynamic_model: Path):
    engine = engine_for(dynamic_model)
    pics = frames(1, [(720, 1280)] * 3)
    together = engine.predict(pics, conf=0.05)
    assert engine.last_input_shape[0] == 3
    assert sum(len(d) for d in together) > 0
    for pic, dets in zip(pics, together, strict=True):
        same(engine.predict([pic], conf=0.05)[0], dets)


def test_static_batch_model_is_padded_and_chunked(tmp_path: Path):
    static = engine_for(tiny_seg_model(tmp_path / "static.onnx", batch=2, hw=(640, 640)))
    dynamic = engine_for(tiny_seg_model(tmp_path / "dynamic.onnx"), imgsz=(640, 640))
    pics = frames(2, [(720, 1280)] * 3)
    out = static.predict(pics, conf=0.05)
    assert static.last_input_shape == (2, 3, 640, 640) and static.last_timings.batches == 2
    assert len(out) == 3 and sum(len(d) for d in out) > 0
    for a, b in zip(out, dynamic.predict(pics, conf=0.05), strict=True):
        same(a, b)


def test_batch_size_limits_chunks(dynamic_model: Path):
    engine = engine_for(dynamic_model, batch_size=2)
    out = engine.predict(frames(3, [(480, 640)] * 5), conf=0.1)
    assert len(out) == 5 and engine.last_timings.batches == 3 and engine.last_timings.frames == 5


def test_mixed_frame_sizes_in_one_batch(dynamic_model: Path):
    engine = engine_for(dynamic_model)
    pics = frames(4, [(720, 1280), (1080, 810), (240, 320)])
    out = engine.predict(pics, conf=0.05)
    assert [d.frame_shape for d in out] == [(720, 1280), (1080, 810), (240, 320)]
    for pic, dets in zip(pics, out, strict=True):
        assert dets.masks.shape[1:] == pic.shape[:2]


def test_class_filter_by_name_or_id(dynamic_model: Path):
    engine = engine_for(dynamic_model)
    pic = frames(5, [(720, 1280)])
    by_name = engine.predict(pic, conf=0.0, classes=["person"])[0]
    by_id = engine.predict(pic, conf=0.0, classes=[2])[0]
    assert set(by_name.class_ids.tolist()) <= {2} and by_name.class_ids.tolist() == by_id.class_ids.tolist()
    with pytest.raises(ValueError, match="unknown class"):
        engine.predict(pic, classes=["bicycle"])
    with pytest.raises(ValueError, match="unknown class id"):
        engine.predict(pic, classes=[7])


def test_without_masks_and_max_det(dynamic_model: Path):
    engine = engine_for(dynamic_model)
    pic = frames(6, [(720, 1280)])
    dets = engine.predict(pic, conf=0.0, with_masks=False, max_det=3)[0]
    assert dets.masks is None and len(dets) <= 3
    assert len(engine.predict(pic, conf=0.0, max_det=1)[0]) <= 1


def test_single_array_and_bad_input(dynamic_model: Path):
    engine = engine_for(dynamic_model)
    assert len(engine.predict(frames(7, [(100, 100)])[0], conf=0.5)) == 1
    with pytest.raises(ValueError, match="image 0"):
        engine.predict([np.zeros((10, 10), np.uint8)])
    with pytest.raises(ValueError, match="conf"):
        engine.predict(frames(7, [(100, 100)]), conf=2.0)
    assert engine.predict([]) == []


def test_timings_are_recorded(dynamic_model: Path):
    engine = engine_for(dynamic_model)
    engine.predict(frames(8, [(720, 1280)] * 2), conf=0.1)
    t = engine.last_timings
    assert t.pre_ms > 0 and t.infer_ms > 0 and t.post_ms > 0 and t.frames == 2
    assert engine.total_timings.frames >= 2
    assert set(t.as_dict()) == {"pre_ms", "infer_ms", "post_ms", "total_ms", "frames", "batches"}


def test_static_model_refuses_other_imgsz(tmp_path: Path):
    path = tiny_seg_model(tmp_path / "s.onnx", batch=1, hw=(640, 640))
    with pytest.raises(EngineError, match="fixed input"):
        engine_for(path, imgsz=(384, 640))


def test_engine_used_before_load(dynamic_model: Path):
    with pytest.raises(EngineError, match="before load"):
        SegmentationEngine(EngineConfig(model=dynamic_model)).predict(frames(0, [(64, 64)]))


def test_unavailable_provider_is_an_error(dynamic_model: Path):
    with pytest.raises(EngineError, match="not available"):
        engine_for(dynamic_model, providers=["NoSuchExecutionProvider"])


def test_unknown_backend_is_an_error(dynamic_model: Path):
    with pytest.raises(EngineError, match="unknown engine backend"):
        engine_for(dynamic_model, backend="nope")


def test_intra_op_threads_reach_the_session(dynamic_model: Path):
    engine = engine_for(dynamic_model, intra_op_threads=1)
    assert engine.backend.session.get_session_options().intra_op_num_threads == 1


def test_provider_options_from_config(tmp_path: Path):
    config = EngineConfig(device="cuda:1", precision="fp16", cache_dir=tmp_path, workspace_mb=1024)
    trt = provider_options(config, "TensorrtExecutionProvider")
    assert trt["device_id"] == 1 and trt["trt_fp16_enable"] is True and trt["trt_engine_cache_enable"] is True
    assert trt["trt_engine_cache_path"] == str(tmp_path / "ort-trt")
    assert trt["trt_max_workspace_size"] == 1024 * 1024 * 1024
    assert provider_options(config, "CUDAExecutionProvider") == {"device_id": 1}
    assert provider_options(config, "CPUExecutionProvider") == {}


def test_relative_model_path_resolves_from_project_root(dynamic_model: Path, tmp_path: Path, monkeypatch):
    relative = Path(os.path.relpath(dynamic_model, PROJECT_ROOT))
    assert resolve_model_path(relative) == PROJECT_ROOT / relative
    monkeypatch.chdir(tmp_path)
    engine = engine_for(relative)
    assert engine.model_path == PROJECT_ROOT / relative
    assert engine.info.num_classes == 3


def test_spinning_is_off_unless_configured(dynamic_model: Path):
    key = "session.intra_op.allow_spinning"
    assert engine_for(dynamic_model).backend.session.get_session_options().get_session_config_entry(key) == "0"
    spinning = engine_for(dynamic_model, intra_op_spinning=True)
    assert spinning.backend.session.get_session_options().get_session_config_entry(key) == "1"


def test_warmup_runs_each_planned_batch_size_on_blank_frames(dynamic_model: Path):
    engine = engine_for(dynamic_model, batch_size=3)
    # ONNX Runtime plans no sizes: up, down and the largest again, so its arena is at its plateau
    assert engine.warmup((360, 640)) == [1, 2, 3, 3, 2, 1, 3]
    engine = engine_for(dynamic_model, batch_size=8)
    engine.backend.batch_sizes = [1, 2, 4, 16]  # as the 'cuda' backend plans its CUDA graphs
    shapes: list[tuple[int, ...]] = []
    real_infer = engine.backend.infer
    engine.backend.infer = lambda batch: shapes.append(batch.shape) or real_infer(batch)  # type: ignore[method-assign]
    assert engine.warmup((360, 640)) == [1, 2, 4]  # 16 is past the engine's largest batch
    assert [s[0] for s in shapes] == [1, 2, 4] and all(s[2:] == (384, 640) for s in shapes)
    assert engine.total_timings.frames == 0  # warm-up is not counted as work


def test_dynamic_warmup_sweeps_small_batches_fully_and_large_ones_by_powers_of_two():
    assert dynamic_warmup_sizes(1) == [1, 1, 1]
    assert dynamic_warmup_sizes(4) == [1, 2, 3, 4, 4, 3, 2, 1, 4]
    assert dynamic_warmup_sizes(24) == [1, 2, 4, 8, 16, 24, 24, 16, 8, 4, 2, 1, 24]


def test_warmup_frame_is_validated():
    with pytest.raises(ValueError, match="warmup_frame"):
        EngineConfig(warmup_frame=(0, 640))
    assert EngineConfig(warmup_frame=None).warmup_frame is None
