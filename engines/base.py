"""The backend protocol and its registry.

A backend only runs the network: a float32 NCHW batch in, the model's raw outputs out. Model
metadata, letterboxing, NMS and masks are shared by all backends (``engines.model``,
``engines.preprocess``, ``engines.postprocess``), so a backend is one small class in one file,
registered under a key that configuration names (``engine.backend``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from trtseg.config import EngineConfig


class EngineError(Exception):
    """The model or backend cannot be used; the message says why."""


@runtime_checkable
class Backend(Protocol):
    """Runs a YOLOv8-seg network. ``infer`` takes (B, 3, H, W) and returns (output0, output1)."""

    name: str
    device: str
    precision: str

    def load(self) -> None:
        """Allocate sessions, engines and buffers; called once before ``infer``."""

    @property
    def input_shape(self) -> tuple[int | str, ...]:
        """The network input's shape; dynamic axes are names (str)."""

    @property
    def output_shapes(self) -> list[tuple[int | str, ...]]:
        """Shapes of output0 (detections) and output1 (prototypes)."""

    def infer(self, batch: Any) -> tuple[Any, Any]:
        """Run one batch; returns (B, 4+nc+32, A) predictions and (B, 32, H/4, W/4) prototypes."""


BackendFactory = Callable[[EngineConfig], Backend]
_REGISTRY: dict[str, BackendFactory] = {}


def register_backend(key: str) -> Callable[[BackendFactory], BackendFactory]:
    """Class decorator: make a backend available under ``engine.backend: key``."""

    def decorate(factory: BackendFactory) -> BackendFactory:
        _REGISTRY[key] = factory
        return factory

    return decorate


def available_backends() -> list[str]:
    _import_builtin_backends()
    return sorted(_REGISTRY)


def create_backend(config: EngineConfig) -> Backend:
    """Instantiate the configured backend (not yet loaded)."""
    _import_builtin_backends()
    try:
        factory = _REGISTRY[config.backend]
    except KeyError:
        raise EngineError(
            f"unknown engine backend '{config.backend}'; available: {', '.join(sorted(_REGISTRY))}"
        ) from None
    return factory(config)


def _import_builtin_backends() -> None:
    # Imported lazily: a backend's module may need packages (tensorrt, torch) that are absent; its
    # import only fails when that backend is chosen.
    import importlib

    for module in ("engines.onnxruntime_backend", "engines.cuda_backend", "engines.tensorrt_backend"):
        try:
            importlib.import_module(module)
        except ImportError:
            continue


def as_numpy(array: Any) -> np.ndarray:
    """Host copy of a backend's output (numpy, CuPy or torch)."""
    if isinstance(array, np.ndarray):
        return array
    if hasattr(array, "get"):
        return array.get()
    if hasattr(array, "detach"):
        return array.detach().float().cpu().numpy()
    return np.asarray(array)
