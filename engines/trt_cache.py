"""Where built TensorRT engines live, and when one may be reused (plain Python, no TensorRT needed).

A serialized engine is only valid for the exact ONNX bytes, TensorRT version, GPU model and compute
capability, precision and optimisation profile it was built for. The cache key hashes all of them,
so a restart on the same machine reuses the engine and anything else rebuilds it; a sidecar JSON
beside each plan records the key's parts for people and audits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engines.base import EngineError

logger = logging.getLogger(__name__)

KEY_VERSION = 1  # bump when the meaning of a cached engine changes
_CHUNK = 1 << 20
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class ShapeProfile:
    """TensorRT optimisation profile for the image input: (batch, 3, height, width) at min/opt/max."""

    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]

    def __post_init__(self) -> None:
        for low, mid, high in zip(self.min, self.opt, self.max, strict=True):
            if not 1 <= low <= mid <= high:
                raise EngineError(f"profile must satisfy 1 <= min <= opt <= max per axis, got {self}")

    def covers(self, shape: tuple[int, int, int, int]) -> bool:
        return all(low <= v <= high for low, v, high in zip(self.min, shape, self.max, strict=True))

    def as_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def batch_profile(
    batch_size: int, profile_batch: tuple[int, int, int] | None, fixed_batch: int | None
) -> tuple[int, int, int]:
    """(min, opt, max) batch: the configured profile, else (1, batch, batch); a fixed-batch model pins it."""
    if fixed_batch is not None:
        if profile_batch is not None and profile_batch != (fixed_batch,) * 3:
            raise EngineError(
                f"the model has a fixed batch of {fixed_batch}; engine.profile_batch {profile_batch} cannot apply"
            )
        return (fixed_batch,) * 3
    if profile_batch is not None:
        low, opt, high = profile_batch
        if not 1 <= low <= opt <= high:
            raise EngineError(f"profile_batch must satisfy 1 <= min <= opt <= max, got {profile_batch}")
        if high < batch_size:
            raise EngineError(f"profile_batch max ({high}) is below batch_size ({batch_size})")
        return low, opt, high
    if batch_size < 1:
        raise EngineError(f"batch_size must be at least 1, got {batch_size}")
    return 1, batch_size, batch_size


def shape_profile(
    batches: tuple[int, int, int],
    imgsz: tuple[int, int],
    dynamic_hw: bool,
    stride: int = 32,
    opt_hw: tuple[int, int] | None = None,
) -> ShapeProfile:
    """The input profile. Static-size models: height and width fixed at ``imgsz``.

    Dynamic-size models: any stride multiple from one stride up to ``imgsz`` (rectangular inputs
    never exceed it), tuned for ``opt_hw`` (default: the 16:9 rectangular input, 384x640 for 640).
    """
    low, opt, high = batches
    height, width = imgsz
    if not dynamic_hw:
        return ShapeProfile((low, 3, height, width), (opt, 3, height, width), (high, 3, height, width))
    if opt_hw is None:
        from engines.preprocess import auto_shape

        opt_hw = auto_shape((720, 1280), imgsz, stride)
    if any(side % stride or side <= 0 for side in opt_hw) or opt_hw[0] > height or opt_hw[1] > width:
        raise EngineError(f"opt input {opt_hw} must be positive stride multiples within {imgsz}")
    return ShapeProfile((low, 3, stride, stride), (opt, 3, *opt_hw), (high, 3, height, width))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class EngineKey:
    """Everything a serialized engine depends on."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    precision: str
    profile: ShapeProfile
    workspace_mb: int

    def digest(self) -> str:
        """Stable hash of the key (canonical JSON, sorted keys)."""
        payload = {"key_version": KEY_VERSION, **asdict(self)}
        payload["profile"] = self.profile.as_dict()
        payload["compute_capability"] = list(self.compute_capability)
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        return {
            "key_version": KEY_VERSION,
            "onnx_sha256": self.onnx_sha256,
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": list(self.compute_capability),
            "precision": self.precision,
            "profile": self.profile.as_dict(),
            "workspace_mb": self.workspace_mb,
            "digest": self.digest(),
        }


def engine_path(cache_dir: Path, model_path: Path, key: EngineKey) -> Path:
    """``<cache_dir>/<model stem>-<precision>-sm<cc>-<digest16>.engine``."""
    major, minor = key.compute_capability
    stem = _SAFE.sub("_", Path(model_path).stem)
    return Path(cache_dir) / f"{stem}-{key.precision}-sm{major}{minor}-{key.digest()[:16]}.engine"


def sidecar_path(engine: Path) -> Path:
    return engine.with_suffix(".json")


def timing_cache_path(cache_dir: Path, key: EngineKey) -> Path:
    """One timing cache per TensorRT version and GPU (it is valid across models)."""
    major, minor = key.compute_capability
    version = _SAFE.sub("_", key.tensorrt_version)
    gpu = _SAFE.sub("_", key.gpu_name)
    return Path(cache_dir) / f"timing-trt{version}-{gpu}-sm{major}{minor}.cache"


def lookup(cache_dir: Path, model_path: Path, key: EngineKey) -> Path | None:
    """The cached engine for ``key``, or None. A plan whose sidecar disagrees is ignored (and logged)."""
    path = engine_path(cache_dir, model_path, key)
    if not path.is_file() or path.stat().st_size == 0:
        return None
    side = sidecar_path(path)
    try:
        recorded = json.loads(side.read_text())
    except (OSError, ValueError):
        logger.warning("engine cache entry without a readable sidecar; rebuilding", extra={"engine": str(path)})
        return None
    if recorded.get("digest") != key.digest():
        logger.warning("engine cache sidecar does not match its key; rebuilding", extra={"engine": str(path)})
        return None
    return path


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a crash never leaves a truncated plan behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def store(cache_dir: Path, model_path: Path, key: EngineKey, plan: bytes) -> Path:
    """Save a serialized engine and its sidecar; returns the engine's path."""
    if not plan:
        raise EngineError("refusing to cache an empty engine plan")
    path = engine_path(cache_dir, model_path, key)
    atomic_write(path, plan)
    record = {**key.describe(), "model": str(model_path), "bytes": len(plan)}
    atomic_write(sidecar_path(path), json.dumps(record, indent=2, sort_keys=True).encode())
    return path


def onnx_precision(model: Any) -> str:
    """The precision an ONNX graph carries: 'int8' (Q/DQ nodes), 'fp16' (half weights) or 'fp32'.

    Our converters record it in metadata (``trtseg_precision``); otherwise it is read off the graph.
    """
    from onnx import TensorProto

    for prop in model.metadata_props:
        if prop.key == "trtseg_precision" and prop.value in ("fp32", "fp16", "int8"):
            return prop.value
    ops = {node.op_type for node in model.graph.node}
    if {"QuantizeLinear", "DequantizeLinear"} & ops:
        return "int8"
    if any(init.data_type == TensorProto.FLOAT16 for init in model.graph.initializer):
        return "fp16"
    return "fp32"
