"""ONNX -> PyTorch specialisation (runs on the CPU wherever torch and onnx2torch are installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx2torch")


def test_specialised_graph_has_no_shape_ops_and_same_outputs(seg_model: Path) -> None:
    import onnx
    import onnxruntime as ort

    from engines.gpu.torch_module import convert, host_constant_targets, move_to_device, specialise_onnx

    model = onnx.load(str(seg_model))
    shape = (2, 3, 384, 640)
    static = specialise_onnx(model, model.graph.input[0].name, shape)
    assert static is not None
    ops = {node.op_type for node in static.graph.node}
    assert not ops & {"Shape", "Gather", "ConstantOfShape", "Range"}, ops
    module = convert(static)
    assert host_constant_targets(module), "reshape targets should be found"
    module = move_to_device(module, torch.device("cpu"), half=False, channels_last=False)
    batch = np.random.default_rng(0).random(shape, dtype=np.float32)
    with torch.inference_mode():
        out0, out1 = module(torch.from_numpy(batch))
    ref0, ref1 = ort.InferenceSession(str(seg_model), providers=["CPUExecutionProvider"]).run(
        None, {model.graph.input[0].name: batch}
    )
    for got, ref in ((out0.numpy(), ref0), (out1.numpy(), ref1)):
        assert got.shape == ref.shape
        assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 1e-5  # float32 summation order only
