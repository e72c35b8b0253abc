"""datasets.scenes: determinism, label geometry against the rendered masks, occlusion."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.scenes import (
    CABLE,
    CLASS_NAMES,
    EBIKE,
    PERSON,
    CableSpec,
    Canvas,
    SceneConfig,
    draw_cable,
    draw_ebike,
    draw_person,
    generate_scene,
    mask_to_polygon,
    polygon_to_mask,
    random_bike,
    random_person,
)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / max(1, int((a | b).sum()))


@pytest.fixture(scope="module")
def scenes() -> list:
    return [generate_scene(s) for s in range(8)]


def test_class_order() -> None:
    assert CLASS_NAMES == ("charging_cable", "e_bike", "person")
    assert (CABLE, EBIKE, PERSON) == (0, 1, 2)


def test_same_seed_same_scene() -> None:
    a, b = generate_scene(11), generate_scene(np.random.default_rng(11))
    assert a.image.shape == (720, 1280, 3) and a.image.dtype == np.uint8
    assert np.array_equal(a.image, b.image)
    assert [i.class_id for i in a.instances] == [i.class_id for i in b.instances]
    for x, y in zip(a.instances, b.instances, strict=True):
        assert np.array_equal(x.polygon, y.polygon)
        assert np.array_equal(x.mask, y.mask)


def test_different_seeds_differ() -> None:
    assert not np.array_equal(generate_scene(1).image, generate_scene(2).image)


def test_all_classes_occur(scenes: list) -> None:
    seen = {i.class_id for s in scenes for i in s.instances}
    assert seen == {0, 1, 2}


def test_polygons_match_visible_masks(scenes: list) -> None:
    n = 0
    for s in scenes:
        h, w = s.image.shape[:2]
        for ins in s.instances:
            assert ins.mask.shape == (h, w) and ins.mask.sum() >= SceneConfig().min_area
            raster = polygon_to_mask(ins.polygon, (h, w))
            assert _iou(raster, ins.mask) >= (0.85 if ins.class_id == CABLE else 0.9), ins.name
            x1, y1, x2, y2 = ins.bbox
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            n += 1
    assert n >= 10


def test_cable_label_band_covers_the_drawn_stroke() -> None:
    img = np.full((200, 400, 3), 128, np.uint8)
    canvas = Canvas(img)
    spec = CableSpec(points=[(20.0, 20.0), (380.0, 60.0)], sags=[80.0], width=3, color=(20, 20, 20))
    draw_cable(canvas, spec, label_width=16)
    stroke = (img != 128).any(axis=2)
    (ins,) = canvas.instances()
    assert ins.class_id == CABLE
    inner = stroke & (canvas.owner > 0)  # the stroke itself, without anti-aliasing fringe
    assert inner.sum() > 300 and (inner & ~ins.mask).sum() == 0
    # the band is about 16 px wide along the curve (length ~ 400 px), far wider than the 3 px stroke
    assert 16 * 350 < ins.mask.sum() < 16 * 520
    unbanded = Canvas(np.full((200, 400, 3), 128, np.uint8))
    draw_cable(unbanded, spec, label_width=0)
    assert unbanded.instances()[0].mask.sum() < ins.mask.sum() / 3


def test_occluded_object_keeps_only_visible_pixels() -> None:
    rng = np.random.default_rng(3)
    canvas = Canvas(np.full((400, 600, 3), 100, np.uint8))
    bike = random_bike(rng, 300.0, 350.0, 45.0)
    draw_ebike(canvas, bike)
    full_bike = canvas.owner == 1
    person = random_person(rng, 300.0, 390.0, 300.0)
    draw_person(canvas, person)
    bike_ins, person_ins = canvas.instances()
    assert (bike_ins.class_id, person_ins.class_id) == (EBIKE, PERSON)
    assert not (bike_ins.mask & person_ins.mask).any()
    hidden = full_bike & (canvas.owner == 2)
    assert hidden.sum() > 100  # the person really stands in front of the bike
    assert (bike_ins.mask | hidden).sum() == full_bike.sum()


def test_split_mask_gives_one_polygon_covering_all_pieces() -> None:
    m = np.zeros((100, 200), bool)
    m[10:40, 10:50] = True
    m[60:90, 120:190] = True
    m[5:7, 150:152] = True  # a 4 px speck, dropped
    poly, kept = mask_to_polygon(m, min_component_area=12)
    assert poly is not None
    assert kept.sum() == m.sum() - 4
    raster = polygon_to_mask(poly, m.shape)
    assert _iou(raster, kept) > 0.95


def test_empty_mask_has_no_polygon() -> None:
    poly, kept = mask_to_polygon(np.zeros((10, 10), bool))
    assert poly is None and not kept.any()
