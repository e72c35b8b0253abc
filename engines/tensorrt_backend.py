"""The 'tensorrt' backend (TensorRT 10.x and 11.x): build once from ONNX, cache, run on GPU buffers.

The network is built strongly typed, so its precision is the ONNX model's own (FP32, FP16-converted,
or INT8 through Q/DQ nodes from ``engines.quant``): no builder precision flags, no calibrators
(TensorRT 11 removed both). Builds are keyed in ``engines.trt_cache`` by the ONNX hash, TensorRT
version, GPU and profile, so a restart reuses the plan. Inference binds the input and output
buffers of ``engines.gpu.memory`` by raw pointer and enqueues on the pipeline's stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engines import trt_cache
from engines.base import EngineError, register_backend
from engines.model import load_model_info
from trtseg.config import EngineConfig

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]  # (phase, step, steps)


def import_tensorrt() -> Any:
    """``import tensorrt`` with a clear error when it is not installed."""
    try:
        import tensorrt
    except ImportError as exc:
        raise EngineError(
            "the 'tensorrt' backend needs NVIDIA TensorRT 10 or 11 (pip install tensorrt, from NVIDIA's index); "
            "the 'cuda' backend runs the same model on the GPU without it"
        ) from exc
    return tensorrt


def _progress_monitor(trt: Any, callback: ProgressCallback) -> Any:
    """A trt.IProgressMonitor forwarding (phase, step, steps) to ``callback``; never cancels."""

    class _Monitor(trt.IProgressMonitor):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.steps: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.steps[phase_name] = num_steps
            callback(phase_name, 0, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            callback(phase_name, step + 1, self.steps.get(phase_name, 0))
            return True

        def phase_finish(self, phase_name: str) -> None:
            steps = self.steps.pop(phase_name, 0)
            callback(phase_name, steps, steps)

    return _Monitor()


def engine_key(
    config: EngineConfig, trt_version: str, gpu_name: str, capability: tuple[int, int]
) -> tuple[trt_cache.EngineKey, Any]:
    """The cache key for building ``config.model`` here, and the model's facts."""
    import onnx

    info = load_model_info(config.model)
    model = onnx.load(str(config.model), load_external_data=False)
    batches = trt_cache.batch_profile(config.batch_size, config.profile_batch, info.batch)
    imgsz: tuple[int, int] = (int(config.imgsz[0]), int(config.imgsz[1])) if config.imgsz is not None else info.imgsz
    # Rectangular inputs only for dynamic-size models without a fixed engine.imgsz (as the engine does).
    profile = trt_cache.shape_profile(batches, imgsz, info.dynamic_hw and config.imgsz is None, info.stride)
    key = trt_cache.EngineKey(
        onnx_sha256=trt_cache.sha256_file(Path(config.model)),
        tensorrt_version=trt_version,
        gpu_name=gpu_name,
        compute_capability=capability,
        precision=trt_cache.onnx_precision(model),
        profile=profile,
        workspace_mb=config.workspace_mb,
    )
    return key, info


def build_engine(config: EngineConfig, progress: ProgressCallback | None = None, force: bool = False) -> Path:
    """Build (or find in the cache) the engine for ``config``; returns the plan's path.

    Called by the CLI's ``build-engine`` and by the backend's ``load``.
    """
    trt = import_tensorrt()
    from engines.gpu.memory import device_info, parse_device

    gpu = device_info(parse_device(config.device))
    key, info = engine_key(config, trt.__version__, gpu.name, gpu.compute_capability)
    cache_dir = Path(config.cache_dir)
    if not force and (cached := trt_cache.lookup(cache_dir, Path(config.model), key)) is not None:
        logger.info("tensorrt engine from cache", extra={"engine": str(cached)})
        return cached

    started = time.perf_counter()
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None:  # TensorRT 10; 11 is always strongly typed and ignores the flag
        flags |= 1 << int(strongly_typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(config.model)):
        errors = []
        for i in range(parser.num_errors):
            error = parser.get_error(i)
            errors.append(error.desc() if hasattr(error, "desc") else str(error))
        raise EngineError(f"TensorRT could not parse {config.model}: " + "; ".join(errors or ["unknown error"]))

    build_config = builder.create_builder_config()
    build_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(config.workspace_mb) << 20)
    profile = builder.create_optimization_profile()
    profile.set_shape(info.input_name, key.profile.min, key.profile.opt, key.profile.max)
    if build_config.add_optimization_profile(profile) < 0:
        raise EngineError(f"TensorRT refused the optimisation profile {key.profile.as_dict()}")

    timing_path = Path(config.timing_cache) if config.timing_cache else trt_cache.timing_cache_path(cache_dir, key)
    blob = timing_path.read_bytes() if timing_path.is_file() else b""
    timing_cache = build_config.create_timing_cache(blob)
    build_config.set_timing_cache(timing_cache, False)
    if progress is not None:
        build_config.progress_monitor = _progress_monitor(trt, progress)

    logger.info("building tensorrt engine", extra={"model": str(config.model), **key.describe()})
    plan = builder.build_serialized_network(network, build_config)
    if plan is None:
        raise EngineError(f"TensorRT failed to build an engine for {config.model} (see the TensorRT log above)")
    path = trt_cache.store(cache_dir, Path(config.model), key, bytes(plan))
    trt_cache.atomic_write(timing_path, bytes(build_config.get_timing_cache().serialize()))
    logger.info(
        "tensorrt engine built",
        extra={"engine": str(path), "seconds": round(time.perf_counter() - started, 1)},
    )
    return path


@register_backend("tensorrt")
class TensorRTBackend:
    """A deserialized TensorRT engine with one execution context on the pipeline's stream."""

    name = "tensorrt"

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.device = config.device if config.device.startswith("cuda") else "cuda"
        self.precision = config.precision
        self.context: Any = None
        self._trt: Any = None
        self._engine: Any = None
        self._exec: Any = None
        self._input_name = ""
        self._output_names: list[str] = []
        self._profile: trt_cache.ShapeProfile | None = None
        self._inputs: dict[tuple[int, int], Any] = {}
        self._outputs: dict[str, Any] = {}
        self.engine_path: Path | None = None

    def load(self) -> None:
        trt = import_tensorrt()
        from engines.gpu.memory import GpuContext

        self._trt = trt
        self.context = GpuContext(self.device)
        self.engine_path = build_engine(self.config)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self._engine is None:
            raise EngineError(f"TensorRT could not load {self.engine_path}; delete it to rebuild")
        self._exec = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1 or len(names) != 3:
            raise EngineError(f"engine has tensors {names}; expected one input and two outputs")
        self._input_name = inputs[0]
        outputs = [n for n in names if n not in inputs]
        order = list(load_model_info(self.config.model).output_names)  # (detections, prototypes)
        self._output_names = sorted(outputs, key=lambda n: order.index(n) if n in order else len(order))
        low, opt, high = self._engine.get_tensor_profile_shape(self._input_name, 0)
        self._profile = trt_cache.ShapeProfile(tuple(low), tuple(opt), tuple(high))  # type: ignore[arg-type]
        logger.info(
            "tensorrt backend ready", extra={"engine": str(self.engine_path), "profile": self._profile.as_dict()}
        )

    # -- Backend protocol -----------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int | str, ...]:
        return tuple(self._engine.get_tensor_shape(self._input_name)) if self._engine else ()

    @property
    def output_shapes(self) -> list[tuple[int | str, ...]]:
        return [tuple(self._engine.get_tensor_shape(n)) for n in self._output_names] if self._engine else []

    def infer(self, batch: Any) -> tuple[Any, Any]:
        count, _, height, width = (int(v) for v in batch.shape)
        view = self.input_view(count, (height, width))
        cp = self.context.cp
        with self.context.active():
            view[...] = cp.asarray(batch).astype(view.dtype, copy=False)
        out0, out1 = self.run(count, (height, width))
        with self.context.active():
            result = out0.copy(), out1.copy()
        self.context.synchronize()
        return result

    # -- device path (engines.gpu.pipeline) ----------------------------------------------------
    def plan_batch(self, count: int) -> int:
        assert self._profile is not None
        if not self._profile.min[0] <= count <= self._profile.max[0]:
            if count < self._profile.min[0]:
                return self._profile.min[0]  # pad up to the profile's smallest batch
            raise EngineError(f"batch of {count} exceeds the engine's profile max {self._profile.max[0]}")
        return count

    def input_view(self, batch: int, hw: tuple[int, int]) -> Any:
        """Input buffer sized for the profile's largest batch; a (batch, 3, H, W) view of it."""
        trt = self._trt
        dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(self._input_name)))
        assert self._profile is not None
        full = self.context.device_buffer(f"trt.input.{hw[0]}x{hw[1]}", (self._profile.max[0], 3, *hw), dtype)
        return full[:batch]

    def run(self, batch: int, hw: tuple[int, int]) -> tuple[Any, Any]:
        """Enqueue the engine on the context's stream; returns CuPy views of the outputs."""
        shape = (batch, 3, int(hw[0]), int(hw[1]))
        assert self._profile is not None
        if not self._profile.covers(shape):
            raise EngineError(f"input {shape} is outside the engine profile {self._profile.as_dict()}")
        if not self._exec.set_input_shape(self._input_name, shape):
            raise EngineError(f"TensorRT rejected input shape {shape}")
        view = self.input_view(batch, hw)
        self._exec.set_tensor_address(self._input_name, int(view.data.ptr))
        outputs = []
        for name in self._output_names:
            out_shape = tuple(int(v) for v in self._exec.get_tensor_shape(name))
            dtype = np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(name)))
            buffer = self.context.device_buffer(f"trt.output.{name}", out_shape, dtype)
            self._exec.set_tensor_address(name, int(buffer.data.ptr))
            outputs.append(buffer)
        if not self._exec.execute_async_v3(self.context.stream.ptr):
            raise EngineError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        return outputs[0], outputs[1]
