"""How alike a predicted track and a detection are, and the one-to-one assignment that follows.

Similarity is the larger of the box IoU of the track's predicted box and the mask IoU of its last
mask, moved by the predicted motion, with the detection's mask: a thin diagonal cable that slides
along itself keeps much of its mask overlap while its box overlap falls away quadratically. The
mask IoU also breaks ties: where boxes are ambiguous (two cables crossing share a box)
``mask_weight`` times the mask IoU is added to the score the assignment maximises, so the mask that
agrees wins.

Cost: mask IoU works on the box crops (``trtseg.masks``), never on full frames, and only for pairs
where it can change the outcome: crops that touch, mask areas that allow the threshold, and either
a box IoU below the threshold or a track or detection with more than one candidate. An object
alone in its neighbourhood, the common case, costs no mask work at all.

Also here: ``suppress`` finds an object reported twice in one frame (masks that agree), and
``second_sighting`` pairs a track seen once with a detection near it by distance, for inference
rates at which a walker moves past its own width between frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import lap
import numpy as np

from trtseg.masks import InstanceMasks


@dataclass(slots=True)
class TrackMask:
    """A track's last mask crop; its area is counted the first time it is needed."""

    mask: np.ndarray  # (h, w) bool
    area: int = -1

    def pixels(self) -> int:
        if self.area < 0:
            self.area = int(np.count_nonzero(self.mask))
        return self.area

    def detached(self) -> TrackMask:
        """The same mask owning its pixels: a track kept while lost must not pin a whole batch's buffer."""
        if self.mask.base is None:
            return self
        return TrackMask(np.array(self.mask), self.area)


class FrameMasks:
    """The masks of one frame's candidate detections (column ``j`` is detection ``columns[j]``)."""

    def __init__(self, masks: InstanceMasks | None, columns: np.ndarray) -> None:
        self.present = masks is not None and len(columns) > 0
        self.rects = np.zeros((len(columns), 4), np.int64)
        self._where: list[list[int]] = []
        self._data = np.zeros(0, bool)
        self._masks: dict[int, TrackMask] = {}
        if masks is not None and self.present:
            self.rects = masks.rects[columns].astype(np.int64)
            self._where = np.column_stack([self.rects[:, 2:], masks.offsets[columns]]).tolist()
            self._data = masks.data

    def mask(self, j: int) -> TrackMask:
        """Column ``j``'s crop (a view of the frame's buffer, see ``TrackMask.detached``), made once."""
        found = self._masks.get(j)
        if found is None:
            w, h, start = self._where[j]
            found = self._masks[j] = TrackMask(self._data[start : start + w * h].reshape(h, w))
        return found

    def geometry(self, j: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(K, 6) x0, y0, w, h and the box centre the masks of columns ``j`` were seen with."""
        if not self.present:
            return np.zeros((len(j), 6))
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2.0
        return np.concatenate([self.rects[j].astype(np.float64), centres], axis=1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of xyxy boxes (float64)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ax1, ay1, ax2, ay2 = a[:, 0:1], a[:, 1:2], a[:, 2:3], a[:, 3:4]
    bx1, by1, bx2, by2 = b.T
    iw = np.maximum(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0.0)
    inter = iw * np.maximum(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0.0)
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / np.maximum(union, 1e-9)


def crop_iou(a: TrackMask, ax0: int, ay0: int, b: TrackMask, bx0: int, by0: int) -> float:
    """IoU of two masks placed at their origins, counted on the crops' common window only."""
    (ah, aw), (bh, bw) = a.mask.shape, b.mask.shape
    x0, x1 = max(ax0, bx0), min(ax0 + aw, bx0 + bw)
    y0, y1 = max(ay0, by0), min(ay0 + ah, by0 + bh)
    total = a.pixels() + b.pixels()
    if x0 >= x1 or y0 >= y1 or total == 0:
        return 0.0
    inter = np.count_nonzero(
        a.mask[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0] & b.mask[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0]
    )
    return inter / (total - inter)


def _pairs(selected: np.ndarray) -> list[tuple[int, int]]:
    rows, cols = np.nonzero(selected)
    return list(zip(rows.tolist(), cols.tolist(), strict=True))


def similarity(
    predicted: np.ndarray,
    track_geometry: np.ndarray,
    track_masks: list[TrackMask | None],
    frame_masks: FrameMasks,
    det_boxes: np.ndarray,
    allowed: np.ndarray,
    threshold: float,
    mask_weight: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(similarity, score), both (T, D): similarity = max(box IoU, mask IoU), -1 where not ``allowed``;
    score = similarity + mask_weight * mask IoU, what the assignment maximises.

    ``predicted``: (T, 4) xyxy predicted boxes; ``track_geometry``: (T, 6) origin, size and box centre
    of each track's last mask (size 0: none) and ``track_masks`` the crops; ``frame_masks``: the
    detections' masks (may hold none); ``allowed``: (T, D) bool, e.g. same class.
    """
    box = box_iou(predicted, det_boxes)
    strong = allowed & (box >= threshold)
    sim = np.where(allowed, box, -1.0)
    if not frame_masks.present or not track_geometry[:, 2].any():
        return sim, sim
    # Each track's mask moved by its predicted motion since the mask was seen: x0, y0, x1, y1.
    shift = np.rint((predicted[:, :2] + predicted[:, 2:]) / 2.0 - track_geometry[:, 4:6])
    start = track_geometry[:, :2] + shift
    end = start + track_geometry[:, 2:4]
    rects = frame_masks.rects
    # The crops' common window (moved track crop and detection crop): no intersection is larger.
    overlap = np.minimum(end[:, None, :], (rects[:, :2] + rects[:, 2:])[None]) - np.maximum(
        start[:, None, :], rects[None, :, :2]
    )
    window = np.maximum(overlap, 0.0).prod(axis=2)
    touch = allowed & (window > 0)
    if not touch.any():
        return sim, sim
    origin = start.astype(np.int64).tolist()
    frame_origin = rects[:, :2].tolist()
    mask_iou = np.zeros_like(box)
    # Pairs only the mask can make admissible, where IoU <= min(window, a, b) / max(a, b) allows it.
    admitted = np.zeros_like(strong)
    for t, j in _pairs(touch & ~strong):
        a, b = track_masks[t], frame_masks.mask(j)
        if a is None:
            continue
        area_a, area_b = a.pixels(), b.pixels()
        if min(window[t, j], area_a, area_b) >= threshold * max(area_a, area_b, 1):
            mask_iou[t, j] = crop_iou(a, *origin[t], b, *frame_origin[j])
            admitted[t, j] = mask_iou[t, j] >= threshold
    # A strong pair alone in its row and column is matched whatever its mask says: only crowded ones count.
    admissible = strong | admitted
    crowded = (admissible.sum(axis=1)[:, None] > 1) | (admissible.sum(axis=0)[None, :] > 1)
    for t, j in _pairs(touch & strong & crowded):
        a = track_masks[t]
        assert a is not None
        mask_iou[t, j] = crop_iou(a, *origin[t], frame_masks.mask(j), *frame_origin[j])
    sim = np.where(allowed, np.maximum(box, mask_iou), -1.0)
    return sim, sim + mask_weight * mask_iou


def suppress(
    ordered: np.ndarray,
    kept: np.ndarray,
    class_ids: np.ndarray,
    frame_masks: FrameMasks,
    threshold: float,
    measure: str,
) -> np.ndarray:
    """The columns of ``ordered`` (best first) that are not an object ``kept`` or a better one already is.

    The segmenter sometimes reports one object twice: a long cable as a whole and as its upper part,
    or again when someone walks in front of it, with boxes different enough to survive box NMS while
    the masks agree. A column is such a second report when, against a kept column or an earlier kept
    one of ``ordered`` of the same class, its mask IoU (``measure="iou"``) or the share of its own
    mask the other covers (``"cover"``) is at least ``threshold``. Only pairs whose crops intersect
    enough to reach the threshold are compared pixel by pixel. Returns the columns kept, sorted.
    """
    if len(ordered) == 0:
        return ordered
    cols = np.concatenate([np.asarray(kept, np.int64), np.asarray(ordered, np.int64)])
    first = len(cols) - len(ordered)  # rows from here on may be dropped
    rects = frame_masks.rects[cols]
    ends = rects[:, :2] + rects[:, 2:]
    span = np.minimum(ends[:, None], ends[None]) - np.maximum(rects[:, None, :2], rects[None, :, :2])
    window = np.maximum(span, 0).prod(axis=2)  # no two masks share more pixels than their crops
    classes = class_ids[cols]
    maybe = (window > 0) & (classes[:, None] == classes[None, :]) & np.tri(len(cols), k=-1, dtype=bool)
    maybe[:first] = False
    if not maybe.any():
        return np.sort(ordered)
    dropped = np.zeros(len(cols), bool)
    for i in np.flatnonzero(maybe.any(axis=1)).tolist():
        for j in np.flatnonzero(maybe[i] & ~dropped).tolist():
            if _repeats(frame_masks, int(cols[i]), int(cols[j]), int(window[i, j]), threshold, measure):
                dropped[i] = True
                break
    return np.sort(cols[first:][~dropped[first:]])


def _repeats(frame_masks: FrameMasks, i: int, j: int, window: int, threshold: float, measure: str) -> bool:
    """Whether column ``i``'s mask repeats column ``j``'s (see ``suppress``); ``window``: their crops' overlap."""
    a, b = frame_masks.mask(i), frame_masks.mask(j)
    if a.pixels() == 0:
        return False
    # IoU >= t needs an intersection of t times the larger mask; covering t of a, t times a.
    if window < threshold * (a.pixels() if measure == "cover" else max(a.pixels(), b.pixels())):
        return False
    (ax, ay), (bx, by) = frame_masks.rects[i, :2].tolist(), frame_masks.rects[j, :2].tolist()
    iou = crop_iou(a, ax, ay, b, bx, by)
    if measure == "cover":  # the intersection over a's own area, from the IoU: inter = iou (a + b) / (1 + iou)
        return iou * (a.pixels() + b.pixels()) / (1.0 + iou) >= threshold * a.pixels() - 1e-9
    return iou >= threshold - 1e-12


def assign(
    sim: np.ndarray, score: np.ndarray, threshold: float, mask_weight: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Most total score, one detection per track, only pairs with ``sim >= threshold`` (and above 0).

    As ByteTrack does, leaving a track and a detection unmatched costs as much as a pair at the
    threshold, so one good pair beats two poor ones. Returns (matches (K, 2) of (row, column),
    unmatched rows, unmatched columns).
    """
    rows, cols = sim.shape
    if rows == 0 or cols == 0:
        return np.zeros((0, 2), np.int64), np.arange(rows), np.arange(cols)
    admissible = (sim >= threshold) & (sim > 0.0)
    if (admissible.sum(axis=0) <= 1).all() and (admissible.sum(axis=1) <= 1).all():
        # No track or detection has a rival (the common case): the admissible pairs are the answer.
        matches = np.argwhere(admissible)
    else:
        matches = _solve(admissible, score, threshold, mask_weight)
    free_rows = np.ones(rows, bool)
    free_rows[matches[:, 0]] = False
    free_cols = np.ones(cols, bool)
    free_cols[matches[:, 1]] = False
    return matches, np.flatnonzero(free_rows), np.flatnonzero(free_cols)


def _solve(admissible: np.ndarray, score: np.ndarray, threshold: float, mask_weight: float) -> np.ndarray:
    """(K, 2) matches of least total cost by Jonker-Volgenant (``lap``), ByteTrack's cost limit."""
    top = 1.0 + mask_weight
    limit = top - threshold + 1e-9
    cost = np.where(admissible, top - score, limit + 1.0)
    _, x, _ = lap.lapjv(cost, extend_cost=True, cost_limit=limit)
    matched_rows = np.flatnonzero(x >= 0)
    matched_cols = x[matched_rows].astype(np.int64)
    ok = admissible[matched_rows, matched_cols]
    return np.stack([matched_rows[ok], matched_cols[ok]], axis=1)


def second_sighting(states: np.ndarray, measured: np.ndarray, allowed: np.ndarray, reach: float) -> np.ndarray:
    """(K, 2) pairs of tracks seen once and detections near enough to be the same object seen again.

    At a low inference rate a walker moves more than its own width between two frames, so boxes do
    not overlap, and a track seen once has no speed yet to predict it with. ``states``: (T, >= 4)
    centre x, y, width, height of such tracks; ``measured``: (D, 4) the detections as centre and size;
    ``allowed``: (T, D), e.g. same class; ``reach``: how far an object may have gone, in its own size
    (the larger of width and height), since it was seen. Heights must agree within a factor of 1.5 and
    widths within 2.5 (a walker's width swings with the stride). The pairs of least total distance.
    """
    size = np.maximum(
        np.maximum(states[:, None, 2], measured[None, :, 2]), np.maximum(states[:, None, 3], measured[None, :, 3])
    )
    dx = states[:, None, 0] - measured[None, :, 0]
    dy = states[:, None, 1] - measured[None, :, 1]
    dist = np.hypot(dx, dy) / np.maximum(size, 1.0)
    rh = states[:, None, 3] / np.maximum(measured[None, :, 3], 1.0)
    rw = states[:, None, 2] / np.maximum(measured[None, :, 2], 1.0)
    ok = allowed & (dist <= reach) & (rh <= 1.5) & (rh >= 1 / 1.5) & (rw <= 2.5) & (rw >= 1 / 2.5)
    if not ok.any():
        return np.zeros((0, 2), np.int64)
    cost = np.where(ok, dist, reach + 1.0)
    _, x, _ = lap.lapjv(cost, extend_cost=True, cost_limit=reach + 1e-9)
    rows = np.flatnonzero(x >= 0)
    cols = x[rows].astype(np.int64)
    keep = ok[rows, cols]
    return np.stack([rows[keep], cols[keep]], axis=1)
