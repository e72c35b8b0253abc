"""The fused letterbox kernel against the CPU path (cv2 resize + pad + blobFromImages)."""

from __future__ import annotations

import numpy as np
import pytest

from engines.preprocess import preprocess

pytestmark = pytest.mark.gpu


def run_gpu(ctx, frames, geometries, shape, dtype, channels_last):  # type: ignore[no-untyped-def]
    from engines.gpu.preprocess import GpuLetterbox

    cp = ctx.cp
    batch, _, height, width = shape
    with ctx.device:
        if channels_last:
            out = cp.full((batch, height, width, 3), np.nan, dtype=dtype).transpose(0, 3, 1, 2)
        else:
            out = cp.full((batch, 3, height, width), np.nan, dtype=dtype)
    letterbox = GpuLetterbox(ctx)
    try:
        letterbox.run(frames, geometries, out)
        ctx.synchronize()
        return cp.asnumpy(out).astype(np.float32)
    finally:
        letterbox.close()


@pytest.mark.parametrize(("dtype", "channels_last"), [(np.float32, False), (np.float16, True), (np.float16, False)])
def test_letterbox_matches_cpu(gpu_context, scenes, odd_frames, dtype, channels_last) -> None:  # type: ignore[no-untyped-def]
    frames = [scenes[0], *odd_frames]
    batches = [[frame] for frame in frames] + [frames]  # alone (rectangular) and all in one canvas
    for batch in batches:
        expected, geometries = preprocess(batch, (640, 640), 32, rectangular=True)
        got = run_gpu(gpu_context, batch, geometries, expected.shape, dtype, channels_last)
        assert not np.isnan(got).any(), "some input elements were never written"
        diff = np.abs(got - expected)
        # cv2 resizes uint8 in fixed point; we round a float bilinear: at most one grey level apart.
        tolerance = 1.0 / 255 + (2e-3 if dtype == np.float16 else 1e-6)
        assert diff.max() <= tolerance, (batch[0].shape, float(diff.max()))
        assert diff.mean() <= 0.25 / 255, (batch[0].shape, float(diff.mean()))


def test_720p_letterbox_is_exact(gpu_context, scenes) -> None:  # type: ignore[no-untyped-def]
    """The production case (720p into 384x640, an exact 2x reduction) agrees with cv2 bit for bit."""
    expected, geometries = preprocess(scenes[:3], (640, 640), 32, rectangular=True)
    assert expected.shape[2:] == (384, 640)
    got = run_gpu(gpu_context, scenes[:3], geometries, expected.shape, np.float32, False)
    differing = float(np.mean(got != expected))
    assert differing <= 1e-3, f"{differing:.2%} of elements differ from cv2"


def test_padding_slots_are_left_untouched(gpu_context, scenes) -> None:  # type: ignore[no-untyped-def]
    expected, geometries = preprocess(scenes[:1], (640, 640), 32, rectangular=True)
    got = run_gpu(gpu_context, scenes[:1], geometries, (4, *expected.shape[1:]), np.float32, False)
    assert np.isnan(got[1:]).all()
    np.testing.assert_array_equal(got[:1], expected)


def test_bad_frames_are_refused_clearly(gpu_context) -> None:  # type: ignore[no-untyped-def]
    from engines.base import EngineError
    from engines.gpu.preprocess import GpuLetterbox

    letterbox = GpuLetterbox(gpu_context)
    try:
        with pytest.raises(EngineError, match="uint8"):
            letterbox.geometry([np.zeros((10, 10, 3), np.float32)], (640, 640), 32, True)
        with pytest.raises(EngineError, match="shape"):
            letterbox.geometry([np.zeros((10, 10), np.uint8)], (640, 640), 32, True)
    finally:
        letterbox.close()
