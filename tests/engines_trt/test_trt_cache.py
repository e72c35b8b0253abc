"""Engine cache keys, paths and optimisation profiles: the TensorRT pieces that need no GPU."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engines import trt_cache
from engines.base import EngineError
from engines.trt_cache import EngineKey, ShapeProfile


def make_key(**changes: object) -> EngineKey:
    base = EngineKey(
        onnx_sha256="ab" * 32,
        tensorrt_version="10.13.0",
        gpu_name="NVIDIA H100 80GB HBM3",
        compute_capability=(9, 0),
        precision="fp16",
        profile=ShapeProfile((1, 3, 32, 32), (8, 3, 384, 640), (8, 3, 640, 640)),
        workspace_mb=2048,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# -- profiles ---------------------------------------------------------------------------------------
def test_batch_profile_defaults_to_one_batch_batch() -> None:
    assert trt_cache.batch_profile(8, None, None) == (1, 8, 8)
    assert trt_cache.batch_profile(1, None, None) == (1, 1, 1)


def test_batch_profile_takes_the_configured_profile() -> None:
    assert trt_cache.batch_profile(8, (2, 16, 32), None) == (2, 16, 32)


def test_fixed_batch_model_pins_the_profile() -> None:
    assert trt_cache.batch_profile(8, None, 4) == (4, 4, 4)
    with pytest.raises(EngineError, match="fixed batch of 4"):
        trt_cache.batch_profile(8, (1, 4, 8), 4)


@pytest.mark.parametrize("profile", [(0, 1, 1), (4, 2, 8), (1, 8, 4)])
def test_bad_batch_profiles_are_refused(profile: tuple[int, int, int]) -> None:
    with pytest.raises(EngineError, match="profile"):
        trt_cache.batch_profile(1, profile, None)


def test_profile_max_below_batch_size_is_refused() -> None:
    with pytest.raises(EngineError, match="below batch_size"):
        trt_cache.batch_profile(16, (1, 4, 8), None)


def test_static_model_profile_fixes_height_and_width() -> None:
    profile = trt_cache.shape_profile((1, 8, 16), (640, 640), dynamic_hw=False)
    assert profile.min == (1, 3, 640, 640)
    assert profile.opt == (8, 3, 640, 640)
    assert profile.max == (16, 3, 640, 640)


def test_dynamic_model_profile_spans_rectangular_inputs() -> None:
    profile = trt_cache.shape_profile((1, 8, 8), (640, 640), dynamic_hw=True, stride=32)
    # 1280x720 frames letterbox to 384x640: the profile is tuned for exactly that input.
    from engines.preprocess import auto_shape

    assert profile.opt == (8, 3, *auto_shape((720, 1280), (640, 640), 32))
    assert profile.min == (1, 3, 32, 32)
    assert profile.max == (8, 3, 640, 640)
    for frame in [(720, 1280), (480, 640), (1080, 1920), (1280, 720), (17, 29)]:
        shape = auto_shape(frame, (640, 640), 32)
        assert profile.covers((4, 3, *shape)), (frame, shape)
    assert not profile.covers((9, 3, 384, 640))
    assert not profile.covers((1, 3, 672, 640))


def test_dynamic_profile_refuses_an_opt_size_outside_the_model() -> None:
    with pytest.raises(EngineError, match="stride multiples"):
        trt_cache.shape_profile((1, 1, 1), (640, 640), True, 32, opt_hw=(700, 640))
    with pytest.raises(EngineError, match="stride multiples"):
        trt_cache.shape_profile((1, 1, 1), (640, 640), True, 32, opt_hw=(390, 640))


def test_shape_profile_validates_order() -> None:
    with pytest.raises(EngineError):
        ShapeProfile((2, 3, 32, 32), (1, 3, 32, 32), (4, 3, 32, 32))


# -- keys -------------------------------------------------------------------------------------------
def test_key_digest_is_stable_and_canonical() -> None:
    assert make_key().digest() == make_key().digest()
    assert len(make_key().digest()) == 64
    assert make_key().describe()["digest"] == make_key().digest()


@pytest.mark.parametrize(
    "change",
    [
        {"onnx_sha256": "cd" * 32},
        {"tensorrt_version": "11.0.0"},
        {"gpu_name": "NVIDIA H200"},
        {"compute_capability": (8, 9)},
        {"precision": "int8"},
        {"profile": ShapeProfile((1, 3, 32, 32), (16, 3, 384, 640), (16, 3, 640, 640))},
        {"workspace_mb": 4096},
    ],
)
def test_every_part_of_the_key_changes_the_digest(change: dict[str, object]) -> None:
    assert make_key(**change).digest() != make_key().digest()


def test_engine_path_names_model_precision_and_gpu(tmp_path: Path) -> None:
    path = trt_cache.engine_path(tmp_path, Path("models/trtseg cable-n.onnx"), make_key())
    assert path.parent == tmp_path
    assert path.name.startswith("trtseg_cable-n-fp16-sm90-")
    assert path.suffix == ".engine"
    assert make_key().digest()[:16] in path.name


def test_timing_cache_is_per_tensorrt_version_and_gpu(tmp_path: Path) -> None:
    a = trt_cache.timing_cache_path(tmp_path, make_key())
    assert a == trt_cache.timing_cache_path(tmp_path, make_key(onnx_sha256="ef" * 32))  # shared across models
    assert a != trt_cache.timing_cache_path(tmp_path, make_key(tensorrt_version="11.0.0"))
    assert a != trt_cache.timing_cache_path(tmp_path, make_key(gpu_name="NVIDIA L4", compute_capability=(8, 9)))


# -- store and lookup -------------------------------------------------------------------------------
def test_store_then_lookup_round_trips(tmp_path: Path) -> None:
    model = Path("models/m.onnx")
    key = make_key()
    assert trt_cache.lookup(tmp_path, model, key) is None
    plan = bytes(range(256)) * 10
    path = trt_cache.store(tmp_path, model, key, plan)
    assert path.read_bytes() == plan
    assert trt_cache.lookup(tmp_path, model, key) == path
    sidecar = json.loads(trt_cache.sidecar_path(path).read_text())
    assert sidecar["digest"] == key.digest()
    assert sidecar["bytes"] == len(plan)
    assert sidecar["gpu_name"] == key.gpu_name
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_another_key_misses_the_cache(tmp_path: Path) -> None:
    model = Path("m.onnx")
    trt_cache.store(tmp_path, model, make_key(), b"plan")
    assert trt_cache.lookup(tmp_path, model, make_key(tensorrt_version="10.14.0")) is None


def test_a_plan_with_a_broken_or_foreign_sidecar_is_not_trusted(tmp_path: Path) -> None:
    model = Path("m.onnx")
    path = trt_cache.store(tmp_path, model, make_key(), b"plan")
    trt_cache.sidecar_path(path).write_text("{not json")
    assert trt_cache.lookup(tmp_path, model, make_key()) is None
    trt_cache.sidecar_path(path).write_text(json.dumps({"digest": "0" * 64}))
    assert trt_cache.lookup(tmp_path, model, make_key()) is None
    trt_cache.sidecar_path(path).unlink()
    assert trt_cache.lookup(tmp_path, model, make_key()) is None


def test_an_empty_plan_is_never_cached(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="empty"):
        trt_cache.store(tmp_path, Path("m.onnx"), make_key(), b"")
    path = trt_cache.engine_path(tmp_path, Path("m.onnx"), make_key())
    path.write_bytes(b"")
    assert trt_cache.lookup(tmp_path, Path("m.onnx"), make_key()) is None


def test_sha256_file_streams_the_whole_file(tmp_path: Path) -> None:
    data = np.random.default_rng(1).integers(0, 256, 3 * (1 << 20) + 17, dtype=np.uint8).tobytes()
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert trt_cache.sha256_file(path) == hashlib.sha256(data).hexdigest()


# -- precision read off the ONNX graph --------------------------------------------------------------
def _conv_model(weight_type: int, qdq: bool = False, precision_meta: str | None = None) -> onnx.ModelProto:
    dtype = np.float16 if weight_type == TensorProto.FLOAT16 else np.float32
    weight = numpy_helper.from_array(np.ones((1, 1, 1, 1), dtype), "w")
    nodes = []
    source = "x"
    if qdq:
        inits = [
            numpy_helper.from_array(np.array(0.1, np.float32), "s"),
            numpy_helper.from_array(np.array(0, np.int8), "z"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
            helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        ]
        source = "xd"
    else:
        inits = []
    nodes.append(helper.make_node("Conv", [source, "w"], ["y"]))
    elem = TensorProto.FLOAT16 if weight_type == TensorProto.FLOAT16 else TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", elem, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", elem, [1, 1, 4, 4])],
        [weight, *inits],
    )
    model = helper.make_model(graph)
    if precision_meta is not None:
        prop = model.metadata_props.add()
        prop.key, prop.value = "trtseg_precision", precision_meta
    return model


def test_onnx_precision_reads_the_graph() -> None:
    assert trt_cache.onnx_precision(_conv_model(TensorProto.FLOAT)) == "fp32"
    assert trt_cache.onnx_precision(_conv_model(TensorProto.FLOAT16)) == "fp16"
    assert trt_cache.onnx_precision(_conv_model(TensorProto.FLOAT, qdq=True)) == "int8"


def test_onnx_precision_prefers_our_converters_metadata() -> None:
    assert trt_cache.onnx_precision(_conv_model(TensorProto.FLOAT, precision_meta="fp16")) == "fp16"
    # Unknown values are ignored rather than trusted.
    assert trt_cache.onnx_precision(_conv_model(TensorProto.FLOAT, precision_meta="bf16")) == "fp32"
