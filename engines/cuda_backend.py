"""The 'cuda' backend: the same ONNX graph on the GPU through PyTorch (onnx2torch).

For each batch size it runs, the graph is specialised to that input shape (``engines.gpu.
torch_module``), converted to fp16 when ``engine.precision`` is fp16, laid out channels-last, and
captured once as a CUDA graph, so a batch costs one graph launch instead of hundreds of kernel
launches. Partial batches are padded up to the next captured size. Input and output buffers come
from ``engines.gpu.memory.GpuContext`` and are shared with the GPU pre/post-processing, which
write into and read from them directly (no host round trip).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.base import EngineError, register_backend
from engines.model import load_model_info
from trtseg.config import EngineConfig

logger = logging.getLogger(__name__)

WARMUP_RUNS = 3


def graph_batch_sizes(max_batch: int) -> list[int]:
    """Batch sizes captured: powers of two below ``max_batch``, and ``max_batch`` itself."""
    if max_batch < 1:
        raise EngineError(f"batch size must be at least 1, got {max_batch}")
    sizes = {max_batch}
    size = 1
    while size < max_batch:
        sizes.add(size)
        size *= 2
    return sorted(sizes)


def padded_batch(count: int, sizes: list[int]) -> int:
    """The smallest captured batch holding ``count`` frames."""
    for size in sizes:
        if size >= count:
            return size
    raise EngineError(f"batch of {count} frames exceeds the largest batch size {sizes[-1]}")


@dataclass(slots=True)
class _Runner:
    """One specialised module with its fixed input buffer, and its CUDA graph once captured."""

    module: Any
    input_cupy: Any  # (B, 3, H, W) view the pre-processing writes into
    input_torch: Any
    graph: Any = None
    outputs: tuple[Any, Any] | None = None


@register_backend("cuda")
class CudaBackend:
    """PyTorch on one CUDA device; optional fp16, channels-last and CUDA graphs."""

    name = "cuda"

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.device = config.device if config.device.startswith("cuda") else "cuda"
        if config.precision == "int8":
            raise EngineError("engine.precision int8 needs the 'tensorrt' backend (the 'cuda' backend runs fp32/fp16)")
        self.precision = config.precision
        self.use_graphs = config.cuda_graphs
        self.channels_last = config.channels_last
        self.context: Any = None
        self.info: Any = None
        self._onnx_half_input = False
        self._torch: Any = None
        self._onnx: Any = None
        self._dynamic: Any = None
        self._runners: dict[tuple[int, int, int], _Runner] = {}
        self._input_shape: tuple[int | str, ...] = ()
        self._output_shapes: list[tuple[int | str, ...]] = []
        self.batch_sizes: list[int] = []

    # -- Backend protocol -----------------------------------------------------------------------
    def load(self) -> None:
        try:
            import torch
        except ImportError as exc:
            raise EngineError(
                "the 'cuda' backend needs PyTorch with CUDA: pip install -r requirements-gpu.txt"
            ) from exc
        import onnx

        from engines.gpu.memory import GpuContext

        if not torch.cuda.is_available():
            raise EngineError("the 'cuda' backend found no CUDA device (torch.cuda.is_available() is False)")
        self._torch = torch
        if self.precision == "fp32":
            # fp32 means fp32: PyTorch would otherwise run convolutions in TF32 on Ampere and newer.
            # (Process-wide flags; a segmentation actor owns its process.)
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.info = load_model_info(self.config.model)
        self._onnx = onnx.load(str(self.config.model))
        self._input_shape = tuple(self._dims(self._onnx.graph.input[0]))
        self._output_shapes = [tuple(self._dims(out)) for out in self._onnx.graph.output]
        elem = self._onnx.graph.input[0].type.tensor_type.elem_type
        self._onnx_half_input = elem == onnx.TensorProto.FLOAT16
        self.context = GpuContext(self.device)
        torch.cuda.set_device(self.context.index)
        max_batch = self.info.batch or self.config.batch_size
        self.batch_sizes = [max_batch] if self.info.batch else graph_batch_sizes(max_batch)
        logger.info(
            "cuda backend ready",
            extra={
                "model": str(self.config.model),
                "device": self.context.info.name,
                "precision": self.precision,
                "graphs": self.use_graphs,
                "batch_sizes": self.batch_sizes,
            },
        )

    @property
    def input_shape(self) -> tuple[int | str, ...]:
        return self._input_shape

    @property
    def output_shapes(self) -> list[tuple[int | str, ...]]:
        return self._output_shapes

    @property
    def input_dtype(self) -> np.dtype:
        half = self.precision == "fp16" or self._onnx_half_input
        return np.dtype(np.float16 if half else np.float32)

    def infer(self, batch: Any) -> tuple[Any, Any]:
        """Protocol path: a (B, 3, H, W) batch (numpy or device) in, torch outputs (copies) out."""
        self._require_loaded()
        count, _, height, width = (int(v) for v in batch.shape)
        size = self.plan_batch(count)
        view = self.input_view(size, (height, width))
        cp = self.context.cp
        with self.context.active():
            source = cp.asarray(batch) if isinstance(batch, np.ndarray) else batch
            view[:count] = cp.asarray(source).astype(view.dtype, copy=False)
        out0, out1 = self.run(size, (height, width))
        stream = self.context.torch_stream()
        with self._torch.cuda.stream(stream):  # copies on the stream that produced the outputs
            result = out0[:count].float().clone(), out1[:count].float().clone()
        stream.synchronize()
        return result

    # -- device path (engines.gpu.pipeline) ----------------------------------------------------
    def plan_batch(self, count: int) -> int:
        return padded_batch(count, self.batch_sizes)

    def input_view(self, batch: int, hw: tuple[int, int]) -> Any:
        """The CuPy (batch, 3, H, W) view the pre-processing must fill before ``run``."""
        return self._runner(batch, hw).input_cupy

    def run(self, batch: int, hw: tuple[int, int]) -> tuple[Any, Any]:
        """Run the network on the input buffer; returns torch tensors valid until the next run."""
        runner = self._runner(batch, hw)
        torch = self._torch
        stream = self.context.torch_stream()
        with torch.cuda.stream(stream), torch.inference_mode():
            if runner.graph is not None:
                runner.graph.replay()
                assert runner.outputs is not None
                return runner.outputs
            out = runner.module(runner.input_torch)
            return out[0], out[1]

    # -- internals ------------------------------------------------------------------------------
    def _require_loaded(self) -> None:
        if self.context is None:
            raise EngineError("cuda backend used before load()")

    @staticmethod
    def _dims(value_info: Any) -> list[int | str]:
        return [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in value_info.type.tensor_type.shape.dim
        ]

    def _runner(self, batch: int, hw: tuple[int, int]) -> _Runner:
        self._require_loaded()
        key = (int(batch), int(hw[0]), int(hw[1]))
        runner = self._runners.get(key)
        if runner is None:
            runner = self._build_runner(key)
            self._runners[key] = runner
        return runner

    def _build_runner(self, key: tuple[int, int, int]) -> _Runner:
        from engines.gpu.memory import to_torch
        from engines.gpu.torch_module import convert, move_to_device, specialise_onnx

        torch = self._torch
        batch, height, width = key
        started = time.perf_counter()
        static = specialise_onnx(self._onnx, self.info.input_name, (batch, 3, height, width))
        if static is None:
            if self._dynamic is None:
                self._dynamic = self._to_device(convert(self._onnx), move_to_device)
            module, capturable = self._dynamic, False
        else:
            module, capturable = self._to_device(convert(static), move_to_device), True
        dtype = self.input_dtype
        if self.channels_last:
            storage = self.context.device_buffer(
                f"cuda.input.{batch}x{height}x{width}", (batch, height, width, 3), dtype
            )
            input_cupy = storage.transpose(0, 3, 1, 2)
        else:
            input_cupy = self.context.device_buffer(
                f"cuda.input.{batch}x{height}x{width}", (batch, 3, height, width), dtype
            )
        with self.context.active():
            input_cupy[...] = 0.5  # defined contents for warm-up and capture
        input_torch = to_torch(input_cupy)
        runner = _Runner(module=module, input_cupy=input_cupy, input_torch=input_torch)
        stream = self.context.torch_stream()
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(WARMUP_RUNS):
                module(input_torch)
            stream.synchronize()
            if self.use_graphs and capturable:
                graph = torch.cuda.CUDAGraph()
                try:
                    # thread_local: post-processing and staging threads keep using the GPU meanwhile.
                    with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
                        out = module(input_torch)
                    runner.graph, runner.outputs = graph, (out[0], out[1])
                except Exception as exc:  # capture refused: run eagerly rather than fail
                    logger.warning("CUDA graph capture failed, running eagerly: %s", exc, extra={"shape": key})
                    torch.cuda.synchronize()
        logger.info(
            "cuda runner ready",
            extra={"shape": key, "graph": runner.graph is not None, "seconds": round(time.perf_counter() - started, 2)},
        )
        return runner

    def _to_device(self, module: Any, move: Any) -> Any:
        half = self.precision == "fp16" and not self._onnx_half_input
        return move(module, self._torch.device("cuda", self.context.index), half, self.channels_last)
