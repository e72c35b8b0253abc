"""Open a YOLOv8/YOLO11-seg export's detection head, so a fixed-size export runs at any input size.

Ultralytics' default export (``dynamic=False``) bakes its input size into the head: the anchor grid
and the reshapes of the box decode are constants for 640x640. Everything before the head is
convolutional and does not care. Cutting the graph at the head's last convolutions (per level:
box distributions, class logits, mask coefficients) and the prototype output gives a network that
runs at any stride-aligned size, so a 1280x720 frame is inferred at 384x640 instead of 640x640
(40 % fewer pixels). The decode that was cut (distribution focal loss expectation, anchor grid,
strides, sigmoid) is done here in NumPy, exactly as Ultralytics' ``Detect`` head does it, and gives
back the export's own ``output0`` layout, so post-processing is unchanged.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import EngineError
from engines.trt_cache import atomic_write, sha256_file

logger = logging.getLogger(__name__)

_HEAD_CONV = re.compile(r"cv([234])\.(\d+)")
_ROLES = {"2": "box", "3": "cls", "4": "coeffs"}
OPEN_HEAD_METADATA = "trtseg_open_head"


@dataclass(frozen=True, slots=True)
class HeadLayout:
    """Which tensors of the opened graph hold what; levels are ordered from the finest stride."""

    box: tuple[str, ...]  # (B, 4 * reg_max, h, w) per level
    cls: tuple[str, ...]  # (B, nc, h, w) logits per level
    coeffs: tuple[str, ...]  # (B, nm, h, w) per level
    protos: str  # (B, nm, H/4, W/4)
    reg_max: int

    @property
    def outputs(self) -> list[str]:
        return [*self.box, *self.cls, *self.coeffs, self.protos]


def _initializers(graph: Any) -> dict[str, Any]:
    return {init.name: init for init in graph.initializer}


def find_head(model: Any, num_classes: int) -> HeadLayout:
    """The head's final convolutions of an Ultralytics segmentation export, found from ``output0`` back.

    Walks from ``output0`` towards the inputs and stops at convolutions: those reached are the
    per-level head convolutions and the DFL's fixed 1x1 convolution. Roles come from Ultralytics'
    module names (``cv2`` box, ``cv3`` class, ``cv4`` mask coefficients) and are checked against the
    channel counts.
    """
    graph = model.graph
    if len(graph.output) < 2:
        raise EngineError("the model has no prototype output; only segmentation exports can be opened")
    producer = {out: node for node in graph.node for out in node.output}
    weights = _initializers(graph)
    found: dict[str, dict[int, tuple[str, int]]] = {"box": {}, "cls": {}, "coeffs": {}}
    reg_max = 0
    seen: set[str] = set()
    stack = [graph.output[0].name]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in ("Shape", "Size"):  # only the sizes of earlier tensors flow on from here
            continue
        if node.op_type != "Conv":
            stack.extend(node.input)
            continue
        weight = weights.get(node.input[1]) if len(node.input) > 1 else None
        if weight is None:
            raise EngineError(f"head convolution {node.name!r} has no constant weights; cannot open this export")
        out_channels, in_channels = int(weight.dims[0]), int(weight.dims[1])
        source = producer.get(node.input[0])
        if out_channels == 1 and source is not None and source.op_type == "Softmax":
            reg_max = in_channels  # the DFL: a fixed 1x1 convolution over the softmaxed bins
            stack.append(node.input[0])
            continue
        match = _HEAD_CONV.search(node.name)
        if match is None:
            raise EngineError(f"unrecognised head convolution {node.name!r}; not an Ultralytics export?")
        found[_ROLES[match.group(1)]][int(match.group(2))] = (node.output[0], out_channels)
    if reg_max == 0:
        raise EngineError("no distribution focal loss (DFL) decode found in the head; cannot open this export")
    levels = sorted(found["box"])
    if not levels or any(sorted(found[role]) != levels for role in found):
        raise EngineError(f"head levels do not line up: { {role: sorted(v) for role, v in found.items()} }")
    num_masks = _dims(graph.output[1])[1]
    expected = {"box": 4 * reg_max, "cls": num_classes, "coeffs": num_masks}
    for role, by_level in found.items():
        for level, (name, channels) in by_level.items():
            if isinstance(expected[role], int) and channels != expected[role]:
                raise EngineError(
                    f"head {role} convolution of level {level} ({name}) has {channels} channels, "
                    f"expected {expected[role]}"
                )
    return HeadLayout(
        box=tuple(found["box"][lv][0] for lv in levels),
        cls=tuple(found["cls"][lv][0] for lv in levels),
        coeffs=tuple(found["coeffs"][lv][0] for lv in levels),
        protos=graph.output[1].name,
        reg_max=reg_max,
    )


def _dims(value_info: Any) -> tuple[int | str, ...]:
    return tuple(d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim)


def open_model(model_path: Path, num_classes: int) -> tuple[bytes, HeadLayout]:
    """The export cut at its head, with batch, height and width made dynamic; serialised ONNX bytes."""
    import onnx
    from onnx import utils as onnx_utils

    model = onnx.load(str(model_path))
    layout = find_head(model, num_classes)
    input_name = model.graph.input[0].name
    extracted = onnx_utils.Extractor(model).extract_model([input_name], layout.outputs)
    graph = extracted.graph
    del graph.value_info[:]  # intermediate shapes were those of the fixed size
    dims = graph.input[0].type.tensor_type.shape.dim
    for dim, name in zip(dims, ("batch", None, "height", "width"), strict=True):
        if name is not None:
            dim.ClearField("dim_value")
            dim.dim_param = name
    for index, output in enumerate(graph.output):
        for axis, dim in enumerate(output.type.tensor_type.shape.dim):
            if axis != 1:
                dim.ClearField("dim_value")
                dim.dim_param = f"out{index}_{axis}"
    extracted.ClearField("metadata_props")
    for prop in model.metadata_props:
        extracted.metadata_props.add(key=prop.key, value=prop.value)
    extracted.metadata_props.add(key=OPEN_HEAD_METADATA, value="1")
    return extracted.SerializeToString(), layout


def opened_path(cache_dir: Path, model_path: Path, num_classes: int) -> tuple[Path, HeadLayout]:
    """The opened model in the engine cache (made once per source file); its path and head layout."""
    import onnx

    target = Path(cache_dir) / "open-head" / f"{model_path.stem}-{sha256_file(model_path)[:16]}.onnx"
    if target.exists():
        try:
            return target, find_head_of_opened(onnx.load(str(target), load_external_data=False))
        except Exception as error:  # a damaged cache entry is rebuilt, never trusted
            logger.warning("rebuilding opened model", extra={"path": str(target), "error": str(error)})
    data, layout = open_model(model_path, num_classes)
    atomic_write(target, data)
    logger.info("opened the model's head", extra={"model": str(model_path), "opened": str(target)})
    return target, layout


def find_head_of_opened(model: Any) -> HeadLayout:
    """The layout of a model written by ``open_model`` (its outputs are the layout, in order)."""
    names = [out.name for out in model.graph.output]
    levels = (len(names) - 1) // 3
    if len(names) != 3 * levels + 1 or levels == 0:
        raise EngineError(f"not an opened model: outputs {names}")
    box_channels = _dims(model.graph.output[0])[1]
    if not isinstance(box_channels, int) or box_channels % 4:
        raise EngineError(f"not an opened model: box output has {box_channels} channels")
    return HeadLayout(
        box=tuple(names[:levels]),
        cls=tuple(names[levels : 2 * levels]),
        coeffs=tuple(names[2 * levels : 3 * levels]),
        protos=names[-1],
        reg_max=box_channels // 4,
    )


class HeadDecoder:
    """Ultralytics' ``Detect``/``Segment`` inference decode in NumPy, for any input size.

    Anchor grids are cached per input size. Output: (B, 4 + nc + nm, A) float32 with boxes as
    (cx, cy, w, h) in input pixels and class probabilities, anchors ordered level by level and
    row-major inside a level: the layout of the export's own ``output0``.
    """

    def __init__(self, layout: HeadLayout) -> None:
        self.layout = layout
        self._bins = np.arange(layout.reg_max, dtype=np.float32)
        self._grids: dict[tuple[int, int, tuple[tuple[int, int], ...]], tuple[np.ndarray, np.ndarray]] = {}

    def _grid(self, input_hw: tuple[int, int], sizes: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        key = (*input_hw, tuple(sizes))
        cached = self._grids.get(key)
        if cached is None:
            points, strides = [], []
            for h, w in sizes:
                stride = input_hw[0] / h
                if stride != input_hw[1] / w:
                    raise EngineError(f"feature map {h}x{w} does not divide the input {input_hw} evenly")
                ys, xs = np.meshgrid(
                    np.arange(h, dtype=np.float32) + 0.5, np.arange(w, dtype=np.float32) + 0.5, indexing="ij"
                )
                points.append(np.stack([xs.reshape(-1), ys.reshape(-1)]))
                strides.append(np.full((h * w,), stride, np.float32))
            cached = (np.concatenate(points, axis=1), np.concatenate(strides))
            if len(self._grids) > 16:
                self._grids.clear()
            self._grids[key] = cached
        return cached

    def decode(self, outputs: dict[str, np.ndarray], input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Raw head outputs (by name) -> (output0, output1) as the export would have returned them."""
        layout = self.layout
        boxes = [outputs[name] for name in layout.box]
        batch = boxes[0].shape[0]
        sizes = [(int(b.shape[2]), int(b.shape[3])) for b in boxes]
        anchors, strides = self._grid(input_hw, sizes)  # (2, A), (A,)
        flat = lambda names: np.concatenate(  # noqa: E731 - (B, C, A) from per-level (B, C, h, w)
            [outputs[n].reshape(batch, outputs[n].shape[1], -1) for n in names], axis=2
        )
        dist = flat(layout.box).reshape(batch, 4, layout.reg_max, -1)
        dist = np.exp(dist - dist.max(axis=2, keepdims=True))
        ltrb = np.einsum("bsra,r->bsa", dist, self._bins) / dist.sum(axis=2)  # expected distance per side
        lt, rb = ltrb[:, :2], ltrb[:, 2:]
        x1y1, x2y2 = anchors - lt, anchors + rb
        xywh = np.concatenate([(x1y1 + x2y2) / 2, x2y2 - x1y1], axis=1) * strides
        scores = 1.0 / (1.0 + np.exp(-flat(layout.cls)))
        output0 = np.concatenate([xywh, scores, flat(layout.coeffs)], axis=1).astype(np.float32, copy=False)
        return output0, outputs[layout.protos]
