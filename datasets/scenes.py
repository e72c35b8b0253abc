"""Procedural, labelled camera frames of residential facades with e-bike charging cables.

trtseg's product detects "flying lead" e-bike charging: cables hanging from windows down
to e-bikes parked at the foot of residential buildings. No real footage or model can be
downloaded where the project runs, so this module draws such scenes itself, with exact
instance labels, deterministically from a seed.

Drawing model: everything is painted onto a `Canvas` in depth order. Each labelled or
occluding object also paints its pixels into an owner map (the index of the top-most
layer at each pixel), so the visible part of any instance is known exactly and the
label polygons are derived from the visible masks (occlusion handled by construction).

Classes, in this order: 0 ``charging_cable``, 1 ``e_bike``, 2 ``person``.

Cable labels: a cable is drawn 2-6 px wide at 1280x720, but the label of a cable is its
visible centre-line stroked at ``SceneConfig.cable_label_width`` px (at least the drawn
width). YOLOv8-seg predicts masks on a grid 4x coarser than its input (8 px per cell of a
1280 px frame at imgsz 640), so a 3 px stroke would vanish from the ground-truth masks
that ultralytics builds; a corridor of about two cells keeps the label learnable while
staying a tight, exact band around the rendered cable.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import cv2
import numpy as np

log = logging.getLogger(__name__)

CLASS_NAMES: tuple[str, ...] = ("charging_cable", "e_bike", "person")
CABLE, EBIKE, PERSON = 0, 1, 2

Color = tuple[int, int, int]
Point = tuple[float, float]
SeedLike = int | np.random.Generator


@dataclass(frozen=True)
class SceneConfig:
    """Knobs of the generator; the defaults are what the shipped model was trained on."""

    size: tuple[int, int] = (1280, 720)  # (width, height)
    cable_width: tuple[int, int] = (2, 6)  # drawn width range, px
    cable_label_width: int = 16  # width of the labelled band around a cable, px (0: drawn width)
    max_cables: int = 3
    max_bikes: int = 4
    max_persons: int = 3
    empty_prob: float = 0.05  # frames with no labelled object at all (hard negatives)
    min_area: int = 60  # visible pixels below which an instance is not labelled
    min_component_area: int = 12  # smaller mask fragments are dropped from polygons
    jpeg_quality: tuple[int, int] = (40, 95)
    degrade: bool = True  # lighting, blur, noise and JPEG round-trip


@dataclass
class Instance:
    """One labelled object: its class, visible mask and the polygon of that mask."""

    class_id: int
    mask: np.ndarray  # bool (H, W): visible label pixels
    polygon: np.ndarray  # float32 (N, 2): pixel coordinates (x, y), one ring

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """Tight box (x1, y1, x2, y2), exclusive end, of the visible mask."""
        ys, xs = np.nonzero(self.mask)
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1

    @property
    def name(self) -> str:
        return CLASS_NAMES[self.class_id]


@dataclass
class Scene:
    """A rendered BGR frame and its instances."""

    image: np.ndarray  # uint8 (H, W, 3), BGR
    instances: list[Instance]


# --------------------------------------------------------------------------------------
# Canvas: image plus owner map, so occlusion is exact
# --------------------------------------------------------------------------------------


@dataclass
class _Record:
    class_id: int
    layer: int
    label_mask: np.ndarray  # uint8 (H, W): what the object claims when unoccluded


class Canvas:
    """A BGR image with an owner map recording the top-most drawn layer at each pixel."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.owner = np.zeros(image.shape[:2], np.int32)  # 0: background
        self._layer = 0
        self._records: list[_Record] = []

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]

    def new_mask(self) -> np.ndarray:
        return np.zeros(self.shape, np.uint8)

    def commit(self, mask: np.ndarray, class_id: int | None, label_mask: np.ndarray | None = None) -> int:
        """Record a drawn object (its pixels already painted on `image`) as the top layer.

        `class_id` None marks an unlabelled occluder. `label_mask` defaults to `mask`.
        """
        self._layer += 1
        self.owner[mask > 0] = self._layer
        if class_id is not None:
            self._records.append(_Record(class_id, self._layer, mask if label_mask is None else label_mask))
        return self._layer

    def instances(self, min_area: int = 60, min_component_area: int = 12) -> list[Instance]:
        """Visible masks and polygons of the labelled objects, top layers occluding lower ones."""
        out: list[Instance] = []
        for rec in self._records:
            visible = (rec.label_mask > 0) & (self.owner <= rec.layer)
            if int(visible.sum()) < min_area:
                continue
            polygon, kept = mask_to_polygon(visible, min_component_area)
            if polygon is None or int(kept.sum()) < min_area:
                continue
            out.append(Instance(rec.class_id, kept, polygon))
        return out


# --------------------------------------------------------------------------------------
# Masks and polygons
# --------------------------------------------------------------------------------------


def mask_to_polygon(mask: np.ndarray, min_component_area: int = 12) -> tuple[np.ndarray | None, np.ndarray]:
    """One polygon ring covering a mask's components, and the mask of the kept components.

    YOLO segmentation labels hold one polygon per instance; an occluded object can be
    split in pieces, so the pieces' outer contours are chained by zero-area bridges
    (each bridge walked there and back), as ultralytics' own converters do.
    """
    m = mask.astype(np.uint8)
    n, cc, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    kept = np.zeros(mask.shape, bool)
    rings: list[np.ndarray] = []
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < min_component_area:
            continue
        x, y, w, h = (int(v) for v in stats[i, :4])
        comp = (cc[y : y + h, x : x + w] == i).astype(np.uint8)
        contours, _ = cv2.findContours(comp, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        c = max(contours, key=cv2.contourArea)
        c = cv2.approxPolyDP(c, 0.7, True).reshape(-1, 2) + np.array([x, y])
        if len(c) < 3:
            continue
        kept[y : y + h, x : x + w] |= comp.astype(bool)
        rings.append(c.astype(np.float32))
    if not rings:
        return None, kept
    return _chain_rings(rings), kept


def _chain_rings(rings: list[np.ndarray]) -> np.ndarray:
    """Join closed rings into one ring, visiting them in nearest-neighbour order."""
    if len(rings) == 1:
        return rings[0]
    remaining = list(range(1, len(rings)))
    order = [0]
    entry = [0]  # index of the entry vertex of each visited ring
    cur = rings[0][0]
    while remaining:
        best = min(
            ((j, int(np.argmin(((rings[j] - cur) ** 2).sum(1)))) for j in remaining),
            key=lambda t: float(((rings[t[0]][t[1]] - cur) ** 2).sum()),
        )
        j, k = best
        order.append(j)
        entry.append(k)
        remaining.remove(j)
        cur = rings[j][k]
    parts: list[np.ndarray] = []
    entries: list[np.ndarray] = []
    for j, k in zip(order, entry, strict=True):
        r = np.roll(rings[j], -k, axis=0)
        parts.append(np.concatenate([r, r[:1]]))  # full loop back to the entry vertex
        entries.append(r[:1])
    parts.extend(entries[-2::-1])  # walk the bridges back to the start
    return np.concatenate(parts).astype(np.float32)


def polygon_to_mask(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise a polygon ring (pixel coordinates) to a bool mask of `shape` (H, W)."""
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(polygon).astype(np.int32).reshape(-1, 1, 2)], 1)
    return m.astype(bool)


# --------------------------------------------------------------------------------------
# Colours and small helpers
# --------------------------------------------------------------------------------------


def _hsv(h: float, s: float, v: float) -> Color:
    px = np.uint8([[[int(h) % 180, int(np.clip(s, 0, 255)), int(np.clip(v, 0, 255))]]])
    b, g, r = cv2.cvtColor(px, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _jitter(rng: np.random.Generator, c: Color, amount: int = 12) -> Color:
    return tuple(int(np.clip(v + rng.integers(-amount, amount + 1), 0, 255)) for v in c)  # type: ignore[return-value]


def _shade(c: Color, f: float) -> Color:
    return tuple(int(np.clip(v * f, 0, 255)) for v in c)  # type: ignore[return-value]


def _pt(p: Point) -> tuple[int, int]:
    return int(round(p[0])), int(round(p[1]))  # noqa: RUF046 (numpy scalars)


def _line(canvas_img: np.ndarray, mask: np.ndarray | None, a: Point, b: Point, color: Color, t: int) -> None:
    t = max(1, int(t))
    cv2.line(canvas_img, _pt(a), _pt(b), color, t, cv2.LINE_AA)
    if mask is not None:
        cv2.line(mask, _pt(a), _pt(b), 1, t, cv2.LINE_8)


def _lowfreq_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth noise in [-1, 1] (float32, HxW) from a coarse random grid."""
    h, w = shape
    g = rng.uniform(-1, 1, (max(2, h * cells // w), cells)).astype(np.float32)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)


SKIN_TONES: tuple[Color, ...] = ((160, 190, 230), (120, 160, 210), (90, 130, 180), (60, 95, 140), (45, 70, 105))
HAIR_COLORS: tuple[Color, ...] = ((20, 20, 25), (30, 40, 60), (40, 70, 110), (150, 150, 150), (60, 110, 170))


# --------------------------------------------------------------------------------------
# Background: facade, windows, balconies, ground, static distractors
# --------------------------------------------------------------------------------------


@dataclass
class Background:
    """A rendered facade/street image plus the anchors objects are placed against."""

    image: np.ndarray
    ground_y: int  # y of the foot of the facade (where the ground starts)
    sills: list[Point]  # window sill points, where charging cables come out
    rails: list[tuple[Point, Point]]  # balcony rail segments (laundry lines, ropes hang there)


def render_background(rng: np.random.Generator, size: tuple[int, int]) -> Background:
    """Draw a facade with window grid, balconies, pipes and a street below it."""
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    ground_y = int(rng.uniform(0.55, 0.8) * h)
    roof_y = int(rng.uniform(-0.4, 0.18) * h) if rng.random() < 0.6 else -h
    _draw_sky(rng, img, max(0, roof_y))
    _draw_wall(rng, img, max(0, roof_y), ground_y)
    sills, rails = _draw_windows(rng, img, roof_y, ground_y)
    _draw_pipes_and_units(rng, img, max(0, roof_y), ground_y)
    _draw_ground(rng, img, ground_y)
    _draw_wires(rng, img, max(0, roof_y), ground_y, rails)
    return Background(img, ground_y, sills, rails)


def _draw_sky(rng: np.random.Generator, img: np.ndarray, roof_y: int) -> None:
    if roof_y <= 0:
        return
    top = np.array(_hsv(rng.uniform(95, 115), rng.uniform(30, 140), rng.uniform(150, 250)), np.float32)
    bot = np.array(_hsv(rng.uniform(95, 115), rng.uniform(10, 60), rng.uniform(190, 255)), np.float32)
    t = np.linspace(0, 1, roof_y, dtype=np.float32)[:, None, None]
    img[:roof_y] = (top * (1 - t) + bot * t).astype(np.uint8)


def _draw_wall(rng: np.random.Generator, img: np.ndarray, y0: int, y1: int) -> None:
    _, w = img.shape[:2]
    kind = rng.choice(["plaster", "brick", "tile", "concrete"])
    if kind == "brick":
        base = _hsv(rng.uniform(3, 15), rng.uniform(90, 170), rng.uniform(110, 180))
    elif kind == "tile":
        base = _hsv(rng.uniform(0, 180), rng.uniform(0, 40), rng.uniform(170, 235))
    elif kind == "concrete":
        base = _hsv(rng.uniform(10, 30), rng.uniform(0, 25), rng.uniform(120, 190))
    else:
        base = _hsv(rng.uniform(5, 30), rng.uniform(15, 80), rng.uniform(150, 230))
    rows = y1 - y0
    if rows <= 0:
        return
    lf = _lowfreq_noise(rng, (rows, w), int(rng.integers(4, 14)))
    stains = _lowfreq_noise(rng, (rows, w), int(rng.integers(20, 50)))
    fine = rng.standard_normal((rows, w), dtype=np.float32)
    shade = 1.0 + 0.06 * lf + 0.03 * stains
    wall = np.array(base, np.float32)[None, None, :] * shade[..., None] + (fine * 5.0)[..., None]
    img[y0:y1] = np.clip(wall, 0, 255).astype(np.uint8)
    region = img[y0:y1]
    if kind in ("brick", "tile"):
        step = int(rng.integers(8, 14)) if kind == "brick" else int(rng.integers(14, 28))
        mortar = _shade(base, 0.8 if kind == "brick" else 0.9)
        for i, yy in enumerate(range(0, rows, step)):
            cv2.line(region, (0, yy), (w, yy), mortar, 1)
            if kind == "brick":
                off = (i % 2) * step
                for xx in range(off, w, step * 2):
                    cv2.line(region, (xx, yy), (xx, min(rows, yy + step)), mortar, 1)
        if kind == "tile":
            for xx in range(0, w, step):
                cv2.line(region, (xx, 0), (xx, rows), mortar, 1)
    if rng.random() < 0.5:  # floor bands
        band = _shade(base, rng.uniform(0.8, 1.15))
        for yy in range(int(rng.integers(0, 120)), rows, int(rng.integers(110, 170))):
            cv2.rectangle(region, (0, yy), (w, yy + int(rng.integers(4, 12))), band, -1)


def _draw_windows(
    rng: np.random.Generator, img: np.ndarray, roof_y: int, ground_y: int
) -> tuple[list[Point], list[tuple[Point, Point]]]:
    h, w = img.shape[:2]
    floor_h = int(rng.integers(105, 175))
    col_w = int(rng.integers(130, 230))
    win_w = int(col_w * rng.uniform(0.38, 0.65))
    win_h = int(floor_h * rng.uniform(0.45, 0.65))
    x_off = int(rng.integers(-col_w // 2, col_w // 2))
    frame_c = _jitter(rng, [(235, 235, 235), (60, 60, 60), (200, 200, 190), (80, 110, 140)][int(rng.integers(4))])
    glass_top = np.array(_hsv(rng.uniform(90, 120), rng.uniform(20, 90), rng.uniform(40, 140)), np.float32)
    glass_bot = np.array(_hsv(rng.uniform(90, 120), rng.uniform(10, 60), rng.uniform(90, 200)), np.float32)
    sills: list[Point] = []
    rails: list[tuple[Point, Point]] = []
    balcony_floor = rng.random(64) < rng.uniform(0.0, 0.6)
    shop_floor = rng.random() < 0.4
    top_limit = max(roof_y + 20, -floor_h)
    fi = 0
    for fy in range(ground_y - floor_h, top_limit - floor_h, -floor_h):
        fi += 1
        if shop_floor and fi == 1:  # ground floor: a door / shutter instead of windows
            for cx in range(x_off, w + col_w, col_w * 2):
                x1 = cx + col_w // 4
                cv2.rectangle(
                    img,
                    (x1, ground_y - int(floor_h * 0.8)),
                    (x1 + col_w, ground_y),
                    _jitter(rng, (120, 120, 125), 30),
                    -1,
                )
                for yy in range(ground_y - int(floor_h * 0.8), ground_y, 6):
                    cv2.line(img, (x1, yy), (x1 + col_w, yy), (90, 90, 95), 1)
            continue
        wy = fy + int(floor_h * 0.18)
        balcony = bool(balcony_floor[fi % 64])
        for cx in range(x_off, w + col_w, col_w):
            wx = cx + (col_w - win_w) // 2
            if wy + win_h < 0 or wy > h or wx + win_w < 0 or wx > w:
                continue
            if wy < roof_y:
                continue
            cv2.rectangle(img, (wx - 4, wy - 4), (wx + win_w + 4, wy + win_h + 4), frame_c, -1)
            t = np.linspace(0, 1, max(1, win_h), dtype=np.float32)[:, None, None]
            glass = glass_top * (1 - t) + glass_bot * t
            gy0, gy1 = max(0, wy), min(h, wy + win_h)
            gx0, gx1 = max(0, wx), min(w, wx + win_w)
            if gy1 > gy0 and gx1 > gx0:
                img[gy0:gy1, gx0:gx1] = glass[gy0 - wy : gy1 - wy].astype(np.uint8)
                r = rng.random()
                if r < 0.25:  # curtain
                    cur = _hsv(rng.uniform(0, 180), rng.uniform(10, 120), rng.uniform(120, 240))
                    cw = int(win_w * rng.uniform(0.2, 0.5))
                    cv2.rectangle(img, (wx, wy), (wx + cw, wy + win_h), cur, -1)
                elif r < 0.35:  # lit room
                    cv2.rectangle(img, (wx, wy), (wx + win_w, wy + win_h), _jitter(rng, (120, 200, 240), 20), -1)
            cv2.line(img, (wx + win_w // 2, wy), (wx + win_w // 2, wy + win_h), frame_c, 3)
            if rng.random() < 0.5:
                cv2.line(img, (wx, wy + win_h // 3), (wx + win_w, wy + win_h // 3), frame_c, 3)
            if rng.random() < 0.2:  # security bars
                for bx in range(wx + 6, wx + win_w, 10):
                    cv2.line(img, (bx, wy), (bx, wy + win_h), (70, 70, 70), 2)
            sill_y = wy + win_h + 4
            cv2.rectangle(img, (wx - 8, sill_y), (wx + win_w + 8, sill_y + 5), _shade(frame_c, 0.9), -1)
            if 0 < sill_y < ground_y - 30:
                sills.append((float(wx + rng.uniform(0.15, 0.85) * win_w), float(sill_y + 2)))
            if balcony:
                bx0, bx1 = wx - int(col_w * 0.15), wx + win_w + int(col_w * 0.15)
                slab_y = fy + floor_h - 6
                rail_y = slab_y - int(floor_h * 0.32)
                rc = _jitter(rng, [(200, 200, 200), (50, 50, 50), (90, 110, 120)][int(rng.integers(3))])
                cv2.rectangle(img, (bx0, slab_y), (bx1, slab_y + 8), _shade(frame_c, 0.8), -1)
                cv2.line(img, (bx0, rail_y), (bx1, rail_y), rc, 3)
                for bx in range(bx0, bx1 + 1, int(rng.integers(7, 13))):
                    cv2.line(img, (bx, rail_y), (bx, slab_y), rc, 2)
                rails.append(((float(bx0), float(rail_y)), (float(bx1), float(rail_y))))
    return sills, rails


def _draw_pipes_and_units(rng: np.random.Generator, img: np.ndarray, y0: int, ground_y: int) -> None:
    _, w = img.shape[:2]
    for _ in range(int(rng.integers(0, 3))):  # drainpipes
        x = int(rng.uniform(0, w))
        pw = int(rng.integers(6, 13))
        c = _jitter(rng, [(200, 200, 200), (110, 110, 110), (60, 70, 80)][int(rng.integers(3))])
        cv2.rectangle(img, (x, y0), (x + pw, ground_y), c, -1)
        cv2.line(img, (x + pw // 3, y0), (x + pw // 3, ground_y), _shade(c, 1.2), 1)
        for yy in range(y0 + 40, ground_y, int(rng.integers(80, 160))):
            cv2.rectangle(img, (x - 2, yy), (x + pw + 2, yy + 4), _shade(c, 0.7), -1)
    for _ in range(int(rng.integers(0, 5))):  # air-conditioner units
        x, y = int(rng.uniform(0, w - 80)), int(rng.uniform(y0, max(y0 + 1, ground_y - 60)))
        uw, uh = int(rng.integers(50, 90)), int(rng.integers(35, 55))
        c = _jitter(rng, (215, 215, 210), 20)
        cv2.rectangle(img, (x, y), (x + uw, y + uh), c, -1)
        cv2.circle(img, (x + uw // 2, y + uh // 2), uh // 3, _shade(c, 0.6), 2)
        for yy in range(y + 4, y + uh, 4):
            cv2.line(img, (x + 3, yy), (x + uw - 3, yy), _shade(c, 0.85), 1)


def _draw_ground(rng: np.random.Generator, img: np.ndarray, ground_y: int) -> None:
    h, w = img.shape[:2]
    rows = h - ground_y
    if rows <= 0:
        return
    base = _hsv(rng.uniform(0, 30), rng.uniform(0, 30), rng.uniform(70, 150))
    lf = _lowfreq_noise(rng, (rows, w), int(rng.integers(6, 20)))
    fine = rng.standard_normal((rows, w), dtype=np.float32)
    t = np.linspace(0.85, 1.1, rows, dtype=np.float32)[:, None]
    g = np.array(base, np.float32)[None, None, :] * (t * (1 + 0.08 * lf))[..., None] + (fine * 7)[..., None]
    img[ground_y:] = np.clip(g, 0, 255).astype(np.uint8)
    walk = int(rows * rng.uniform(0.15, 0.5))  # sidewalk strip
    wc = _jitter(rng, _shade(base, rng.uniform(1.1, 1.4)), 10)
    cv2.rectangle(img, (0, ground_y), (w, ground_y + walk), wc, -1)
    step = int(rng.integers(25, 60))
    for xx in range(int(rng.integers(0, step)), w, step):
        cv2.line(img, (xx, ground_y), (xx + (xx - w // 2) // 8, ground_y + walk), _shade(wc, 0.85), 1)
    cv2.line(img, (0, ground_y + walk), (w, ground_y + walk), _shade(wc, 0.7), 3)
    cv2.line(img, (0, ground_y), (w, ground_y), _shade(base, 0.6), 2)
    if rng.random() < 0.6:  # parking marks
        mc = (220, 220, 220) if rng.random() < 0.6 else (40, 200, 230)
        yy = ground_y + walk + int((h - ground_y - walk) * rng.uniform(0.3, 0.8))
        for xx in range(int(rng.integers(0, 200)), w, int(rng.integers(150, 260))):
            cv2.line(img, (xx, ground_y + walk + 4), (xx + int(rng.integers(-60, 60)), h), mc, 3)
        cv2.line(img, (0, yy), (w, yy), mc, 2)


def _draw_wires(
    rng: np.random.Generator, img: np.ndarray, y0: int, ground_y: int, rails: list[tuple[Point, Point]]
) -> None:
    """Unlabelled look-alikes: overhead wires, laundry lines, dangling ropes, hoses."""
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(0, 4))):  # overhead / facade wires
        a = (-10.0, rng.uniform(y0, ground_y))
        b = (w + 10.0, rng.uniform(y0, ground_y))
        pts = sag_curve(a, b, rng.uniform(5, 60), rng)
        c = _jitter(rng, (30, 30, 30), 20)
        cv2.polylines(img, [pts.astype(np.int32)], False, c, int(rng.integers(1, 4)), cv2.LINE_AA)
    for a, b in rails:
        if rng.random() < 0.3:  # laundry line with clothes
            y = a[1] - rng.uniform(10, 30)
            pts = sag_curve((a[0], y), (b[0], y), rng.uniform(3, 12), rng)
            cv2.polylines(img, [pts.astype(np.int32)], False, (225, 225, 225), 1, cv2.LINE_AA)
            for _ in range(int(rng.integers(1, 4))):
                k = int(rng.integers(0, len(pts)))
                cx, cy = pts[k]
                cw, ch = int(rng.integers(12, 30)), int(rng.integers(18, 45))
                col = _hsv(rng.uniform(0, 180), rng.uniform(40, 200), rng.uniform(100, 240))
                cv2.rectangle(img, (int(cx), int(cy)), (int(cx) + cw, int(cy) + ch), col, -1)
        if rng.random() < 0.12:  # rope dangling from a balcony rail
            x = rng.uniform(a[0], b[0])
            end = (x + rng.uniform(-30, 30), min(ground_y - 5.0, a[1] + rng.uniform(60, 260)))
            pts = sag_curve((x, a[1]), end, rng.uniform(0, 15), rng)
            cv2.polylines(
                img,
                [pts.astype(np.int32)],
                False,
                _jitter(rng, (90, 150, 190), 25),
                int(rng.integers(3, 8)),
                cv2.LINE_AA,
            )
    if rng.random() < 0.3:  # garden hose on the ground
        a = (rng.uniform(0, w), rng.uniform(ground_y + 5, h))
        b = (a[0] + rng.uniform(-400, 400), rng.uniform(ground_y + 5, h))
        pts = sag_curve(a, b, rng.uniform(-80, 80), rng)
        col = _jitter(rng, [(60, 160, 60), (180, 100, 40), (40, 140, 200)][int(rng.integers(3))], 15)
        cv2.polylines(img, [pts.astype(np.int32)], False, col, int(rng.integers(4, 9)), cv2.LINE_AA)


# --------------------------------------------------------------------------------------
# Objects: cables, e-bikes, persons (specs are plain data so video.py can animate them)
# --------------------------------------------------------------------------------------


def sag_curve(a: Point, b: Point, sag: float, rng: np.random.Generator | None = None, n: int = 48) -> np.ndarray:
    """Points (n, 2) of a hanging span from a to b that sags `sag` px below the chord.

    A parabola is indistinguishable from a catenary at these sags; optional small
    lateral wobble makes cables look less synthetic.
    """
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)
    ax, ay = a
    bx, by = b
    x = ax + (bx - ax) * t
    y = ay + (by - ay) * t + 4.0 * sag * t * (1 - t)
    if rng is not None:
        amp = rng.uniform(0, 2.5)
        ph = rng.uniform(0, 2 * math.pi)
        x = x + amp * np.sin(t * rng.uniform(3, 9) + ph)
    return np.stack([x, y], 1)


@dataclass
class CableSpec:
    """A charging cable as a list of spans (each a hanging curve between two points)."""

    points: list[Point]  # span end points: window sill, intermediate supports, plug end
    sags: list[float]  # sag of each span, px
    width: int
    color: Color
    wobble_seed: int = 0
    sway: float = 0.0  # lateral offset of the span middles, px (animated in videos)

    def polyline(self) -> np.ndarray:
        rng = np.random.default_rng(self.wobble_seed)
        parts: list[np.ndarray] = []
        for i, (a, b) in enumerate(pairwise(self.points)):
            pts = sag_curve(a, b, self.sags[i], rng)
            if self.sway:
                t = np.linspace(0, 1, len(pts), dtype=np.float32)
                pts[:, 0] += self.sway * np.sin(math.pi * t) * (1.0 if i == 0 else 0.3)
            parts.append(pts if i == 0 else pts[1:])
        return np.concatenate(parts)


def draw_cable(canvas: Canvas, spec: CableSpec, label_width: int) -> None:
    """Paint a cable (with a highlight on wide ones) and commit it with its label band."""
    pts = spec.polyline().astype(np.int32).reshape(-1, 1, 2)
    mask = canvas.new_mask()
    cv2.polylines(canvas.image, [pts], False, spec.color, spec.width, cv2.LINE_AA)
    cv2.polylines(mask, [pts], False, 1, spec.width, cv2.LINE_8)
    if spec.width >= 4:
        hl = _shade(spec.color, 1.5) if max(spec.color) < 170 else _shade(spec.color, 0.8)
        cv2.polylines(canvas.image, [pts - np.array([0, 1], np.int32)], False, hl, 1, cv2.LINE_AA)
    label = mask
    if label_width > spec.width:
        label = canvas.new_mask()
        cv2.polylines(label, [pts], False, 1, label_width, cv2.LINE_8)
    canvas.commit(mask, CABLE, label)


@dataclass
class BikeSpec:
    """A side-view e-bike standing on the ground at (x, ground_y)."""

    x: float
    ground_y: float
    r: float  # wheel radius, px
    facing: int  # +1: front wheel on the right
    frame_color: Color
    battery_color: Color
    battery_on_rack: bool
    basket: bool
    mag_wheels: bool

    def battery_point(self) -> Point:
        """Where a charging cable plugs in (on the battery)."""
        f, r = self.facing, self.r
        if self.battery_on_rack:
            return self.x - 1.35 * r * f, self.ground_y - 2.2 * r
        return self.x + 0.35 * r * f, self.ground_y - 1.5 * r


def draw_ebike(canvas: Canvas, b: BikeSpec) -> None:
    img, m = canvas.image, canvas.new_mask()
    f, r, x, gy = b.facing, b.r, b.x, b.ground_y
    tire = (25, 25, 28)
    rear, front = (x - 1.6 * r * f, gy - r), (x + 1.6 * r * f, gy - r)
    bb = (x - 0.15 * r * f, gy - 0.85 * r)
    seat = (x - 0.8 * r * f, gy - 2.35 * r)
    head = (x + 1.15 * r * f, gy - 2.45 * r)
    head_low = (x + 1.0 * r * f, gy - 1.95 * r)
    tt = max(2, int(0.16 * r))
    for hub in (rear, front):
        cv2.circle(m, _pt(hub), int(r), 1, -1)  # label convention: whole wheel disk
        cv2.circle(img, _pt(hub), int(r - 0.09 * r), tire, max(2, int(0.18 * r)), cv2.LINE_AA)
        cv2.circle(img, _pt(hub), int(r * 0.78), (150, 150, 155), max(1, int(0.05 * r)), cv2.LINE_AA)
        if b.mag_wheels:
            for k in range(5):
                a = 2 * math.pi * k / 5
                _line(
                    img,
                    None,
                    hub,
                    (hub[0] + 0.75 * r * math.cos(a), hub[1] + 0.75 * r * math.sin(a)),
                    (120, 120, 125),
                    max(2, int(0.1 * r)),
                )
        else:
            for k in range(12):
                a = 2 * math.pi * k / 12
                _line(
                    img,
                    None,
                    hub,
                    (hub[0] + 0.78 * r * math.cos(a), hub[1] + 0.78 * r * math.sin(a)),
                    (170, 170, 175),
                    1,
                )
        cv2.circle(img, _pt(hub), max(2, int(0.12 * r)), (90, 90, 95), -1)
    cv2.circle(img, _pt(rear), max(3, int(0.28 * r)), (60, 60, 65), -1)  # hub motor
    for a_, b_ in ((bb, head_low), (bb, seat), (bb, rear), ((x - 0.55 * r * f, gy - 1.8 * r), rear), (head, front)):
        _line(img, m, a_, b_, b.frame_color, tt)
    _line(img, m, head, (head[0] - 0.45 * r * f, head[1] - 0.35 * r), (40, 40, 40), max(2, int(0.1 * r)))
    _line(img, m, head, head_low, b.frame_color, tt + 1)
    cv2.ellipse(
        img,
        _pt((seat[0], seat[1] - 0.1 * r)),
        (int(0.42 * r), max(2, int(0.12 * r))),
        0,
        0,
        360,
        (30, 30, 30),
        -1,
        cv2.LINE_AA,
    )
    cv2.ellipse(m, _pt((seat[0], seat[1] - 0.1 * r)), (int(0.42 * r), max(2, int(0.12 * r))), 0, 0, 360, 1, -1)
    for hub in (rear, front):  # fenders
        cv2.ellipse(
            img,
            _pt(hub),
            (int(r * 1.08), int(r * 1.08)),
            0,
            200,
            340,
            b.frame_color,
            max(2, int(0.08 * r)),
            cv2.LINE_AA,
        )
        cv2.ellipse(m, _pt(hub), (int(r * 1.08), int(r * 1.08)), 0, 200, 340, 1, max(2, int(0.08 * r)))
    if b.battery_on_rack:
        rack_y = gy - 1.95 * r
        _line(img, m, (x - 0.75 * r * f, rack_y), (x - 2.0 * r * f, rack_y), (50, 50, 50), max(2, int(0.07 * r)))
        x1, x2 = sorted((x - 0.85 * r * f, x - 1.95 * r * f))
        pts = np.array([[x1, rack_y - 0.38 * r], [x2, rack_y - 0.38 * r], [x2, rack_y], [x1, rack_y]], np.int32)
    else:
        d = np.array(head_low) - np.array(bb)
        n = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-6) * 0.2 * r
        p0, p1 = np.array(bb) + 0.2 * d, np.array(bb) + 0.8 * d
        pts = np.array([p0 - n, p1 - n, p1 + n, p0 + n], np.int32)
    cv2.fillPoly(img, [pts], b.battery_color, cv2.LINE_AA)
    cv2.polylines(
        img,
        [pts],
        True,
        _shade(b.battery_color, 1.6) if max(b.battery_color) < 150 else _shade(b.battery_color, 0.6),
        1,
        cv2.LINE_AA,
    )
    cv2.fillPoly(m, [pts], 1)
    if b.basket:
        bx = front[0] + 0.1 * r * f
        x1, x2 = sorted((bx - 0.1 * r * f, bx + 0.8 * r * f))
        y1, y2 = head[1] - 0.1 * r, head[1] + 0.55 * r
        cv2.rectangle(img, _pt((x1, y1)), _pt((x2, y2)), (60, 60, 60), max(1, int(0.05 * r)))
        for yy in np.linspace(y1, y2, 4):
            _line(img, None, (x1, yy), (x2, yy), (60, 60, 60), 1)
        cv2.rectangle(m, _pt((x1, y1)), _pt((x2, y2)), 1, -1)
    _line(img, m, bb, (bb[0] - 0.3 * r * f, gy - 0.05 * r), (70, 70, 70), max(2, int(0.06 * r)))  # kickstand
    canvas.commit(m, EBIKE)


@dataclass
class PersonSpec:
    """A standing or walking person, feet at (x, foot_y)."""

    x: float
    foot_y: float
    height: float
    facing: int  # +1 right, -1 left, 0 towards the camera
    phase: float  # walking cycle phase, radians
    stride: float  # 0 standing .. 1 full stride
    skin: Color
    hair: Color
    top: Color
    bottom: Color
    shoes: Color
    skirt: bool = False
    backpack: Color | None = None


def draw_person(canvas: Canvas, p: PersonSpec) -> None:
    img, m = canvas.image, canvas.new_mask()
    ph, x, fy, f = p.height, p.x, p.foot_y, p.facing
    head_r = ph / 15.0
    head_c = (x + 0.02 * ph * f, fy - ph + head_r)
    sh_y, hip_y = fy - 0.81 * ph, fy - 0.47 * ph
    half_sh = (0.115 if f == 0 else 0.065) * ph
    half_hip = (0.085 if f == 0 else 0.06) * ph
    limb = max(2, int(0.065 * ph))
    arm = max(2, int(0.05 * ph))
    sw = math.sin(p.phase) * p.stride
    leg_len = hip_y - fy

    def leg(sign: float) -> None:
        hip = (x + sign * (half_hip * 0.5 if f == 0 else 0.0), hip_y)
        ang = sign * sw * 0.45
        knee = (hip[0] + math.sin(ang) * -leg_len * 0.5 * (1 if f else 0.3), hip_y - leg_len * 0.5 * math.cos(ang))
        foot = (knee[0] + math.sin(ang * 0.8) * -leg_len * 0.5 * (1 if f else 0.3), fy)
        _line(img, m, hip, knee, p.bottom, limb)
        _line(img, m, knee, foot, _shade(p.bottom, 0.92), limb)
        toe = (foot[0] + (0.06 * ph * f if f else 0.0), foot[1])
        cv2.ellipse(
            img, _pt(toe), (max(2, int(0.045 * ph)), max(2, int(0.018 * ph))), 0, 0, 360, p.shoes, -1, cv2.LINE_AA
        )
        cv2.ellipse(m, _pt(toe), (max(2, int(0.045 * ph)), max(2, int(0.018 * ph))), 0, 0, 360, 1, -1)

    def limb_arm(sign: float) -> None:
        sh = (x + sign * half_sh * (1 if f == 0 else 0.3), sh_y + 0.02 * ph)
        ang = -sign * sw * 0.5
        el = (
            sh[0] + math.sin(ang) * 0.16 * ph * (1 if f else 0.3) + (sign * 0.02 * ph if f == 0 else 0),
            sh[1] + 0.16 * ph,
        )
        ha = (el[0] + math.sin(ang * 1.3) * 0.15 * ph * (1 if f else 0.3), el[1] + 0.15 * ph)
        _line(img, m, sh, el, p.top, arm)
        _line(img, m, el, ha, p.skin if p.stride < 0.5 else p.top, arm)
        cv2.circle(img, _pt(ha), max(2, arm // 2 + 1), p.skin, -1, cv2.LINE_AA)
        cv2.circle(m, _pt(ha), max(2, arm // 2 + 1), 1, -1)

    back, fore = (-1.0, 1.0)
    leg(back)
    limb_arm(back) if f else None
    if p.skirt:
        sk = np.array(
            [
                [x - half_hip, hip_y - 0.02 * ph],
                [x + half_hip, hip_y - 0.02 * ph],
                [x + half_hip * 1.6, hip_y + 0.2 * ph],
                [x - half_hip * 1.6, hip_y + 0.2 * ph],
            ],
            np.int32,
        )
        cv2.fillPoly(img, [sk], p.bottom, cv2.LINE_AA)
        cv2.fillPoly(m, [sk], 1)
    leg(fore)
    torso = np.array(
        [
            [x - half_sh, sh_y + 0.02 * ph],
            [x - half_sh * 0.6, sh_y - 0.015 * ph],
            [x + half_sh * 0.6, sh_y - 0.015 * ph],
            [x + half_sh, sh_y + 0.02 * ph],
            [x + half_hip, hip_y + 0.03 * ph],
            [x - half_hip, hip_y + 0.03 * ph],
        ],
        np.int32,
    )
    cv2.fillPoly(img, [torso], p.top, cv2.LINE_AA)
    cv2.fillPoly(m, [torso], 1)
    if p.backpack is not None and f != 0:
        bp = np.array(
            [
                [x - f * half_sh * 0.8, sh_y + 0.03 * ph],
                [x - f * (half_sh + 0.07 * ph), sh_y + 0.05 * ph],
                [x - f * (half_sh + 0.07 * ph), sh_y + 0.25 * ph],
                [x - f * half_sh * 0.8, sh_y + 0.25 * ph],
            ],
            np.int32,
        )
        cv2.fillPoly(img, [bp], p.backpack, cv2.LINE_AA)
        cv2.fillPoly(m, [bp], 1)
    _line(img, m, (x, sh_y - 0.03 * ph), (x, head_c[1] + head_r * 0.8), p.skin, max(2, int(0.04 * ph)))  # neck
    limb_arm(fore)
    if f == 0:
        limb_arm(back)
    axes = (max(2, int(head_r * 0.85)), max(2, int(head_r)))
    cv2.ellipse(img, _pt(head_c), axes, 0, 0, 360, p.skin, -1, cv2.LINE_AA)
    cv2.ellipse(m, _pt(head_c), axes, 0, 0, 360, 1, -1)
    cv2.ellipse(
        img,
        _pt((head_c[0] - 0.2 * head_r * f, head_c[1] - 0.15 * head_r)),
        (axes[0] + 1, axes[1]),
        0,
        180,
        360,
        p.hair,
        -1,
        cv2.LINE_AA,
    )
    cv2.ellipse(
        m, _pt((head_c[0] - 0.2 * head_r * f, head_c[1] - 0.15 * head_r)), (axes[0] + 1, axes[1]), 0, 180, 360, 1, -1
    )
    canvas.commit(m, PERSON)


def random_person(rng: np.random.Generator, x: float, foot_y: float, height: float) -> PersonSpec:
    def cloth() -> Color:
        return _hsv(rng.uniform(0, 180), rng.uniform(0, 230), rng.uniform(25, 235))

    return PersonSpec(
        x=x,
        foot_y=foot_y,
        height=height,
        facing=int(rng.choice([-1, 0, 1])),
        phase=float(rng.uniform(0, 2 * math.pi)),
        stride=float(rng.choice([0.0, rng.uniform(0.3, 1.0)])),
        skin=_jitter(rng, SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], 10),
        hair=HAIR_COLORS[int(rng.integers(len(HAIR_COLORS)))],
        top=cloth(),
        bottom=cloth(),
        shoes=_jitter(rng, (30, 30, 30), 25) if rng.random() < 0.7 else (230, 230, 230),
        skirt=bool(rng.random() < 0.15),
        backpack=cloth() if rng.random() < 0.25 else None,
    )


def random_bike(rng: np.random.Generator, x: float, ground_y: float, r: float) -> BikeSpec:
    frame = _hsv(rng.uniform(0, 180), rng.uniform(0, 230), rng.uniform(30, 240))
    battery = [(30, 30, 30), (60, 60, 60), (190, 190, 195), _shade(frame, 0.7)][int(rng.integers(4))]
    return BikeSpec(
        x=x,
        ground_y=ground_y,
        r=r,
        facing=int(rng.choice([-1, 1])),
        frame_color=frame,
        battery_color=_jitter(rng, battery, 8),
        battery_on_rack=bool(rng.random() < 0.5),
        basket=bool(rng.random() < 0.3),
        mag_wheels=bool(rng.random() < 0.4),
    )


CABLE_COLORS: tuple[Color, ...] = (
    (25, 25, 25),
    (45, 45, 50),
    (235, 235, 235),
    (210, 210, 215),
    (20, 110, 240),
    (30, 140, 250),
    (60, 60, 200),
)


def random_cable(
    rng: np.random.Generator, sill: Point, end: Point, ground_y: float, widths: tuple[int, int]
) -> CableSpec:
    """A cable from a window sill to `end`: straight down the wall or a free flying lead."""
    sx, sy = sill
    ex, ey = end
    style = rng.random()
    pts: list[Point] = [sill]
    sags: list[float] = []
    if style < 0.45 and ey >= ground_y - 5:  # down the wall, along the ground to the end
        foot = (sx + rng.uniform(-40, 40), ground_y + rng.uniform(2, 14))
        mid = (sx + rng.uniform(-25, 25), sy + (foot[1] - sy) * rng.uniform(0.3, 0.7))
        pts += [mid, foot, end]
        sags += [rng.uniform(-10, 10), rng.uniform(-10, 10), rng.uniform(-30, 30)]
    elif style < 0.8:  # flying lead: one long sagging span
        pts.append(end)
        sags.append(rng.uniform(0.05, 0.35) * math.hypot(ex - sx, ey - sy))
    else:  # tied at a lower sill / hook first
        hook = (sx + (ex - sx) * rng.uniform(0.2, 0.6), sy + (ey - sy) * rng.uniform(0.2, 0.6))
        pts += [hook, end]
        sags += [rng.uniform(5, 60), rng.uniform(5, 80)]
    return CableSpec(
        points=pts,
        sags=sags,
        width=int(rng.integers(widths[0], widths[1] + 1)),
        color=_jitter(rng, CABLE_COLORS[int(rng.integers(len(CABLE_COLORS)))], 10),
        wobble_seed=int(rng.integers(1 << 31)),
    )


@dataclass
class Layout:
    """What stands in front of a background, back to front."""

    cables: list[CableSpec] = field(default_factory=list)
    objects: list[BikeSpec | PersonSpec] = field(default_factory=list)


def perspective_scale(y: float, ground_y: float, height: int) -> float:
    """Apparent size factor of something standing at y (bigger nearer the camera)."""
    return 0.55 + 0.85 * float(np.clip((y - ground_y) / max(1.0, height - ground_y), 0, 1.3))


def sample_layout(rng: np.random.Generator, bg: Background, cfg: SceneConfig) -> Layout:
    """Place bikes, persons and cables plausibly against a background."""
    w, h = cfg.size
    lay = Layout()
    if rng.random() < cfg.empty_prob:
        return lay
    n_bikes = int(rng.integers(0, cfg.max_bikes + 1))
    bikes: list[BikeSpec] = []
    for _ in range(n_bikes):
        y = bg.ground_y + rng.uniform(8, max(10.0, (h - bg.ground_y) * 0.85))
        r = 36.0 * perspective_scale(y, bg.ground_y, h) * rng.uniform(0.85, 1.15)
        bikes.append(random_bike(rng, rng.uniform(2 * r, w - 2 * r), y, r))
    n_cables = int(rng.integers(0, cfg.max_cables + 1)) if rng.random() < 0.85 else 0
    if n_cables and not bikes and rng.random() < 0.7:  # cables usually lead to a bike
        y = bg.ground_y + rng.uniform(8, max(10.0, (h - bg.ground_y) * 0.5))
        r = 36.0 * perspective_scale(y, bg.ground_y, h)
        bikes.append(random_bike(rng, rng.uniform(2 * r, w - 2 * r), y, r))
    for i in range(n_cables if bg.sills else 0):
        if bikes and rng.random() < 0.85:
            bike = bikes[i % len(bikes)]
            end = bike.battery_point()
            near = [s for s in bg.sills if abs(s[0] - end[0]) < 500]
            sill = near[int(rng.integers(len(near)))] if near else bg.sills[int(rng.integers(len(bg.sills)))]
        else:
            sill = bg.sills[int(rng.integers(len(bg.sills)))]
            end = (sill[0] + rng.uniform(-250, 250), bg.ground_y + rng.uniform(5, max(6.0, h - bg.ground_y - 5)))
        lay.cables.append(random_cable(rng, sill, end, bg.ground_y, cfg.cable_width))
    persons: list[PersonSpec] = []
    for _ in range(int(rng.integers(0, cfg.max_persons + 1))):
        y = bg.ground_y + rng.uniform(5, (h - bg.ground_y) * 1.15)
        ph = 250.0 * perspective_scale(y, bg.ground_y, h) * rng.uniform(0.85, 1.1)
        persons.append(random_person(rng, rng.uniform(-0.03 * w, 1.03 * w), y, ph))
    objs: list[BikeSpec | PersonSpec] = [*bikes, *persons]
    objs.sort(key=lambda o: o.ground_y if isinstance(o, BikeSpec) else o.foot_y)
    lay.objects = objs
    return lay


def draw_layout(canvas: Canvas, layout: Layout, cfg: SceneConfig) -> None:
    """Cables first (they lie behind whatever stands on the ground), then objects far to near."""
    for c in layout.cables:
        draw_cable(canvas, c, cfg.cable_label_width)
    for o in layout.objects:
        if isinstance(o, BikeSpec):
            draw_ebike(canvas, o)
        else:
            draw_person(canvas, o)


def draw_foreground(rng: np.random.Generator, canvas: Canvas) -> None:
    """Unlabelled occluders in front of everything: a pole, a tree trunk, a sign."""
    h, w = canvas.shape
    if rng.random() < 0.25:
        x = int(rng.uniform(0, w))
        pw = int(rng.integers(10, 30))
        m = canvas.new_mask()
        c = _jitter(rng, [(90, 90, 90), (40, 70, 90), (60, 100, 60)][int(rng.integers(3))], 15)
        cv2.rectangle(canvas.image, (x, 0), (x + pw, h), c, -1)
        cv2.line(canvas.image, (x + pw // 3, 0), (x + pw // 3, h), _shade(c, 1.3), max(1, pw // 6))
        cv2.rectangle(m, (x, 0), (x + pw, h), 1, -1)
        canvas.commit(m, None)
    if rng.random() < 0.1:
        m = canvas.new_mask()
        cx, cy = int(rng.uniform(0, w)), int(rng.uniform(0, h * 0.6))
        ax = (int(rng.integers(60, 200)), int(rng.integers(40, 140)))
        col = _hsv(rng.uniform(35, 75), rng.uniform(80, 200), rng.uniform(40, 120))
        cv2.ellipse(canvas.image, (cx, cy), ax, 0, 0, 360, col, -1)
        cv2.ellipse(m, (cx, cy), ax, 0, 0, 360, 1, -1)
        canvas.commit(m, None)


# --------------------------------------------------------------------------------------
# Camera: light, shadows, blur, noise, compression
# --------------------------------------------------------------------------------------


def degrade(
    rng: np.random.Generator, img: np.ndarray, jpeg_quality: tuple[int, int] = (40, 95), jpeg: bool = True
) -> np.ndarray:
    """Apply camera-like lighting, cast shadows, vignetting, blur, sensor noise and JPEG."""
    h, w = img.shape[:2]
    small = np.ones((h // 8, w // 8), np.float32)
    for _ in range(int(rng.integers(0, 3))):  # cast shadows (buildings, trees)
        pts = (rng.uniform(-0.2, 1.2, (int(rng.integers(3, 6)), 2)) * [w // 8, h // 8]).astype(np.int32)
        cv2.fillPoly(small, [pts], float(rng.uniform(0.55, 0.85)))
    small = cv2.GaussianBlur(small, (0, 0), 1.5)
    yy, xx = np.mgrid[0 : h // 8, 0 : w // 8].astype(np.float32)
    r2 = ((xx / (w / 16) - 1) ** 2 + (yy / (h / 16) - 1) ** 2) / 2
    small *= 1.0 - rng.uniform(0, 0.35) * r2  # vignetting
    gain = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    night = rng.random() < 0.15
    level = rng.uniform(0.3, 0.55) if night else rng.uniform(0.7, 1.25)
    tint = np.array([rng.uniform(0.85, 1.15), rng.uniform(0.92, 1.08), rng.uniform(0.85, 1.15)], np.float32) * level
    out = img.astype(np.float32)
    out *= gain[..., None]
    out *= tint
    out += rng.uniform(-15, 15)
    sigma = rng.uniform(1.0, 7.0) * (1.8 if night else 1.0)
    out += rng.standard_normal((h, w, 1), dtype=np.float32) * sigma
    out = np.clip(out, 0, 255).astype(np.uint8)
    r = rng.random()
    if r < 0.4:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.4, 1.3))
    elif r < 0.55:
        k = int(rng.integers(3, 8))
        kern = np.zeros((k, k), np.float32)
        kern[k // 2, :] = 1.0 / k
        rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
        kern = cv2.warpAffine(kern, rot, (k, k))
        out = cv2.filter2D(out, -1, kern / max(kern.sum(), 1e-6))
    if jpeg:
        q = int(rng.integers(jpeg_quality[0], jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


def make_rng(seed: SeedLike) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def generate_scene(seed: SeedLike, config: SceneConfig | None = None) -> Scene:
    """Render one labelled frame; the same seed and config always give the same scene."""
    cfg = config or SceneConfig()
    rng = make_rng(seed)
    bg = render_background(rng, cfg.size)
    canvas = Canvas(bg.image)
    draw_layout(canvas, sample_layout(rng, bg, cfg), cfg)
    draw_foreground(rng, canvas)
    instances = canvas.instances(cfg.min_area, cfg.min_component_area)
    image = degrade(rng, canvas.image, cfg.jpeg_quality) if cfg.degrade else canvas.image
    return Scene(image, instances)


def generate_scenes(seeds: Sequence[int], config: SceneConfig | None = None) -> list[Scene]:
    """Several scenes, one per seed."""
    return [generate_scene(s, config) for s in seeds]


__all__ = [
    "CLASS_NAMES",
    "Background",
    "BikeSpec",
    "CableSpec",
    "Canvas",
    "Instance",
    "Layout",
    "PersonSpec",
    "Scene",
    "SceneConfig",
    "degrade",
    "draw_cable",
    "draw_ebike",
    "draw_foreground",
    "draw_layout",
    "draw_person",
    "generate_scene",
    "generate_scenes",
    "make_rng",
    "mask_to_polygon",
    "perspective_scale",
    "polygon_to_mask",
    "random_bike",
    "random_cable",
    "random_person",
    "render_background",
    "sag_curve",
    "sample_layout",
]
