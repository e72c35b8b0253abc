"""What every model conversion shares: the error type, hashing, source checks and provenance.

A converted model must say what it was made from (a deployed INT8 model whose calibration set is
unknown cannot be reproduced or audited), and must keep Ultralytics' metadata (names, stride,
imgsz, task) so that ``engines.model`` loads it like the original export.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import onnx

from engines.base import EngineError
from engines.model import ModelInfo, load_model_info

logger = logging.getLogger(__name__)

PROVENANCE_KEY = "trtseg_provenance"
PRECISION_KEY = "trtseg_precision"


class QuantizationError(EngineError):
    """A model cannot be converted or calibrated; the message says why and what to change."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (models can be hundreds of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def load_source_model(path: Path | str) -> tuple[onnx.ModelProto, ModelInfo]:
    """Load an FP32 Ultralytics segmentation export, refusing anything else with a clear error."""
    path = Path(path)
    try:
        info = load_model_info(path)
    except QuantizationError:
        raise
    except EngineError as exc:
        raise QuantizationError(str(exc)) from exc
    model = onnx.load(str(path))
    if len(model.graph.input) != 1 or _elem_type(model.graph.input[0]) != onnx.TensorProto.FLOAT:
        raise QuantizationError(f"{path} must have one float32 image input")
    precision = metadata_dict(model).get(PRECISION_KEY, "fp32")
    if precision != "fp32":
        raise QuantizationError(f"{path} is already converted ({precision}); start from the FP32 export")
    return model, info


def _elem_type(value_info: onnx.ValueInfoProto) -> int:
    return int(value_info.type.tensor_type.elem_type)


def metadata_dict(model: onnx.ModelProto) -> dict[str, str]:
    """The model's metadata_props as a dict (Ultralytics stores names, stride, imgsz, task there)."""
    return {prop.key: prop.value for prop in model.metadata_props}


def tool_versions() -> dict[str, str]:
    """Versions of the tools that shaped a converted model (for reproducing it)."""
    versions: dict[str, str] = {"onnx": onnx.__version__}
    for dist in ("onnxruntime", "onnxruntime-gpu", "numpy"):
        try:
            versions[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            continue
    try:
        import trtseg

        versions["trtseg"] = str(getattr(trtseg, "__version__", "unknown"))
    except ImportError:  # pragma: no cover - the package is this checkout
        versions["trtseg"] = "unknown"
    return versions


def write_metadata(
    model: onnx.ModelProto, source_props: dict[str, str], precision: str, provenance: dict[str, Any]
) -> None:
    """Replace ``model``'s metadata with the source's (Ultralytics keys) plus our provenance."""
    record = {
        "precision": precision,
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "tools": tool_versions(),
        **provenance,
    }
    props = {k: v for k, v in source_props.items() if k not in (PROVENANCE_KEY, PRECISION_KEY)}
    props[PRECISION_KEY] = precision
    props[PROVENANCE_KEY] = json.dumps(record, sort_keys=True)
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def read_provenance(path: Path | str) -> dict[str, Any]:
    """The provenance record of a converted model ({} for an original export)."""
    model = onnx.load(str(path), load_external_data=False)
    raw = metadata_dict(model).get(PROVENANCE_KEY)
    return json.loads(raw) if raw else {}


def save_model(model: onnx.ModelProto, out: Path) -> Path:
    """Save next to nothing else: write to a temporary name, then rename (no half-written models)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    large = model.ByteSize() > 1_800_000_000
    onnx.save_model(model, str(tmp), save_as_external_data=large, location=out.name + ".data" if large else None)
    tmp.replace(out)
    logger.info("model written path=%s bytes=%d", out, out.stat().st_size)
    return out
