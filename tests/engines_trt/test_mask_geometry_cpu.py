"""The host half of the GPU mask path, checked on the CPU against the CPU post-processing.

The mask kernel's arithmetic is mirrored here in NumPy (same taps, same order of operations) so the
crop windows and frame ranges computed by ``GpuPostprocess`` on the host are proven to give the CPU
path's masks pixel for pixel; the kernel itself is compared on the GPU in tests/gpu.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engines.gpu.postprocess import GpuPostprocess, lazy_zeros, linear_taps
from engines.postprocess import Candidates, process_masks
from engines.preprocess import batch_geometry


def kernel_twin(protos: np.ndarray, coeffs: np.ndarray, boxes: np.ndarray, geom) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    nm, mh, mw = protos.shape
    in_h, in_w = geom.input_shape
    frame_h, frame_w = geom.frame_shape
    left, top, right, bottom = geom.content_box
    post = GpuPostprocess.__new__(GpuPostprocess)
    post._taps_cache = {}
    geo = post._crop_geometry(boxes, geom)
    yl_i, yh_i, wy_i = linear_taps(in_h, mh)
    xl_i, xh_i, wx_i = linear_taps(in_w, mw)
    fyl, fyh, fwy = linear_taps(frame_h, bottom - top)
    fxl, fxh, fwx = linear_taps(frame_w, right - left)
    fyl, fyh, fxl, fxh = fyl + top, fyh + top, fxl + left, fxh + left
    masks = np.zeros((len(boxes), frame_h, frame_w), bool)
    nonempty = np.zeros(len(boxes), bool)
    for k in range(len(boxes)):
        x0, y0, cw, ch, c0, c1, r0, r1 = (int(v) for v in geo[k, :8])
        if cw == 0 or ch == 0:
            continue
        logits = (coeffs[k] @ protos.reshape(nm, -1)).reshape(mh, mw).astype(np.float32)

        window = (c0, c1, r0, r1)

        def binary(r: np.ndarray, c: np.ndarray, logits: np.ndarray = logits, w: tuple = window) -> np.ndarray:
            inside = (c >= w[0]) & (c < w[1]) & (r >= w[2]) & (r < w[3])
            a = logits[yl_i[r], xl_i[c]] * (1 - wy_i[r]) + logits[yh_i[r], xl_i[c]] * wy_i[r]
            b = logits[yl_i[r], xh_i[c]] * (1 - wy_i[r]) + logits[yh_i[r], xh_i[c]] * wy_i[r]
            return (((a * (1 - wx_i[c]) + b * wx_i[c]) > 0) & inside).astype(np.float32)

        ys = np.arange(y0, y0 + ch)[:, None]
        xs = np.arange(x0, x0 + cw)[None, :]
        b00, b10 = binary(fyl[ys], fxl[xs]), binary(fyh[ys], fxl[xs])
        b01, b11 = binary(fyl[ys], fxh[xs]), binary(fyh[ys], fxh[xs])
        nonempty[k] = bool(b00.any() or b10.any() or b01.any() or b11.any())
        col0 = b00 * (1 - fwy[ys]) + b10 * fwy[ys]
        col1 = b01 * (1 - fwy[ys]) + b11 * fwy[ys]
        masks[k, y0 : y0 + ch, x0 : x0 + cw] = (col0 * (1 - fwx[xs]) + col1 * fwx[xs]) > 0.5
    return masks, nonempty


@pytest.mark.parametrize("frame", [(720, 1280), (480, 640), (720, 405), (333, 517)])
def test_gpu_mask_geometry_reproduces_the_cpu_masks(frame: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(frame))
    geom = batch_geometry([frame], (640, 640), 32, True)[0]
    in_h, in_w = geom.input_shape
    coarse = rng.normal(size=(32, in_h // 32, in_w // 32)).astype(np.float32)
    protos = np.stack([cv2.resize(p, (in_w // 4, in_h // 4), interpolation=cv2.INTER_CUBIC) for p in coarse])
    n = 10
    centres = rng.uniform([0, 0], [in_w, in_h], (n, 2))
    sizes = rng.uniform(6, 300, (n, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1).astype(np.float32)
    coeffs = rng.normal(size=(n, 32)).astype(np.float32)
    expected, expected_nonempty = process_masks(
        protos, Candidates(boxes, np.ones(n, np.float32), np.zeros(n, np.int32), coeffs), geom, 0.5
    )
    got, nonempty = kernel_twin(protos, coeffs, boxes, geom)
    assert expected.any(), "no mask pixels: the comparison would prove nothing"
    np.testing.assert_array_equal(nonempty, expected_nonempty)
    np.testing.assert_array_equal(got, expected)


def test_linear_taps_follow_the_half_pixel_convention() -> None:
    low, high, weight = linear_taps(8, 4)  # 2x upsampling
    np.testing.assert_array_equal(low, [0, 0, 0, 1, 1, 2, 2, 3])
    np.testing.assert_array_equal(high, [1, 1, 1, 2, 2, 3, 3, 3])
    np.testing.assert_allclose(weight, [0, 0.25, 0.75, 0.25, 0.75, 0.25, 0.75, 0.25])


def test_lazy_zeros_is_a_writable_zeroed_bool_array() -> None:
    for shape in [(0, 720, 1280), (1, 4, 4), (3, 720, 1280)]:
        masks = lazy_zeros(shape)
        assert masks.shape == shape and masks.dtype == bool and masks.flags.writeable
        assert not masks.any()
    masks[1, 10:20, 30:40] = True
    assert masks.sum() == 100 and masks[[0, 2]].sum() == 0
