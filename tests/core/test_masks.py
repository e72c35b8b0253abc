"""InstanceMasks (box-cropped masks) against the dense (N, H, W) arrays they stand for, and Detections on them."""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest

from trtseg.detections import Detections, outline
from trtseg.masks import InstanceMasks, MaskCrop

SHAPE = (72, 128)


def random_dense(seed: int, count: int = 9, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    """Blobs and speckle in random boxes, some touching the frame's edges, one empty, one full-frame."""
    rng = np.random.default_rng(seed)
    height, width = shape
    masks = np.zeros((count, height, width), bool)
    for i in range(count):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = int(rng.integers(x0 + 1, width + 1)), int(rng.integers(y0 + 1, height + 1))
        if i % 4 == 1:  # reaches the right and bottom edges
            x1, y1 = width, height
        if i % 4 == 2:  # starts at the left and top edges
            x0, y0 = 0, 0
        masks[i, y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) > rng.uniform(0.2, 0.8)
    masks[count // 2] = False
    masks[-1] = True
    return masks


def dense_polygons(masks: np.ndarray, epsilon_px: float = 1.0) -> list[list[list[float]]]:
    """Detections.polygons as it was on full-frame masks."""
    return [outline(mask.astype(np.uint8), epsilon_px) for mask in masks]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("tight", [True, False])
def test_dense_round_trip(seed: int, tight: bool) -> None:
    dense = random_dense(seed)
    masks = InstanceMasks.from_dense(dense, tight=tight)
    assert len(masks) == len(dense) and masks.shape == dense.shape and masks.frame_shape == SHAPE
    np.testing.assert_array_equal(masks.dense(), dense)
    np.testing.assert_array_equal(np.asarray(masks), dense)
    np.testing.assert_array_equal(np.asarray(masks, dtype=np.uint8), dense.astype(np.uint8))
    if tight:  # each crop is the box around its pixels: no empty border row or column
        for x0, y0, crop in masks:
            if crop.size:
                assert crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()
            else:
                assert (x0, y0) == (0, 0)


@pytest.mark.parametrize(
    "index",
    [
        0,
        -1,
        np.int64(3),
        slice(None),
        slice(2, 7, 2),
        slice(5, 5),
        [4, 0, 4],
        [],
        [True, False] * 4 + [True],
        np.array([8, 1], np.int32),
        np.zeros(0, np.int64),
        np.arange(9) % 3 == 0,
        np.zeros(9, bool),
        np.ones(9, bool),
    ],
    ids=repr,
)
def test_indexing_follows_numpy_on_the_first_axis(index: object) -> None:
    dense = random_dense(11)
    masks = InstanceMasks.from_dense(dense)
    subset = masks[index]  # type: ignore[index]
    expected = dense[[index] if isinstance(index, int | np.integer) else index]  # type: ignore[index]
    assert isinstance(subset, InstanceMasks) and subset.shape == expected.shape
    np.testing.assert_array_equal(subset.dense(), expected)
    np.testing.assert_array_equal(subset.areas(), expected.sum(axis=(1, 2)))
    assert subset.data.base is masks.data.base or subset.data.size == 0 or np.shares_memory(subset.data, masks.data)


def test_bad_indices_raise_index_error() -> None:
    masks = InstanceMasks.from_dense(random_dense(1))
    for index in (9, -10, [0, 9], np.ones(8, bool), np.zeros((2, 2), np.int64)):
        with pytest.raises(IndexError):
            masks[index]  # type: ignore[index]


@pytest.mark.parametrize("seed", range(6))
def test_areas_and_intersects_equal_the_dense_computation(seed: int) -> None:
    dense = random_dense(seed, count=12)
    masks = InstanceMasks.from_dense(dense)
    np.testing.assert_array_equal(masks.areas(), dense.reshape(12, -1).sum(axis=1))
    rng = np.random.default_rng(seed)
    region = np.zeros(SHAPE, np.uint8)
    points = rng.uniform([0, 0], [SHAPE[1], SHAPE[0]], (5, 2)).astype(np.int32)
    cv2.fillPoly(region, [points], 1)
    for reg in (region.astype(bool), np.zeros(SHAPE, bool), np.ones(SHAPE, bool)):
        expected = (dense & reg[None]).reshape(12, -1).any(axis=1)
        np.testing.assert_array_equal(masks.intersects(reg), expected)
    with pytest.raises(ValueError, match="does not fit"):
        masks.intersects(np.ones((SHAPE[0], SHAPE[1] + 1), bool))


def test_crops_views_and_iteration() -> None:
    dense = random_dense(4)
    masks = InstanceMasks.from_dense(dense)
    items = list(masks)
    assert len(items) == len(masks) and all(isinstance(item, MaskCrop) for item in items)
    x0, y0, crop = masks.crop(2)
    assert (x0, y0) == (items[2].x0, items[2].y0) and crop.dtype == bool
    assert np.shares_memory(crop, masks.data) and not crop.flags.writeable
    with pytest.raises(ValueError):
        crop[...] = True  # crops of subsets and frames share one buffer: read-only


def test_crops_at_frame_borders_and_zero_size() -> None:
    height, width = SHAPE
    corner = np.ones((5, 7), bool)
    masks = InstanceMasks.from_crops(
        SHAPE,
        [
            (0, 0, corner),
            (width - 7, height - 5, corner),
            (0, 0, np.zeros((0, 0), bool)),
            (width, height, np.zeros((0, 0), bool)),  # 0x0 at the far corner is still inside
            (0, 0, np.ones((height, width), bool)),
        ],
    )
    dense = masks.dense()
    assert dense[0, :5, :7].all() and dense[1, -5:, -7:].all() and not dense[2:4].any() and dense[4].all()
    np.testing.assert_array_equal(masks.areas(), [35, 35, 0, 0, height * width])
    np.testing.assert_array_equal(masks.intersects(np.ones(SHAPE, bool)), [True, True, False, False, True])
    assert masks.crop(2).mask.shape == (0, 0)
    for bad in [(width - 6, 0, corner), (0, height - 4, corner), (-1, 0, corner)]:
        with pytest.raises(ValueError, match="outside"):
            InstanceMasks.from_crops(SHAPE, [bad])


def test_empty() -> None:
    masks = InstanceMasks.empty((720, 1280))
    assert len(masks) == 0 and masks.shape == (0, 720, 1280) and masks.dense().shape == (0, 720, 1280)
    assert masks.areas().shape == (0,) and masks.intersects(np.ones((720, 1280), bool)).shape == (0,)
    assert len(masks[[]]) == 0 and list(masks) == []
    assert pickle.loads(pickle.dumps(masks)).shape == (0, 720, 1280)


def test_pickle_carries_only_the_crops_in_use() -> None:
    dense = random_dense(7, count=10)
    masks = InstanceMasks.from_dense(dense)
    again = pickle.loads(pickle.dumps(masks))
    np.testing.assert_array_equal(again.dense(), dense)
    assert again.nbytes == masks.nbytes and again.frame_shape == SHAPE
    subset = masks[[7, 2]]
    assert subset.data.size == masks.data.size  # a subset views the whole buffer...
    packed = pickle.loads(pickle.dumps(subset))
    assert packed.data.size == int(subset.sizes.sum()) < masks.data.size  # ...but only its crops travel
    np.testing.assert_array_equal(packed.dense(), dense[[7, 2]])
    # Protocol 5 (Ray's object store): the crop buffer goes out of band, not through the pickle stream.
    buffers: list[pickle.PickleBuffer] = []
    stream = pickle.dumps(masks, protocol=5, buffer_callback=buffers.append)
    assert buffers and len(stream) < masks.data.size
    np.testing.assert_array_equal(pickle.loads(stream, buffers=buffers).dense(), dense)
    # Eight pixels a byte on the way: the crops' bytes are what camera hand-backs are made of.
    out_of_band = sum(memoryview(b).nbytes for b in buffers)
    assert out_of_band == -(-masks.data.size // 8) + masks.rects.nbytes + masks.offsets.nbytes


def test_from_buffer_views_a_shared_buffer() -> None:
    buffer = np.arange(40) % 3 == 0
    rects = np.array([[2, 1, 3, 2], [0, 0, 2, 2]], np.int32)
    masks = InstanceMasks.from_buffer((10, 10), rects, np.array([20, 30]), buffer)
    assert np.shares_memory(masks.data, buffer) and masks.data.size == 14  # narrowed to [20, 34)
    np.testing.assert_array_equal(masks.crop(0).mask, buffer[20:26].reshape(2, 3))
    np.testing.assert_array_equal(masks.crop(1).mask, buffer[30:34].reshape(2, 2))
    with pytest.raises(ValueError, match="buffer"):
        InstanceMasks((10, 10), rects, np.array([20, 37]), buffer)


def test_nbytes_far_below_dense_for_small_boxes() -> None:
    dense = np.zeros((20, 720, 1280), bool)
    for i in range(20):
        dense[i, 30 * i : 30 * i + 24, 50 * i : 50 * i + 16] = True
    masks = InstanceMasks.from_dense(dense)
    assert masks.nbytes == 20 * (24 * 16 + 16 + 8)
    assert masks.nbytes * 1000 < dense.nbytes
    assert len(pickle.dumps(masks)) < 2 * masks.nbytes


def test_dense_input_is_checked() -> None:
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        InstanceMasks.from_dense(np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="flat bool"):
        InstanceMasks(SHAPE, np.zeros((0, 4)), np.zeros(0), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="offsets"):
        InstanceMasks(SHAPE, np.zeros((2, 4)), np.zeros(1), np.zeros(4, bool))


# -- Detections on InstanceMasks -----------------------------------------------------------------


def detections(dense: np.ndarray) -> Detections:
    n = len(dense)
    boxes = np.array([[0, 0, SHAPE[1], SHAPE[0]]] * n, np.float32).reshape(-1, 4)
    return Detections(
        boxes=boxes,
        scores=np.linspace(0.9, 0.1, n).astype(np.float32),
        class_ids=(np.arange(n) % 3).astype(np.int32),
        masks=InstanceMasks.from_dense(dense),
        names={0: "charging_cable", 1: "e_bike", 2: "person"},
        frame_shape=SHAPE,
    )


def blobs(seed: int, count: int = 8) -> np.ndarray:
    """Several components per mask, some cut by the frame's edges (contours that touch the border)."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((count, *SHAPE), np.uint8)
    for mask in masks:
        for _ in range(int(rng.integers(1, 4))):
            centre = (int(rng.integers(-10, SHAPE[1] + 10)), int(rng.integers(-10, SHAPE[0] + 10)))
            axes = (int(rng.integers(1, 30)), int(rng.integers(1, 20)))
            cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    masks[1] = 0
    return masks.astype(bool)


@pytest.mark.parametrize("seed", range(8))
def test_polygons_and_areas_equal_the_full_frame_ones(seed: int) -> None:
    dense = blobs(seed) if seed % 2 else random_dense(seed)
    dets = detections(dense)
    assert dets.polygons() == dense_polygons(dense)
    assert dets.polygons(epsilon_px=0) == dense_polygons(dense, 0)
    np.testing.assert_array_equal(dets.areas, dense.reshape(len(dense), -1).sum(axis=1).astype(np.float64))
    records = dets.to_records()
    assert [len(r["polygon"]) for r in records] == [len(p) for p in dense_polygons(dense)]


def test_detections_slicing_keeps_masks_aligned() -> None:
    dense = blobs(3)
    dets = detections(dense)
    people = dets.of_classes(["person"])
    np.testing.assert_array_equal(people.masks.dense(), dense[np.arange(len(dense)) % 3 == 2])  # type: ignore[union-attr]
    one = dets[4]
    assert len(one) == 1 and one.masks is not None
    np.testing.assert_array_equal(one.masks.dense(), dense[[4]])
    none = dets[[]]
    assert len(none) == 0 and none.masks is not None and none.masks.shape == (0, *SHAPE)
    empty = Detections.empty(SHAPE)
    assert empty.masks is not None and empty.masks.shape == (0, *SHAPE) and empty.polygons() == []


def test_detections_refuse_dense_or_mismatched_masks() -> None:
    dense = random_dense(2, count=3)
    boxes, scores, ids = np.zeros((3, 4), np.float32), np.ones(3, np.float32), np.zeros(3, np.int32)
    with pytest.raises(TypeError, match="InstanceMasks"):
        Detections(boxes, scores, ids, dense, {}, SHAPE)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="do not fit"):
        Detections(boxes[:2], scores[:2], ids[:2], InstanceMasks.from_dense(dense), {}, SHAPE)
    with pytest.raises(ValueError, match="do not fit"):
        Detections(boxes, scores, ids, InstanceMasks.from_dense(dense), {}, (SHAPE[0], SHAPE[1] + 1))


def test_detections_pickle_with_their_masks() -> None:
    dense = blobs(5)
    dets = detections(dense)[[6, 0, 3]]
    again = pickle.loads(pickle.dumps(dets))
    np.testing.assert_array_equal(again.masks.dense(), dense[[6, 0, 3]])  # type: ignore[union-attr]
    assert again.polygons() == dets.polygons()
