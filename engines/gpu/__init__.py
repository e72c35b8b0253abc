"""The GPU path of the engine: device memory, fused pre-processing and post-processing kernels.

Everything here runs on CuPy. PyTorch (the 'cuda' backend, torchvision NMS) and TensorRT share the
same buffers through DLPack, ``__cuda_array_interface__`` and raw device pointers, so a frame is
uploaded once and only final detections and mask bitmaps come back to the host.
"""

from __future__ import annotations

from engines.base import EngineError


def require_cupy() -> object:
    """Import CuPy or fail with a clear EngineError (the GPU path needs it)."""
    try:
        import cupy
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise EngineError(
            "the GPU engine path needs CuPy: pip install -r requirements-gpu.txt (cupy-cuda12x or cupy-cuda13x)"
        ) from exc
    return cupy
