"""The host half of the GPU mask path, checked on the CPU against the CPU post-processing.

The mask kernel's arithmetic is mirrored here in NumPy (same taps, same order of operations, same
flat crop buffer) so the crop windows and frame ranges computed by ``GpuPostprocess`` on the host,
and the split of that buffer into each frame's ``InstanceMasks``, are proven to give the CPU path's
masks pixel for pixel; the kernel itself is compared on the GPU in tests/gpu.
"""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest

from engines.gpu.postprocess import GpuPostprocess, frame_masks, linear_taps
from engines.postprocess import Candidates, process_masks
from engines.preprocess import batch_geometry


def kernel_twin(protos: np.ndarray, coeffs: np.ndarray, boxes: np.ndarray, geom):  # type: ignore[no-untyped-def]
    """(flat uint8 crop buffer, geo, offsets, nonempty), laid out as ``GpuPostprocess._masks`` and the kernel do."""
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
    sizes = geo[:, 2].astype(np.int64) * geo[:, 3]
    offsets = np.zeros(len(boxes), np.int64)
    offsets[1:] = np.cumsum(sizes)[:-1]
    out = np.zeros(int(sizes.sum()), np.uint8)
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
        crop = (col0 * (1 - fwx[xs]) + col1 * fwx[xs]) > 0.5
        out[offsets[k] : offsets[k] + sizes[k]] = crop.reshape(-1)  # row-major, as dst[i], i = y * cw + x
    return out, geo, offsets, nonempty


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
    crops, geo, offsets, nonempty = kernel_twin(protos, coeffs, boxes, geom)
    (got,) = frame_masks(crops, geo, offsets, np.zeros(n, np.int64), [geom])
    assert expected.dense().any(), "no mask pixels: the comparison would prove nothing"
    np.testing.assert_array_equal(nonempty, expected_nonempty)
    assert got.shape == expected.shape == (n, *frame)
    np.testing.assert_array_equal(got.dense(), expected.dense())
    np.testing.assert_array_equal(got.areas(), expected.areas())


def test_linear_taps_follow_the_half_pixel_convention() -> None:
    low, high, weight = linear_taps(8, 4)  # 2x upsampling
    np.testing.assert_array_equal(low, [0, 0, 0, 1, 1, 2, 2, 3])
    np.testing.assert_array_equal(high, [1, 1, 1, 2, 2, 3, 3, 3])
    np.testing.assert_allclose(weight, [0, 0.25, 0.75, 0.25, 0.75, 0.25, 0.75, 0.25])


def test_frame_masks_split_a_batch_buffer_into_views_per_frame() -> None:
    """Crops of several frames (in any order, some 0x0) in one flat buffer: each frame gets its own."""
    rng = np.random.default_rng(3)
    frames = [(720, 1280), (17, 29), (480, 640), (720, 1280)]
    geometries = batch_geometry(frames, (640, 640), 32, True)
    image = np.array([0, 2, 0, 0, 2, 3, 1, 2, 0, 3], np.int64)
    geo = np.zeros((image.size, 14), np.int32)
    for k, i in enumerate(image):
        height, width = frames[i]
        if k in (3, 7):
            continue  # a box whose window reaches no frame pixel: 0x0 at (0, 0), as _crop_geometry gives
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        geo[k, :4] = x0, y0, rng.integers(1, width - x0 + 1), rng.integers(1, height - y0 + 1)
    sizes = geo[:, 2].astype(np.int64) * geo[:, 3]
    offsets = np.zeros(image.size, np.int64)
    offsets[1:] = np.cumsum(sizes)[:-1]
    crops = (rng.random(int(sizes.sum())) > 0.5).astype(np.uint8)
    got = frame_masks(crops, geo, offsets, image, geometries)
    assert [m.frame_shape for m in got] == frames and [len(m) for m in got] == [4, 1, 3, 2]
    for i, masks in enumerate(got):
        rows = np.flatnonzero(image == i)
        expected = np.zeros((rows.size, *frames[i]), bool)
        for j, k in enumerate(rows):
            x0, y0, w, h = (int(v) for v in geo[k, :4])
            expected[j, y0 : y0 + h, x0 : x0 + w] = crops[offsets[k] : offsets[k] + sizes[k]].reshape(h, w)
        np.testing.assert_array_equal(masks.dense(), expected)
        assert np.shares_memory(masks.data, crops) or masks.data.size == 0  # views, not copies
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(masks)).dense(), expected)
