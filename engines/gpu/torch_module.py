"""ONNX -> PyTorch module for the 'cuda' backend (onnx2torch), specialised to one input shape.

A dynamic Ultralytics export computes its reshape targets at run time (Shape -> Gather -> Concat),
and onnx2torch turns those into host round trips (``tensor.tolist()``) that forbid CUDA-graph
capture. Fixing the input shape and folding the constants first (ONNX Runtime's basic graph
optimisation, which only rewrites within the standard ONNX domain) leaves a graph whose shapes are
constants; those few shape constants stay in host memory so no device-to-host copy remains.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from engines.base import EngineError

logger = logging.getLogger(__name__)

# onnx2torch modules whose inputs after the first are shapes, sizes or indices read on the host.
_HOST_ARG_MODULES = frozenset(
    {"OnnxReshape", "OnnxResize", "OnnxSplit13", "OnnxSlice", "OnnxExpand", "OnnxTile", "OnnxConstantOfShape"}
)


def specialise_onnx(model: Any, input_name: str, shape: tuple[int, int, int, int]) -> Any:
    """The ONNX model with its input fixed to ``shape`` and every shape computation folded away.

    Returns ``None`` when ONNX Runtime cannot do it (the caller then runs the dynamic graph).
    """
    import onnx

    try:
        import onnxruntime as ort
    except ImportError:
        return None
    dims = model.graph.input[0].type.tensor_type.shape.dim
    names = [d.dim_param for d in dims]
    fixed = [(i, d.dim_value) for i, d in enumerate(dims) if d.HasField("dim_value") and d.dim_value > 0]
    for axis, value in fixed:
        if value != shape[axis]:
            raise EngineError(f"input shape {shape} does not fit the model's fixed input (axis {axis} is {value})")
    with tempfile.TemporaryDirectory(prefix="trtseg-spec-") as tmp:
        source = Path(tmp) / "source.onnx"
        target = Path(tmp) / "static.onnx"
        onnx.save(model, str(source))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(target)
        options.log_severity_level = 3
        for name, value in zip(names, shape, strict=True):
            if name:
                options.add_free_dimension_override_by_name(name, int(value))
        try:
            ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
            static = onnx.load(str(target))
        except Exception as exc:  # ORT refuses some graphs (e.g. fp16 ops without CPU kernels)
            logger.warning("shape specialisation failed, using the dynamic graph: %s", exc, extra={"shape": shape})
            return None
    used = {node.domain for node in static.graph.node if node.domain not in ("", "ai.onnx")}
    if used:
        logger.warning("specialised graph uses non-standard domains %s; using the dynamic graph", sorted(used))
        return None
    return static


# Newer opset versions of ops whose changes do not matter with their default attributes; onnx2torch
# (1.5.x) stops at the older version. (op, version it lacks, version it has, attributes that must be default)
_ALIASES: tuple[tuple[str, int, int, dict[str, Any]], ...] = (
    ("Split", 18, 13, {}),  # 18 adds num_outputs, which only restates the outputs' count
    ("Resize", 18, 13, {"antialias": 0, "keep_aspect_ratio_policy": "stretch", "axes": None}),
    ("Resize", 19, 13, {"antialias": 0, "keep_aspect_ratio_policy": "stretch", "axes": None}),
)
_aliased = False


def _register_aliases() -> None:
    """Teach onnx2torch the opset-18/19 versions of Split and Resize (Ultralytics exports opset 18+)."""
    global _aliased
    if _aliased:
        return
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription, add_converter

    for op, new, old, defaults in _ALIASES:
        if OperationDescription("", op, new) in _CONVERTER_REGISTRY:
            continue
        base = _CONVERTER_REGISTRY[OperationDescription("", op, old)]

        def converter(
            node: Any, graph: Any, base: Any = base, op: str = op, defaults: dict[str, Any] = defaults
        ) -> Any:
            for name, default in defaults.items():
                value = node.attributes.get(name, default)
                if isinstance(value, bytes):
                    value = value.decode()
                if value != default:
                    raise NotImplementedError(f"{op} with {name}={value!r}")
            return base(node, graph)

        add_converter(operation_type=op, version=new)(converter)
    _aliased = True


def convert(model: Any) -> Any:
    """onnx2torch conversion with a clear error for graphs it cannot take (e.g. INT8 Q/DQ)."""
    try:
        from onnx2torch import convert as onnx2torch_convert
    except ImportError as exc:
        raise EngineError("the 'cuda' backend needs onnx2torch: pip install -r requirements-gpu.txt") from exc
    _register_aliases()
    try:
        return onnx2torch_convert(model).eval()
    except NotImplementedError as exc:
        raise EngineError(
            f"the 'cuda' backend cannot run this ONNX graph ({exc}); INT8 Q/DQ models need the 'tensorrt' backend"
        ) from exc


def host_constant_targets(module: Any) -> list[str]:
    """Names of the constants that feed shape/size/index arguments (they must stay on the host)."""
    targets: list[str] = []
    graph = getattr(module, "graph", None)
    if graph is None:
        return targets
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        if type(module.get_submodule(node.target)).__name__ not in _HOST_ARG_MODULES:
            continue
        for arg in (*node.args[1:], *node.kwargs.values()):  # optional inputs may come as keywords
            if getattr(arg, "op", None) == "get_attr":
                targets.append(str(arg.target))
    return targets


def move_to_device(module: Any, device: Any, half: bool, channels_last: bool) -> Any:
    """Weights to the GPU (fp16 when asked), shape constants back to the host."""
    import torch

    host = host_constant_targets(module)
    module = module.to(device)
    if half:
        module = module.half()
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    for target in host:
        owner_name, _, leaf = target.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        value = getattr(owner, leaf)
        if isinstance(value, torch.Tensor):
            if leaf in owner._buffers:
                owner._buffers[leaf] = value.detach().cpu()
            elif leaf in owner._parameters:
                owner._parameters[leaf] = torch.nn.Parameter(value.detach().cpu(), requires_grad=False)
            else:
                setattr(owner, leaf, value.detach().cpu())
    return module
