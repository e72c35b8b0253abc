"""FP16 conversion that keeps the model's inputs and outputs FP32.

Why our own converter rather than onnxconverter-common: its ``convert_float_to_float16`` emits
graphs ONNX Runtime refuses for Ultralytics exports (type clashes around Resize and the head's Cast
nodes). This one walks the graph once in topological order and tracks each float tensor's
current type: a half-precision node gets FP16 inputs (initializers converted once, other tensors
through one shared Cast), a blocked node gets FP32 inputs, and graph outputs are cast back to FP32.
Blocked by default: the detection head's box decoding (DFL and anchor arithmetic: pixel
coordinates up to the input size lose sub-pixel precision in FP16).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engines.quant.common import (
    QuantizationError,
    load_source_model,
    metadata_dict,
    save_model,
    sha256_file,
    write_metadata,
)
from engines.quant.exclusions import decode_nodes

logger = logging.getLogger(__name__)

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
# Inputs that the ONNX spec requires to stay float32 whatever the data type (node input index).
_FP32_INPUTS: dict[str, set[int]] = {"Resize": {1, 2}, "Upsample": {1}}
# Ops kept in FP32 wherever they are (numerically fragile reductions / exponentials).
DEFAULT_OP_BLOCK_LIST: tuple[str, ...] = ("Softmax", "ReduceMean", "ReduceSum", "Exp", "Log", "Pow", "Sqrt", "TopK")


def convert_model_fp16(
    model: onnx.ModelProto, op_block_list: Iterable[str] = DEFAULT_OP_BLOCK_LIST, node_block_list: Iterable[str] = ()
) -> tuple[onnx.ModelProto, list[str]]:
    """Return an FP16 copy of ``model`` with FP32 inputs/outputs, and the names of nodes kept FP32."""
    graph_in = onnx.ModelProto()
    graph_in.CopyFrom(model)
    if any(
        attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
        for n in graph_in.graph.node
        for attr in n.attribute
    ):
        raise QuantizationError("models with control flow (If/Loop/Scan) are not supported by the FP16 converter")
    del graph_in.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(graph_in, strict_mode=False)
    types = _tensor_types(inferred)
    graph = graph_in.graph

    blocked_ops, blocked_nodes = set(op_block_list), set(node_block_list)
    initializers = {init.name: init for init in graph.initializer}
    output_names = {o.name for o in graph.output if o.type.tensor_type.elem_type == FLOAT}
    # Graph outputs are produced under a private name and cast back to FP32 at the end.
    rename = {name: f"{name}__fp16" for name in output_names}
    for node in graph.node:
        node.output[:] = [rename.get(o, o) for o in node.output]
        node.input[:] = [rename.get(i, i) for i in node.input]
    for old, new in rename.items():
        types[new] = types.get(old, FLOAT)

    current: dict[str, int] = {name: t for name, t in types.items() if name not in initializers}
    half_inits: dict[str, str] = {}
    casts: dict[tuple[str, int], str] = {}
    new_nodes: list[onnx.NodeProto] = []
    kept_fp32: list[str] = []

    def as_type(name: str, want: int) -> str:
        if name in initializers:
            init = initializers[name]
            if init.data_type != FLOAT or want == FLOAT:
                return name
            if name not in half_inits:
                half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), f"{name}__fp16")
                graph.initializer.append(half)
                half_inits[name] = half.name
            return half_inits[name]
        have = current.get(name)
        if have not in (FLOAT, HALF) or have == want:
            return name
        key = (name, want)
        if key not in casts:
            casts[key] = f"{name}__to{'fp16' if want == HALF else 'fp32'}"
            new_nodes.append(helper.make_node("Cast", [name], [casts[key]], to=want, name=f"{casts[key]}__cast"))
        return casts[key]

    for node in graph.node:
        half = node.op_type not in blocked_ops and node.name not in blocked_nodes
        if not half:
            kept_fp32.append(node.name)
        fixed = _FP32_INPUTS.get(node.op_type, set())
        node.input[:] = [
            inp if not inp else as_type(inp, FLOAT if (not half or i in fixed) else HALF)
            for i, inp in enumerate(node.input)
        ]
        if half:
            _convert_attributes(node)
        for out in node.output:
            produced = types.get(out)
            current[out] = HALF if half and produced == FLOAT else (produced if produced is not None else -1)
        new_nodes.append(node)

    for old, new in rename.items():
        if current.get(new) == HALF:
            new_nodes.append(helper.make_node("Cast", [new], [old], to=FLOAT, name=f"{old}__output_cast"))
        else:
            new_nodes.append(helper.make_node("Identity", [new], [old], name=f"{old}__output_identity"))
    used = {i for n in new_nodes for i in n.input}
    kept_inits = [init for init in graph.initializer if init.name in used]
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    onnx.checker.check_model(graph_in)
    return graph_in, kept_fp32


def _convert_attributes(node: onnx.NodeProto) -> None:
    """Cast-to-float becomes cast-to-half; float constants become half constants."""
    for attr in node.attribute:
        if node.op_type == "Cast" and attr.name == "to" and attr.i == FLOAT:
            attr.i = HALF
        elif attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == FLOAT:
            attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16), attr.t.name))


def _tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    graph = model.graph
    types: dict[str, int] = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        if info.type.HasField("tensor_type"):
            types[info.name] = int(info.type.tensor_type.elem_type)
    for init in graph.initializer:
        types[init.name] = int(init.data_type)
    missing = [o for n in graph.node for o in n.output if o and o not in types]
    if missing:
        raise QuantizationError(f"cannot infer the type of {len(missing)} tensor(s), e.g. {missing[:3]}")
    return types


def convert_fp16(
    model: Path | str,
    out: Path | str,
    block_patterns: Iterable[str] | None = None,
    keep_decode_fp32: bool = True,
) -> Path:
    """Write an FP16 copy of an FP32 segmentation export to ``out`` (I/O stays FP32); returns ``out``.

    ``block_patterns``: regular expressions of node names to keep in FP32, on top of the head's
    box decoding when ``keep_decode_fp32``.
    """
    src, out = Path(model), Path(out)
    source, _ = load_source_model(src)
    names = [n.name for n in source.graph.node]
    blocked = set(decode_nodes(names)) if keep_decode_fp32 else set()
    patterns = [re.compile(p) for p in (block_patterns or ())]
    blocked |= {n for n in names if any(p.search(n) for p in patterns)}
    converted, kept = convert_model_fp16(source, node_block_list=blocked)
    write_metadata(
        converted,
        metadata_dict(source),
        "fp16",
        {"source_sha256": sha256_file(src), "source_name": src.name, "fp32_nodes": kept},
    )
    logger.info("fp16 model converted source=%s nodes_fp32=%d", src.name, len(kept))
    return save_model(converted, out)
