"""Letterbox geometry and batching, against Ultralytics' numbers and as properties."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engines.preprocess import (
    PAD_VALUE,
    auto_shape,
    batch_geometry,
    boxes_to_frame,
    boxes_to_input,
    letterbox,
    letterbox_geometry,
    preprocess,
)

# (frame h, w), rectangular?, expected input (h, w), resized (w, h), pad (left, top): values from
# Ultralytics' LetterBox(640, auto=rect, stride=32) on frames of these shapes.
CASES = [
    ((720, 1280), True, (384, 640), (640, 360), (0, 12)),
    ((720, 1280), False, (640, 640), (640, 360), (0, 140)),
    ((1080, 810), True, (640, 480), (480, 640), (0, 0)),
    ((1080, 810), False, (640, 640), (480, 640), (80, 0)),
    ((720, 1280 - 1), True, (384, 640), (640, 360), (0, 12)),
    ((1080, 1920), True, (384, 640), (640, 360), (0, 12)),
    ((576, 704), True, (544, 640), (640, 524), (0, 10)),
    ((100, 3000), True, (32, 640), (640, 21), (0, 5)),
    ((480, 640), True, (480, 640), (640, 480), (0, 0)),
    ((240, 320), False, (640, 640), (640, 480), (0, 80)),
]


@pytest.mark.parametrize(("frame", "rect", "inp", "resized", "pad"), CASES)
def test_geometry_matches_ultralytics(frame, rect, inp, resized, pad):
    geom = batch_geometry([frame], (640, 640), 32, rect)[0]
    assert geom.input_shape == inp
    assert geom.resized == resized
    assert geom.pad == pad


def test_720p_rectangular_input_is_384x640():
    assert auto_shape((720, 1280), (640, 640), 32) == (384, 640)


def test_letterbox_pixels_are_resized_frame_on_grey():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    geom = letterbox_geometry((720, 1280), (640, 640))
    out = letterbox(frame, geom)
    assert out.shape == (640, 640, 3)
    left, top, right, bottom = geom.content_box
    expected = cv2.resize(frame, (640, 360), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out[top:bottom, left:right], expected)
    assert (out[:top] == PAD_VALUE).all() and (out[bottom:] == PAD_VALUE).all()


def test_preprocess_is_rgb_nchw_unit_range():
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[..., 0] = 255  # blue in BGR
    batch, geoms = preprocess([frame], (64, 64), 32, rectangular=False)
    assert batch.dtype == np.float32 and batch.shape == (1, 3, 64, 64)
    assert batch[0, 2].min() == pytest.approx(1.0)  # blue is the last RGB channel
    assert batch[0, 0].max() == 0.0 and batch[0, 1].max() == 0.0
    assert geoms[0].pad == (0, 0)


def test_mixed_sizes_share_one_centred_canvas():
    frames = [np.full((720, 1280, 3), 10, np.uint8), np.full((1080, 810, 3), 200, np.uint8)]
    batch, geoms = preprocess(frames, (640, 640), 32, rectangular=True)
    assert batch.shape == (2, 3, 640, 640)
    assert {g.input_shape for g in geoms} == {(640, 640)}
    for geom, value in zip(geoms, (10, 200), strict=True):
        left, top, right, bottom = geom.content_box
        assert np.allclose(batch[0 if value == 10 else 1, :, top:bottom, left:right], value / 255)
        # centred: the two margins differ by at most one pixel
        assert abs((640 - right) - left) <= 1 and abs((640 - bottom) - top) <= 1


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((10, 10, 3), np.float32),
        np.zeros((0, 10, 3), np.uint8),
        "frame.jpg",
    ],
)
def test_bad_images_are_refused_with_reason(bad):
    with pytest.raises(ValueError, match="image 0"):
        preprocess([bad], (640, 640))


shapes = st.tuples(st.integers(1, 4000), st.integers(1, 4000))


@settings(max_examples=300, deadline=None)
@given(frame=shapes, rect=st.booleans(), side=st.sampled_from([320, 640, 1280]))
def test_geometry_properties(frame, rect, side):
    geom = batch_geometry([frame], (side, side), 32, rect)[0]
    canvas_h, canvas_w = geom.input_shape
    left, top, right, bottom = geom.content_box
    assert left >= 0 and right <= canvas_w and top >= 0 and bottom <= canvas_h
    assert abs((canvas_w - right) - left) <= 1 and abs((canvas_h - bottom) - top) <= 1
    if rect:
        assert (canvas_h % 32 == 0 and canvas_w % 32 == 0) or min(geom.resized) < 32
        assert canvas_h <= side + 31 and canvas_w <= side + 31
    else:
        assert geom.input_shape == (side, side)
    # the limiting side fills the target (up to rounding)
    assert max(geom.resized[0] - side, geom.resized[1] - side) <= 0
    assert side in geom.resized or max(geom.resized) >= side - 1


@settings(max_examples=300, deadline=None)
@given(
    frame=shapes,
    rect=st.booleans(),
    fx=st.lists(st.floats(0, 1), min_size=4, max_size=4),
)
def test_box_round_trip(frame, rect, fx):
    geom = batch_geometry([frame], (640, 640), 32, rect)[0]
    h, w = frame
    x1, x2 = sorted((fx[0] * w, fx[1] * w))
    y1, y2 = sorted((fx[2] * h, fx[3] * h))
    box = np.array([[x1, y1, x2, y2]])
    back = boxes_to_frame(boxes_to_input(box, geom), geom)
    np.testing.assert_allclose(back, box, atol=1e-3 * max(h, w, 1) / 640 + 1e-3)
    inside = boxes_to_input(box, geom)[0]
    left, top, right, bottom = geom.content_box
    assert left - 1e-6 <= inside[0] <= right + 1e-6 and top - 1e-6 <= inside[3] <= bottom + 1e-6


def test_boxes_to_frame_clips_to_frame():
    geom = letterbox_geometry((720, 1280), (640, 640))
    out = boxes_to_frame(np.array([[-50, -50, 700, 700]], np.float32), geom)
    assert out.tolist() == [[0, 0, 1280, 720]]
