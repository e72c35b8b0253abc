"""Zones and lines against instances: mask fractions, anchor points, sides of a line.

Membership by mask is what a segmentation system can do and box-based systems cannot: the share of
an instance's mask pixels that lies inside a polygon, counted on the mask's own crop against the
polygon rasterised once per frame size. A thin diagonal cable whose box covers half a facade may
have 5 % of its pixels in a zone that holds its box's bottom-centre.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from trtseg.detections import Detections

Anchor = str  # "bottom_center" | "center"


class ZoneRaster:
    """A polygon in normalised coordinates, rasterised (and cached) per frame size."""

    def __init__(self, name: str, points: Sequence[tuple[float, float]]) -> None:
        self.name = name
        self.points = np.asarray(points, np.float64).reshape(-1, 2)
        self._cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def _raster(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        found = self._cache.get(shape)
        if found is None:
            height, width = shape
            pixels = np.round(self.points * (width, height)).astype(np.int32)
            canvas = np.zeros(shape, np.uint8)
            cv2.fillPoly(canvas, [pixels], 1)
            found = (canvas.view(bool), cv2.integral(canvas, sdepth=cv2.CV_32S))
            self._cache = {shape: found}  # one size at a time: a camera changes size rarely
        return found

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """(H, W) bool: the polygon's pixels at this frame size."""
        return self._raster(shape)[0]

    def pixel_polygon(self, shape: tuple[int, int]) -> np.ndarray:
        """(K, 1, 2) int32 vertices in pixels, for drawing."""
        height, width = shape
        return np.round(self.points * (width, height)).astype(np.int32).reshape(-1, 1, 2)

    def inside_fractions(self, detections: Detections) -> np.ndarray:
        """(N,) share of each instance's mask inside the polygon (of its box, when there are no masks)."""
        shape = detections.frame_shape
        zone, integral = self._raster(shape)
        out = np.zeros(len(detections), np.float64)
        masks = detections.masks
        if masks is not None:
            # A crop wholly inside or outside the polygon (its window's zone pixels, from the integral
            # image, are all or none) needs no pixel count: most objects, most frames.
            rects, offsets, data = masks.rects.tolist(), masks.offsets.tolist(), masks.data
            for k, ((x0, y0, w, h), start) in enumerate(zip(rects, offsets, strict=True)):
                if not w or not h:
                    continue
                covered = int(integral[y0 + h, x0 + w] - integral[y0, x0 + w] - integral[y0 + h, x0] + integral[y0, x0])
                if covered == 0:
                    continue
                crop = data[start : start + w * h].reshape(h, w)
                if covered == w * h:
                    out[k] = 1.0 if crop.any() else 0.0
                    continue
                area = np.count_nonzero(crop)
                if area:
                    out[k] = np.count_nonzero(zone[y0 : y0 + h, x0 : x0 + w] & crop) / area
            return out
        height, width = shape
        for k, (x1, y1, x2, y2) in enumerate(detections.boxes.tolist()):
            c0, r0 = max(0, int(x1)), max(0, int(y1))
            c1, r1 = min(width, int(np.ceil(x2))), min(height, int(np.ceil(y2)))
            if c1 > c0 and r1 > r0:
                out[k] = float(zone[r0:r1, c0:c1].mean())
        return out

    def contains_points(self, points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """(N,) bool: whether each normalised (x, y) point lies inside the polygon."""
        height, width = shape
        zone = self.mask(shape)
        xs = np.clip((points[:, 0] * width).astype(np.int64), 0, width - 1)
        ys = np.clip((points[:, 1] * height).astype(np.int64), 0, height - 1)
        return zone[ys, xs]


def anchor_points(detections: Detections, anchor: Anchor) -> np.ndarray:
    """(N, 2) normalised anchor of each box: its bottom-centre or its centre."""
    height, width = detections.frame_shape
    boxes = detections.boxes.astype(np.float64)
    xs = (boxes[:, 0] + boxes[:, 2]) / 2.0
    ys = boxes[:, 3] if anchor == "bottom_center" else (boxes[:, 1] + boxes[:, 3]) / 2.0
    return np.stack([xs / max(width, 1), ys / max(height, 1)], axis=1)


def side_of_line(point: tuple[float, float], line: Sequence[tuple[float, float]]) -> int:
    """+1 left of the line (walking from its first point to its second), -1 right, 0 on it.

    Image coordinates have y pointing down, so 'left' is where the cross product is negative.
    """
    (ax, ay), (bx, by) = line
    cross = (bx - ax) * (point[1] - ay) - (by - ay) * (point[0] - ax)
    if abs(cross) < 1e-12:
        return 0
    return 1 if cross < 0 else -1


def segments_intersect(
    p1: tuple[float, float], p2: tuple[float, float], q1: tuple[float, float], q2: tuple[float, float]
) -> bool:
    """Whether segment p1-p2 meets segment q1-q2 (touching counts)."""

    def orient(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> float:
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
    d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
    if d1 * d2 > 0 or d3 * d4 > 0:
        return False
    if d1 == d2 == 0:  # collinear: overlapping projections
        return max(min(p1[0], p2[0]), min(q1[0], q2[0])) <= min(max(p1[0], p2[0]), max(q1[0], q2[0])) and max(
            min(p1[1], p2[1]), min(q1[1], q2[1])
        ) <= min(max(p1[1], p2[1]), max(q1[1], q2[1]))
    return True
