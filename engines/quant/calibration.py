"""The calibration set: sampled frames letterboxed exactly as inference does, cached with a hash.

Letterboxing reuses ``engines.preprocess`` (same scale, rounding, padding, rectangular ``auto``
canvas for dynamic-shape models), so the ranges INT8 measures are those of real inputs. The set is
kept as uint8 RGB NCHW (4x smaller than float; the reader scales by 1/255 like the engine) in an
``.npy`` with a JSON sidecar: the request that made it (sources, count, sampling, input size) and
the sha256 of the array, which the produced model's provenance records. A second calibration with
the same request reuses the file instead of decoding again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engines.model import ModelInfo
from engines.preprocess import batch_geometry, check_image, letterbox
from engines.quant.sampling import Sampling, sample_frames

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationSet:
    """Letterboxed calibration inputs and where they came from."""

    data: np.ndarray  # (N, 3, H, W) uint8 RGB
    sha256: str
    sources: tuple[str, ...]
    sampling: str
    input_shape: tuple[int, int]

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def as_float(self) -> np.ndarray:
        """The network inputs: float32 in [0, 1] (what ``engines.preprocess.preprocess`` produces)."""
        return self.data.astype(np.float32) * np.float32(1.0 / 255.0)

    def provenance(self) -> dict[str, object]:
        return {
            "calibration_frames": len(self),
            "calibration_sha256": self.sha256,
            "calibration_sampling": self.sampling,
            "calibration_sources": list(self.sources),
            "calibration_input_shape": list(self.input_shape),
        }


def letterbox_frames(frames: Sequence[np.ndarray], info: ModelInfo, imgsz: tuple[int, int] | None = None) -> np.ndarray:
    """BGR frames to one uint8 RGB NCHW array on a common canvas, as the engine would batch them."""
    checked = [check_image(frame, i) for i, frame in enumerate(frames)]
    target = imgsz or info.imgsz
    # As SegmentationEngine: rectangular (auto) canvases only for dynamic models without a fixed imgsz.
    rectangular = info.dynamic_hw and imgsz is None
    geometries = batch_geometry([f.shape[:2] for f in checked], target, info.stride, rectangular=rectangular)
    boxed = [letterbox(frame, geom) for frame, geom in zip(checked, geometries, strict=True)]
    return np.ascontiguousarray(np.stack(boxed)[..., ::-1].transpose(0, 3, 1, 2))


def array_sha256(data: np.ndarray) -> str:
    """Hash of an array's shape, dtype and bytes: identifies a calibration set."""
    digest = hashlib.sha256(f"{data.dtype.str}{data.shape}".encode())
    digest.update(np.ascontiguousarray(data).tobytes())
    return digest.hexdigest()


def _request_key(
    sources: Sequence[str], count: int, sampling: Sampling, target: tuple[int, int], info: ModelInfo
) -> str:
    stamps = []
    for source in sources:
        path = Path(source)
        stat = path.stat() if path.exists() else None
        stamps.append([source, stat.st_size if stat else None, stat.st_mtime_ns if stat else None])
    request = [stamps, count, str(sampling), list(target), info.stride, info.dynamic_hw]
    return hashlib.sha256(json.dumps(request).encode()).hexdigest()


def build_calibration_set(
    sources: Sequence[str | Path],
    info: ModelInfo,
    count: int = 128,
    sampling: Sampling | str = "uniform",
    imgsz: tuple[int, int] | None = None,
    cache: Path | None = None,
) -> CalibrationSet:
    """Sample, letterbox and (with ``cache``, an ``.npy`` path) store or reuse a calibration set."""
    spec = Sampling.parse(sampling)
    names = tuple(str(s) for s in sources)
    target = imgsz or info.imgsz
    key = _request_key(names, count, spec, target, info)
    sidecar = cache.with_suffix(".json") if cache else None
    if cache and sidecar and cache.is_file() and sidecar.is_file():
        meta = json.loads(sidecar.read_text())
        if meta.get("request") == key:
            data = np.load(cache, allow_pickle=False)
            if array_sha256(data) == meta.get("sha256"):
                logger.info("calibration set reused path=%s frames=%d", cache, len(data))
                return CalibrationSet(data, meta["sha256"], names, str(spec), tuple(data.shape[2:]))
            logger.warning("calibration cache does not match its hash, rebuilding path=%s", cache)
    frames = sample_frames(names, count, spec)
    data = letterbox_frames(frames, info, imgsz)
    result = CalibrationSet(data, array_sha256(data), names, str(spec), (int(data.shape[2]), int(data.shape[3])))
    if cache and sidecar:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, data, allow_pickle=False)
        sidecar.write_text(json.dumps({"request": key, **asdict(result) | {"data": None}}, indent=1, default=list))
        logger.info("calibration set cached path=%s frames=%d sha256=%s", cache, len(data), result.sha256[:12])
    return result
