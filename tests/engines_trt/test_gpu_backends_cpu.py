"""The GPU backends' host-side logic, run where there is no GPU, TensorRT or PyTorch.

What must hold everywhere: both backends are registered, refuse clearly when their runtime is
missing, derive the right engine key and profile from a real model file, and pad batches to the
captured CUDA-graph sizes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from engines import trt_cache
from engines.base import EngineError, available_backends, create_backend
from engines.cuda_backend import CudaBackend, graph_batch_sizes, padded_batch
from engines.gpu.pipeline import GpuSegmentationEngine, create_engine
from engines.tensorrt_backend import TensorRTBackend, build_engine, engine_key, import_tensorrt
from tests.engines.onnx_builders import tiny_seg_model
from trtseg.config import EngineConfig

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
HAS_TORCH = importlib.util.find_spec("torch") is not None


def test_both_gpu_backends_are_registered() -> None:
    backends = available_backends()
    assert "cuda" in backends
    assert "tensorrt" in backends
    assert isinstance(create_backend(EngineConfig(backend="tensorrt", device="cuda")), TensorRTBackend)
    assert isinstance(create_backend(EngineConfig(backend="cuda", device="cuda:0")), CudaBackend)


def test_gpu_backends_get_the_gpu_engine() -> None:
    assert isinstance(create_engine(EngineConfig(backend="cuda")), GpuSegmentationEngine)
    assert isinstance(create_engine(EngineConfig(backend="tensorrt")), GpuSegmentationEngine)
    assert not isinstance(create_engine(EngineConfig(backend="onnxruntime")), GpuSegmentationEngine)


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_missing_tensorrt_is_a_clear_engine_error(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="needs NVIDIA TensorRT"):
        import_tensorrt()
    model = tiny_seg_model(tmp_path / "m.onnx")
    config = EngineConfig(backend="tensorrt", device="cuda", model=model, cache_dir=tmp_path / "cache")
    with pytest.raises(EngineError, match="TensorRT"):
        build_engine(config)
    with pytest.raises(EngineError, match="TensorRT"):
        create_backend(config).load()
    assert not (tmp_path / "cache").exists()  # nothing half-built left behind


@pytest.mark.skipif(HAS_TORCH, reason="PyTorch is installed here")
def test_missing_torch_is_a_clear_engine_error(tmp_path: Path) -> None:
    config = EngineConfig(backend="cuda", device="cuda", model=tiny_seg_model(tmp_path / "m.onnx"))
    with pytest.raises(EngineError, match="PyTorch"):
        create_backend(config).load()


def test_cuda_backend_refuses_int8() -> None:
    with pytest.raises(EngineError, match="int8 needs the 'tensorrt' backend"):
        CudaBackend(EngineConfig(backend="cuda", precision="int8"))


def test_graph_batch_sizes_cover_every_batch() -> None:
    assert graph_batch_sizes(1) == [1]
    assert graph_batch_sizes(8) == [1, 2, 4, 8]
    assert graph_batch_sizes(12) == [1, 2, 4, 8, 12]
    sizes = graph_batch_sizes(32)
    for count in range(1, 33):
        padded = padded_batch(count, sizes)
        assert padded >= count and padded in sizes
        assert padded < 2 * count  # never more than double the work
    with pytest.raises(EngineError, match="exceeds"):
        padded_batch(33, sizes)
    with pytest.raises(EngineError):
        graph_batch_sizes(0)


def test_engine_key_from_a_dynamic_model(tmp_path: Path) -> None:
    model = tiny_seg_model(tmp_path / "dyn.onnx")
    config = EngineConfig(backend="tensorrt", model=model, batch_size=16)
    key, info = engine_key(config, "10.13.0", "NVIDIA H100 80GB HBM3", (9, 0))
    assert info.dynamic_batch and info.dynamic_hw
    assert key.precision == "fp32"
    assert key.onnx_sha256 == trt_cache.sha256_file(model)
    assert key.profile.min[0] == 1 and key.profile.opt[0] == 16 and key.profile.max[0] == 16
    assert key.profile.max[2:] == info.imgsz
    assert key.profile.covers((16, 3, 384, 640))
    other, _ = engine_key(config, "11.0.0", "NVIDIA H100 80GB HBM3", (9, 0))
    assert other.digest() != key.digest()
    # A fixed engine.imgsz pins height and width: no rectangular inputs.
    fixed, _ = engine_key(config.model_copy(update={"imgsz": (480, 640)}), "10.13.0", "H100", (9, 0))
    assert fixed.profile.min[2:] == fixed.profile.max[2:] == (480, 640)


def test_engine_key_from_a_static_model(tmp_path: Path) -> None:
    model = tiny_seg_model(tmp_path / "static.onnx", batch=4, hw=(320, 320))
    config = EngineConfig(backend="tensorrt", model=model, batch_size=4, profile_batch=None)
    key, info = engine_key(config, "10.13.0", "NVIDIA H100", (9, 0))
    assert info.batch == 4 and not info.dynamic_hw
    assert key.profile == trt_cache.ShapeProfile((4, 3, 320, 320), (4, 3, 320, 320), (4, 3, 320, 320))
