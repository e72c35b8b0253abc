"""GPU NMS and masks against the CPU path, on the same network outputs (ONNX Runtime on the CPU)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from engines.model import load_model_info
from engines.postprocess import nms as cpu_nms
from engines.postprocess import postprocess
from engines.preprocess import preprocess
from tests.gpu.matching import assert_same_detections
from trtseg.masks import InstanceMasks

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cpu_outputs(seg_model: Path, scenes, odd_frames):  # type: ignore[no-untyped-def]
    """Frames, their geometry and the model's raw outputs from ONNX Runtime (the reference run)."""
    import onnxruntime as ort

    info = load_model_info(seg_model)
    session = ort.InferenceSession(str(seg_model), providers=["CPUExecutionProvider"])
    runs = []
    for frames in (scenes, odd_frames[:2]):
        batch, geometries = preprocess(frames, info.imgsz, info.stride, rectangular=info.dynamic_hw)
        out0, out1 = session.run(None, {info.input_name: batch})
        runs.append((frames, geometries, out0, out1))
    return info, runs


# The three ways candidates reach NMS: the selection kernel with host NMS (few candidates), with
# GPU NMS (many), and the array-operation path the kernel falls back to when its buffer overflows.
SELECTION_PATHS = {"host": {}, "device": {"HOST_NMS_MAX": 0}, "general": {"SELECT_CAP": 0}}


@pytest.fixture(params=sorted(SELECTION_PATHS))
def selection_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    import engines.gpu.postprocess as gpu_post

    for name, value in SELECTION_PATHS[request.param].items():
        monkeypatch.setattr(gpu_post, name, value)
    return str(request.param)


@pytest.mark.parametrize("nms", ["torchvision", "cupy"])
@pytest.mark.parametrize("conf", [0.25, 0.05])
def test_gpu_postprocess_matches_cpu(gpu_context, cpu_outputs, nms: str, conf: float, selection_path: str) -> None:  # type: ignore[no-untyped-def]
    from engines.gpu.postprocess import GpuPostprocess

    info, runs = cpu_outputs
    post = GpuPostprocess(gpu_context, info.names, 0.5, nms=nms)
    cp = gpu_context.cp
    total = 0
    mask_ious: list[float] = []
    for _frames, geometries, out0, out1 in runs:
        expected = postprocess(out0, out1, geometries, info.names, conf=conf, iou=0.7, max_det=300)
        with gpu_context.device:
            got = post.run(cp.asarray(out0), cp.asarray(out1), geometries, conf=conf, iou=0.7, max_det=300)
        for ref, ours in zip(expected, got, strict=True):
            assert isinstance(ours.masks, InstanceMasks) and ours.masks.dense().dtype == bool
            assert ours.masks.shape == (len(ours), *ref.frame_shape)
            mask_ious += assert_same_detections(ref, ours, box_iou_min=0.99, mask_iou_min=0.95)
            total += len(ref)
    assert total > 0, "the model found nothing: this comparison would prove nothing"
    print(f"nms={nms} conf={conf}: {total} instances, mean mask IoU {np.mean(mask_ious):.5f}")


def test_masks_outlive_the_next_batch_and_pickle(gpu_context, cpu_outputs) -> None:  # type: ignore[no-untyped-def]
    """Each frame's masks view the batch's host copy of the crops, never the reused pinned buffer."""
    from engines.gpu.postprocess import GpuPostprocess

    info, runs = cpu_outputs
    post = GpuPostprocess(gpu_context, info.names)
    cp = gpu_context.cp
    _frames, geometries, out0, out1 = runs[0]
    first = post.run(cp.asarray(out0), cp.asarray(out1), geometries, conf=0.05)
    snapshot = [d.masks.dense() for d in first]
    assert sum(len(d) for d in first) > 0, "nothing found: this test would prove nothing"
    for _frames, other_geometries, other0, other1 in (runs[1], runs[0]):
        post.run(cp.asarray(other0), cp.asarray(other1), other_geometries, conf=0.25)
    for dets, dense in zip(first, snapshot, strict=True):
        assert np.array_equal(dets.masks.dense(), dense), "masks changed when the next batch ran"
        again = pickle.loads(pickle.dumps(dets))
        assert np.array_equal(again.masks.dense(), dense) and again.masks.nbytes == dets.masks.nbytes
        assert again.masks.data.size == int(dets.masks.sizes.sum())  # only this frame's crops travel
        assert np.array_equal(again.masks.areas(), dense.reshape(len(dets), -1).sum(axis=1))


def test_class_filter_max_det_and_no_masks(gpu_context, cpu_outputs, selection_path: str) -> None:  # type: ignore[no-untyped-def]
    from engines.gpu.postprocess import GpuPostprocess

    info, runs = cpu_outputs
    post = GpuPostprocess(gpu_context, info.names)
    cp = gpu_context.cp
    _frames, geometries, out0, out1 = runs[0]
    for kwargs in ({"classes": [0]}, {"classes": [1, 2]}, {"max_det": 2}, {"agnostic": True}):
        expected = postprocess(out0, out1, geometries, info.names, conf=0.05, with_masks=False, **kwargs)
        got = post.run(cp.asarray(out0), cp.asarray(out1), geometries, conf=0.05, with_masks=False, **kwargs)
        for ref, ours in zip(expected, got, strict=True):
            assert ours.masks is None
            assert_same_detections(ref, ours)
            if "max_det" in kwargs:
                assert len(ours) <= kwargs["max_det"]


def test_nothing_above_threshold_gives_empty_detections(gpu_context, cpu_outputs, selection_path: str) -> None:  # type: ignore[no-untyped-def]
    from engines.gpu.postprocess import GpuPostprocess

    info, runs = cpu_outputs
    _frames, geometries, out0, out1 = runs[0]
    cp = gpu_context.cp
    got = GpuPostprocess(gpu_context, info.names).run(cp.asarray(out0), cp.asarray(out1), geometries, conf=1.0)
    assert [len(d) for d in got] == [0] * len(geometries)
    assert all(d.masks is not None and d.masks.shape == (0, *d.frame_shape) for d in got)


def test_cupy_nms_equals_torchvision_and_cpu(gpu_context) -> None:  # type: ignore[no-untyped-def]
    from engines.gpu.nms import batched_nms

    cp = gpu_context.cp
    rng = np.random.default_rng(7)
    for n in (1, 5, 63, 64, 65, 700, 3000):
        centres = rng.uniform(0, 600, (n, 2))
        sizes = rng.uniform(5, 120, (n, 2))
        boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1).astype(np.float32)
        scores = rng.uniform(0, 1, n).astype(np.float32)
        groups = rng.integers(0, 4, n).astype(np.int64)
        with gpu_context.device:
            a = cp.asnumpy(batched_nms(cp.asarray(boxes), cp.asarray(scores), cp.asarray(groups), 0.5, True))
            b = cp.asnumpy(batched_nms(cp.asarray(boxes), cp.asarray(scores), cp.asarray(groups), 0.5, False))
        c = np.concatenate(
            [np.flatnonzero(groups == g)[cpu_nms(boxes[groups == g], scores[groups == g], 0.5)] for g in range(4)]
        )
        assert sorted(a.tolist()) == sorted(b.tolist()) == sorted(c.tolist()), n
        assert np.all(np.diff(scores[b]) <= 0), "kept boxes must come highest score first"
