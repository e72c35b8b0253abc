"""ONNX Runtime backend: the CPU default, and CUDA / TensorRT execution providers where installed.

Only runs the network; letterboxing, NMS and masks are shared (``engines.preprocess`` and
``engines.postprocess``). Execution providers come from ``EngineConfig.providers`` in order of
preference; a provider this onnxruntime build lacks is an error, not a silent CPU fallback, so a
GPU deployment never quietly runs at CPU speed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import EngineError, register_backend
from engines.head import HeadDecoder, opened_path
from engines.model import load_model_info
from trtseg.config import EngineConfig

logger = logging.getLogger(__name__)


def _device_id(device: str) -> int:
    """'cuda:1' -> 1; 'cuda' or 'cpu' -> 0."""
    _, _, index = device.partition(":")
    try:
        return int(index) if index else 0
    except ValueError:
        raise EngineError(f"device '{device}' is not 'cpu', 'cuda' or 'cuda:N'") from None


def provider_options(config: EngineConfig, provider: str) -> dict[str, Any]:
    """Options for one execution provider, derived from the engine configuration."""
    if provider == "TensorrtExecutionProvider":
        cache = Path(config.cache_dir) / "ort-trt"
        return {
            "device_id": _device_id(config.device),
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),
            "trt_fp16_enable": config.precision == "fp16",
            "trt_int8_enable": config.precision == "int8",
            "trt_max_workspace_size": config.workspace_mb * 1024 * 1024,
        }
    if provider == "CUDAExecutionProvider":
        return {"device_id": _device_id(config.device)}
    return {}


@register_backend("onnxruntime")
class OnnxRuntimeBackend:
    """Runs an ONNX export with ONNX Runtime."""

    name = "onnxruntime"

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.device = config.device
        self.precision = config.precision
        self._session: Any = None
        self._input_name = ""
        self._output_names: list[str] = []
        self._head: HeadDecoder | None = None

    @property
    def flexible_input(self) -> bool:
        """True when the session runs any batch and stride-aligned size (the head was opened)."""
        return self._head is not None

    def _model_to_run(self) -> Path:
        """The export itself, or its opened form (``engines.head``) when configured and needed."""
        model = Path(self.config.model)
        if self.config.open_head == "off":
            return model
        info = load_model_info(model)
        if self.config.open_head == "auto" and info.dynamic_hw and info.dynamic_batch:
            return model
        try:
            path, layout = opened_path(Path(self.config.cache_dir), model, info.num_classes)
        except EngineError as error:
            if self.config.open_head == "on":
                raise
            logger.warning("running the export as it is", extra={"model": str(model), "reason": str(error)})
            return model
        self._head = HeadDecoder(layout)
        return path

    def load(self) -> None:
        import onnxruntime as ort

        available = set(ort.get_available_providers())
        missing = [p for p in self.config.providers if p not in available]
        if missing:
            raise EngineError(
                f"ONNX Runtime execution provider(s) {', '.join(missing)} are not available in this onnxruntime "
                f"build (available: {', '.join(sorted(available))}); install onnxruntime-gpu for CUDA/TensorRT"
            )
        if not self.config.providers:
            raise EngineError("engine.providers is empty; name at least 'CPUExecutionProvider'")
        if self.precision != "fp32" and "TensorrtExecutionProvider" not in self.config.providers:
            logger.warning(
                "precision applies only to the TensorRT execution provider; running the model's own precision",
                extra={"precision": self.precision},
            )
        for provider in self.config.providers:
            if provider == "TensorrtExecutionProvider":
                (Path(self.config.cache_dir) / "ort-trt").mkdir(parents=True, exist_ok=True)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.config.intra_op_threads:
            options.intra_op_num_threads = self.config.intra_op_threads
        options.log_severity_level = 3
        # No busy-waiting worker threads by default: a segmentation actor shares its cores with
        # decoders and encoders, and spinning threads steal them (docs/BENCHMARKS.md, Engine).
        spinning = "1" if self.config.intra_op_spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        providers = [(p, provider_options(self.config, p)) for p in self.config.providers]
        path = self._model_to_run()
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types per failure
            raise EngineError(f"ONNX Runtime cannot load {self.config.model}: {exc}") from exc
        self._input_name = self._session.get_inputs()[0].name
        self._output_names = [out.name for out in self._session.get_outputs()]
        if self._head is not None:
            self._check_opened()
        logger.info(
            "onnxruntime session ready",
            extra={
                "model": str(self.config.model),
                "providers": self._session.get_providers(),
                "intra_op_threads": self.config.intra_op_threads,
            },
        )

    @property
    def session(self) -> Any:
        if self._session is None:
            raise EngineError("backend used before load()")
        return self._session

    @property
    def providers(self) -> list[str]:
        """Execution providers the session actually uses, in order."""
        return list(self.session.get_providers())

    @property
    def input_shape(self) -> tuple[int | str, ...]:
        return tuple(self.session.get_inputs()[0].shape)

    @property
    def output_shapes(self) -> list[tuple[int | str, ...]]:
        outputs = self.session.get_outputs()
        if self._head is not None:  # what ``infer`` returns after decoding, not the head's raw tensors
            layout = self._head.layout
            channels = sum(int(out.shape[1]) for out in outputs if out.name in (layout.cls[0], layout.coeffs[0]))
            return [("batch", 4 + channels, "anchors"), tuple(outputs[-1].shape)]
        return [tuple(out.shape) for out in outputs]

    def _check_opened(self) -> None:
        """An opened graph must really run at a size other than the export's (YOLO11's attention blocks
        bake their size in too); if it does not, fall back to the export as it is."""
        try:
            self.infer(np.zeros((2, 3, 96, 160), np.float32))
        except Exception as error:
            if self.config.open_head == "on":
                raise EngineError(f"the opened model does not run at other sizes: {error}") from error
            logger.warning(
                "the opened model does not run at other sizes; running the export as it is",
                extra={"model": str(self.config.model), "error": str(error)},
            )
            self._head = None
            self._session = None
            self.config = self.config.model_copy(update={"open_head": "off"})
            self.load()

    def infer(self, batch: Any) -> tuple[Any, Any]:
        array = np.ascontiguousarray(batch, dtype=np.float32)
        if self._head is not None:
            outputs = self.session.run(self._output_names, {self._input_name: array})
            return self._head.decode(dict(zip(self._output_names, outputs, strict=True)), array.shape[2:])
        output0, output1 = self.session.run(self._output_names[:2], {self._input_name: array})
        return output0, output1
