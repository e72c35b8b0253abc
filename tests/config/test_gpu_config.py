"""conf/gpu.yaml, the GPU node's default (scripts/demo.sh --gpu): valid, and GPU all the way."""

from __future__ import annotations

from pathlib import Path

from engines.base import available_backends
from trtseg.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_default_loads_and_asks_for_the_gpu_path() -> None:
    config = load_config(ROOT / "conf" / "gpu.yaml", environ={})
    engine = config.engine
    assert (engine.backend, engine.device, engine.precision) == ("cuda", "cuda", "fp16")
    assert engine.backend in available_backends() and engine.cuda_graphs
    assert engine.batch_size >= 16 and config.cluster.segmenters_per_gpu >= 1
    assert config.cameras and all(camera.decoder == "nvdec" for camera in config.cameras)
    assert all(camera.inference_fps is None for camera in config.cameras), "a GPU node infers every frame"
    assert (ROOT / engine.model).is_file() or engine.model.is_file()


def test_gpu_default_differs_from_the_demo_only_where_the_gpu_changes_things() -> None:
    gpu = load_config(ROOT / "conf" / "gpu.yaml", environ={})
    demo = load_config(ROOT / "conf" / "demo.yaml", environ={})
    assert [c.id for c in gpu.cameras] == [c.id for c in demo.cameras]
    for mine, theirs in zip(gpu.cameras, demo.cameras, strict=True):
        assert mine.analytics == theirs.analytics and mine.source == theirs.source and mine.push == theirs.push
    assert gpu.sink == demo.sink and gpu.api == demo.api
