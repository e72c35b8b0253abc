"""Annotation: masks blended only where masks are, boxes/labels/overlay drawn per PusherConfig."""

from __future__ import annotations

import numpy as np
import pytest

from trtseg.annotate import (
    BoxAnnotator,
    LabelAnnotator,
    MaskAnnotator,
    OverlayAnnotator,
    class_color,
    draw,
)
from trtseg.config import PusherConfig
from trtseg.detections import Detections
from trtseg.masks import InstanceMasks

NAMES = {0: "charging_cable", 1: "e_bike", 2: "person"}


def scene_and_detections() -> tuple[np.ndarray, Detections]:
    scene = np.full((720, 1280, 3), 90, np.uint8)
    masks = np.zeros((2, 720, 1280), bool)
    masks[0, 200:400, 300:350] = True  # a thin vertical band inside box 0
    masks[1, 500:600, 900:1100] = True
    dets = Detections(
        boxes=np.array([[290, 190, 360, 410], [890, 490, 1110, 610]], np.float32),
        scores=np.array([0.91, 0.55], np.float32),
        class_ids=np.array([0, 2], np.int32),
        masks=InstanceMasks.from_dense(masks),
        names=NAMES,
        frame_shape=(720, 1280),
    )
    return scene, dets


def test_mask_annotator_blends_exactly_the_mask_pixels():
    scene, dets = scene_and_detections()
    out = MaskAnnotator(alpha=0.5).annotate(scene.copy(), dets)
    changed = (out != scene).any(axis=2)
    assert np.array_equal(changed, dets.masks.dense().any(axis=0))
    expected = np.round(90 * 0.5 + np.array(class_color(0)) * 0.5)
    np.testing.assert_allclose(out[300, 320], expected, atol=1)


def test_mask_annotator_alpha_zero_and_no_masks_leave_scene():
    scene, dets = scene_and_detections()
    assert np.array_equal(MaskAnnotator(alpha=0.0).annotate(scene.copy(), dets), scene)
    no_masks = Detections(dets.boxes, dets.scores, dets.class_ids, None, NAMES, (720, 1280))
    assert np.array_equal(MaskAnnotator().annotate(scene.copy(), no_masks), scene)
    with pytest.raises(ValueError):
        MaskAnnotator(alpha=1.5)


def test_mask_annotator_refuses_masks_of_another_frame():
    _, dets = scene_and_detections()
    with pytest.raises(ValueError, match="do not fit"):
        MaskAnnotator().annotate(np.zeros((360, 640, 3), np.uint8), dets)


def test_box_annotator_draws_on_box_edges_only():
    scene, dets = scene_and_detections()
    out = BoxAnnotator(thickness=2).annotate(scene.copy(), dets)
    changed = (out != scene).any(axis=2)
    assert changed[190, 290:360].all() and changed[190:410, 290].all()
    assert not changed[250:350, 300:350].any()  # inside of the box untouched
    assert not changed[:150].any()


def test_label_annotator_writes_above_box_and_inside_at_top_edge():
    scene, dets = scene_and_detections()
    out = LabelAnnotator().annotate(scene.copy(), dets)
    changed = (out != scene).any(axis=2)
    assert changed[160:190, 290:400].any()
    top = Detections(
        np.array([[10, 0, 200, 100]], np.float32),
        np.array([0.5], np.float32),
        np.array([1], np.int32),
        None,
        NAMES,
        (720, 1280),
    )
    out2 = LabelAnnotator().annotate(scene.copy(), top)
    assert (out2 != scene)[0:30, 10:100].any()


def test_overlay_shows_title_and_time():
    scene, dets = scene_and_detections()
    overlay = OverlayAnnotator(title="cam-7", utc=True)
    assert overlay.text(0.0) == "cam-7  1970-01-01 00:00:00"
    out = overlay.annotate(scene.copy(), dets, timestamp=0.0)
    changed = (out != scene).any(axis=2)
    assert changed[:20, :100].any() and not changed[100:].any()


def test_draw_follows_pusher_flags_and_copies():
    scene, dets = scene_and_detections()
    original = scene.copy()
    everything = draw(scene, dets, PusherConfig(), title="cam")
    assert np.array_equal(scene, original)  # input untouched
    assert (everything != scene).any()
    nothing = draw(scene, dets, PusherConfig(draw_boxes=False, draw_labels=False, draw_overlay=False, mask_alpha=0.0))
    assert np.array_equal(nothing, scene)
    only_masks = draw(scene, dets, PusherConfig(draw_boxes=False, draw_labels=False, draw_overlay=False))
    assert np.array_equal((only_masks != scene).any(axis=2), dets.masks.dense().any(axis=0))


def test_empty_detections_draw_only_overlay():
    scene, _ = scene_and_detections()
    empty = Detections.empty((720, 1280), NAMES)
    out = draw(scene, empty, PusherConfig(), title="cam")
    changed = (out != scene).any(axis=2)
    assert changed[:40].any() and not changed[60:].any()


def test_draw_into_a_reused_buffer_matches_a_fresh_copy():
    scene, dets = scene_and_detections()
    original = scene.copy()
    fresh = draw(scene, dets, PusherConfig(), title="cam", timestamp=1_700_000_000.0)
    buffer = np.full_like(scene, 7)  # stale content from an earlier frame
    drawn = draw(scene, dets, PusherConfig(), title="cam", timestamp=1_700_000_000.0, out=buffer)
    assert drawn is buffer
    assert np.array_equal(drawn, fresh)
    assert np.array_equal(scene, original)
    with pytest.raises(ValueError, match="does not fit"):
        draw(scene, dets, PusherConfig(), out=np.empty((720, 1280), np.uint8))


def test_mask_blend_matches_the_formula_inside_box_windows():
    """Every mask pixel becomes scene * (1 - alpha) + colour * alpha; nothing else changes."""
    rng = np.random.default_rng(4)
    scene = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    dense = np.zeros((3, 720, 1280), bool)
    dense[0, 100:300, 200:420] = rng.random((200, 220)) > 0.4
    dense[1, 400:700, 900:1279] = rng.random((300, 379)) > 0.5
    dense[2, 0:50, 0:80] = True
    dets = Detections(
        boxes=np.array([[200, 100, 420, 300], [900, 400, 1279, 700], [0, 0, 80, 50]], np.float32),
        scores=np.array([0.9, 0.6, 0.4], np.float32),
        class_ids=np.array([0, 1, 2], np.int32),
        masks=InstanceMasks.from_dense(dense),
        names=NAMES,
        frame_shape=(720, 1280),
    )
    alpha = 0.45
    out = MaskAnnotator(alpha=alpha).annotate(scene.copy(), dets)
    expected = scene.astype(np.float64)
    for i in np.argsort(dets.scores, kind="stable"):
        color = np.array(class_color(int(dets.class_ids[i])), np.float64)
        expected[dense[i]] = expected[dense[i]] * (1 - alpha) + color * alpha
        expected = np.round(expected)
    assert np.array_equal((out != scene).any(axis=2), dense.any(axis=0) & (np.round(expected) != scene).any(axis=2))
    assert np.abs(out.astype(np.int16) - expected.astype(np.int16)).max() <= 1
