"""What an Ultralytics YOLOv8/YOLO11-seg ONNX export is: input size, stride, classes, batch.

Everything the pre- and post-processing needs is read once from the file (graph shapes and the
``metadata_props`` Ultralytics writes) so that backends never parse the model themselves. A file
that is not a usable segmentation export is refused here with an ``EngineError`` that says why,
before any session or engine is built from it.
"""

from __future__ import annotations

import ast
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.base import EngineError

logger = logging.getLogger(__name__)

NUM_MASK_COEFFS = 32  # YOLOv8/YOLO11-seg prototype count


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """The facts about a segmentation model that the engine relies on."""

    path: Path
    names: dict[int, str]
    imgsz: tuple[int, int]  # (height, width) the model was exported for
    stride: int
    task: str
    input_name: str
    output_names: tuple[str, str]
    batch: int | None  # fixed batch size, or None when the batch axis is dynamic
    dynamic_hw: bool  # True when height and width are dynamic axes
    num_masks: int = NUM_MASK_COEFFS
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def dynamic_batch(self) -> bool:
        return self.batch is None


def parse_names(text: str) -> dict[int, str]:
    """Parse the ``names`` metadata (a Python dict literal) without evaluating code."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise EngineError(f"model metadata 'names' is not a Python literal: {text[:80]!r}") from exc
    if isinstance(value, list | tuple):
        value = dict(enumerate(value))
    if not isinstance(value, dict) or not value:
        raise EngineError(f"model metadata 'names' must be a non-empty dict of class id -> name, got {text[:80]!r}")
    try:
        names = {int(k): str(v) for k, v in value.items()}
    except (TypeError, ValueError) as exc:
        raise EngineError(f"model metadata 'names' has a non-integer class id: {text[:80]!r}") from exc
    if sorted(names) != list(range(len(names))):
        raise EngineError(f"model class ids must be 0..{len(names) - 1}, got {sorted(names)[:10]}")
    return names


def parse_imgsz(text: str) -> tuple[int, int]:
    """``imgsz`` metadata: ``[h, w]`` or a single int."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise EngineError(f"model metadata 'imgsz' is malformed: {text!r}") from exc
    if isinstance(value, int):
        value = (value, value)
    if not isinstance(value, list | tuple) or len(value) != 2 or not all(isinstance(v, int) and v > 0 for v in value):
        raise EngineError(f"model metadata 'imgsz' must be [height, width], got {text!r}")
    return int(value[0]), int(value[1])


def _dims(value_info: Any) -> tuple[int | str, ...]:
    dims: list[int | str] = []
    for dim in value_info.type.tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        else:
            dims.append(dim.dim_param or "?")
    return tuple(dims)


def _literal(metadata: dict[str, str], key: str) -> Any:
    try:
        return ast.literal_eval(metadata[key])
    except (KeyError, ValueError, SyntaxError):
        return None


def load_model_info(path: str | Path) -> ModelInfo:
    """Read and validate an ONNX segmentation export; raises ``EngineError`` for anything unusable."""
    import onnx

    path = Path(path)
    if path.is_dir():
        raise EngineError(f"model path is a directory, not an ONNX file: {path}")
    if not path.is_file():
        raise EngineError(f"model file not found: {path}")
    if path.stat().st_size == 0:
        raise EngineError(f"model file is empty: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, truncated files, wrong format
        raise EngineError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    graph = model.graph
    if not graph.node or not graph.input or not graph.output:
        raise EngineError(f"{path} is not a readable ONNX model (empty graph)")

    metadata = {prop.key: prop.value for prop in model.metadata_props}
    task = metadata.get("task", "segment")
    if task != "segment":
        raise EngineError(f"{path} is a '{task}' model; trtseg needs a segmentation ('segment') model")
    if str(metadata.get("end2end", "False")) == "True":
        raise EngineError(f"{path} is an end-to-end (NMS-free) export; export it with end2end=False")

    initializers = {init.name for init in graph.initializer}
    inputs = [inp for inp in graph.input if inp.name not in initializers]
    if len(inputs) != 1:
        raise EngineError(f"{path} has {len(inputs)} inputs; a YOLO-seg export has one image input")
    in_dims = _dims(inputs[0])
    if len(in_dims) != 4 or in_dims[1] != 3:
        raise EngineError(f"{path} input shape {in_dims} is not (batch, 3, height, width)")
    if len(graph.output) != 2:
        raise EngineError(
            f"{path} has {len(graph.output)} outputs; a segmentation model has 2 (detections, mask prototypes)"
            + (" - this looks like a detection-only model" if len(graph.output) == 1 else "")
        )
    out0, out1 = _dims(graph.output[0]), _dims(graph.output[1])
    if len(out0) != 3 or len(out1) != 4:
        raise EngineError(f"{path} output shapes {out0}, {out1} are not (B, 4+nc+32, A) and (B, 32, H/4, W/4)")
    num_masks = out1[1]
    if not isinstance(num_masks, int) or num_masks <= 0:
        raise EngineError(f"{path} mask prototype output {out1} has no fixed channel count")

    if "names" in metadata:
        names = parse_names(metadata["names"])
    elif isinstance(out0[1], int):
        names = {i: str(i) for i in range(out0[1] - 4 - num_masks)}
        logger.warning("model has no class names in metadata; using ids", extra={"model": str(path)})
    else:
        raise EngineError(f"{path} has neither class names in metadata nor a fixed output width")
    if isinstance(out0[1], int) and out0[1] != 4 + len(names) + num_masks:
        raise EngineError(
            f"{path} output0 has {out0[1]} channels but 4 + {len(names)} classes + {num_masks} mask "
            f"coefficients = {4 + len(names) + num_masks}; metadata and graph disagree"
        )

    stride_value = _literal(metadata, "stride")
    stride = int(stride_value) if isinstance(stride_value, int | float) and stride_value > 0 else 32
    static_hw = isinstance(in_dims[2], int) and isinstance(in_dims[3], int)
    if "imgsz" in metadata:
        imgsz = parse_imgsz(metadata["imgsz"])
    elif static_hw:
        imgsz = (int(in_dims[2]), int(in_dims[3]))
    else:
        imgsz = (640, 640)
    if static_hw and imgsz != (in_dims[2], in_dims[3]):
        logger.warning(
            "model imgsz metadata differs from its input shape; using the input shape",
            extra={"model": str(path), "imgsz": imgsz, "input": in_dims},
        )
        imgsz = (int(in_dims[2]), int(in_dims[3]))
    if any(side % stride for side in imgsz):
        raise EngineError(f"{path} input size {imgsz} is not a multiple of its stride {stride}")

    batch = in_dims[0] if isinstance(in_dims[0], int) and in_dims[0] > 0 else None
    info = ModelInfo(
        path=path,
        names=names,
        imgsz=imgsz,
        stride=stride,
        task=task,
        input_name=inputs[0].name,
        output_names=(graph.output[0].name, graph.output[1].name),
        batch=batch,
        dynamic_hw=not static_hw,
        num_masks=int(num_masks),
        metadata=metadata,
    )
    logger.info(
        "model loaded",
        extra={
            "model": str(path),
            "classes": info.num_classes,
            "imgsz": imgsz,
            "batch": batch or "dynamic",
            "dynamic_hw": info.dynamic_hw,
        },
    )
    return info
