"""Small, real ONNX models built with ``onnx.helper`` for engine tests.

They run in ONNX Runtime in milliseconds and have exactly the interface of an Ultralytics
YOLOv8-seg export (one image input; output0 (B, 4+nc+32, A), output1 (B, 32, H/4, W/4); the same
metadata keys), so the engine's plumbing (static/dynamic batch and size, batching, metadata) is
exercised against a real runtime without the cost of a real network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NAMES = {0: "charging_cable", 1: "e_bike", 2: "person"}


def _dim(value: int | str) -> int | str:
    return value


def _save(graph: onnx.GraphProto, path: Path, metadata: dict[str, str]) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in metadata.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def seg_metadata(
    names: dict[int, str] = NAMES, imgsz: tuple[int, int] = (640, 640), task: str = "segment"
) -> dict[str, str]:
    return {
        "author": "trtseg tests",
        "stride": "32",
        "task": task,
        "batch": "1",
        "imgsz": str(list(imgsz)),
        "names": repr(names),
        "end2end": "False",
    }


def tiny_seg_model(
    path: Path,
    names: dict[int, str] = NAMES,
    batch: int | None = None,
    hw: tuple[int, int] | None = None,
    metadata: dict[str, str] | None = None,
    seed: int = 0,
) -> Path:
    """A YOLOv8-seg-shaped model: boxes, class scores and mask coefficients from pooled pixels."""
    rng = np.random.default_rng(seed)
    nc = len(names)
    b: int | str = batch if batch is not None else "batch"
    h: int | str = hw[0] if hw else "height"
    w: int | str = hw[1] if hw else "width"
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, [b, 3, h, w])
    out0 = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [b, 4 + nc + 32, "anchors"])
    out1 = helper.make_tensor_value_info("output1", TensorProto.FLOAT, [b, 32, "mask_height", "mask_width"])

    def init(name: str, array: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(array.astype(np.float32), name)

    inits = [
        init("w_proto", rng.normal(0, 4, (32, 3, 1, 1))),
        init("b_proto", rng.normal(0, 1, (32,))),
        init("w_box", rng.normal(0, 150, (4, 3, 1, 1))),
        init("b_box", np.array([320, 200, 160, 120])),
        init("w_cls", rng.normal(0, 6, (nc, 3, 1, 1))),
        init("b_cls", rng.normal(-2, 1, (nc,))),
        init("w_coef", rng.normal(0, 3, (32, 3, 1, 1))),
        init("b_coef", rng.normal(0, 1, (32,))),
        numpy_helper.from_array(np.array([0, 4 + nc + 32, -1], np.int64), "shape0"),
    ]
    nodes = [
        helper.make_node("AveragePool", ["images"], ["p4"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Conv", ["p4", "w_proto", "b_proto"], ["output1"]),
        helper.make_node("AveragePool", ["images"], ["p32"], kernel_shape=[32, 32], strides=[32, 32]),
        helper.make_node("Conv", ["p32", "w_box", "b_box"], ["box"]),
        helper.make_node("Conv", ["p32", "w_cls", "b_cls"], ["cls_logit"]),
        helper.make_node("Sigmoid", ["cls_logit"], ["cls"]),
        helper.make_node("Conv", ["p32", "w_coef", "b_coef"], ["coef"]),
        helper.make_node("Concat", ["box", "cls", "coef"], ["head"], axis=1),
        helper.make_node("Reshape", ["head", "shape0"], ["output0"]),
    ]
    graph = helper.make_graph(nodes, "tiny-seg", [images], [out0, out1], initializer=inits)
    meta = seg_metadata(names, hw or (640, 640))
    meta.update(metadata or {})
    return _save(graph, path, meta)


def detect_only_model(path: Path, names: dict[int, str] = NAMES) -> Path:
    """A YOLOv8 detection export's interface: one output (B, 4+nc, A)."""
    rng = np.random.default_rng(1)
    nc = len(names)
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 640, 640])
    out0 = helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4 + nc, 400])
    inits = [
        numpy_helper.from_array(rng.normal(0, 1, (4 + nc, 3, 1, 1)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([0, 4 + nc, -1], np.int64), "shape0"),
    ]
    nodes = [
        helper.make_node("AveragePool", ["images"], ["p"], kernel_shape=[32, 32], strides=[32, 32]),
        helper.make_node("Conv", ["p", "w"], ["c"]),
        helper.make_node("Reshape", ["c", "shape0"], ["output0"]),
    ]
    graph = helper.make_graph(nodes, "detect", [images], [out0], initializer=inits)
    return _save(graph, path, seg_metadata(names, task="detect"))


def classify_model(path: Path, num_classes: int = 5, task: str = "classify") -> Path:
    """A classification export's interface: one output (B, nc)."""
    rng = np.random.default_rng(2)
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 224, 224])
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, num_classes])
    inits = [numpy_helper.from_array(rng.normal(0, 1, (3, num_classes)).astype(np.float32), "w")]
    nodes = [
        helper.make_node("GlobalAveragePool", ["images"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "w"], ["output0"]),
    ]
    graph = helper.make_graph(nodes, "classify", [images], [out], initializer=inits)
    names = {i: f"c{i}" for i in range(num_classes)}
    return _save(graph, path, seg_metadata(names, (224, 224), task=task))
