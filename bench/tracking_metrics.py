"""Scoring tracker output against the generated sequences' truth: HOTA, IDF1, MOTA, ID switches.

Matching: a reported object and a true one of the same class are similar by their box IoU, except
charging cables, which are compared by mask IoU (a thin diagonal cable's box is mostly wall, and two
crossing cables have nearly the same box). A box match needs IoU >= 0.5 (``MATCH_IOU``); a cable match
mask IoU >= 0.3 (``CABLE_MATCH_IOU``): the truth of a cable is a band of a conventional 16 px around
its centre line and the model predicts such a band on a grid 8 px coarse, so a correct detection
offset by 5 px is already at 0.5, while two different cables that cross share only the crossing
patch (IoU well under 0.1). HOTA, which sweeps every threshold from 0.05 to 0.95, needs neither. IDF1,
MOTA and ID switches are computed by ``motmetrics`` (CLEAR MOT and identity metrics); HOTA (with DetA
and AssA) by ``hota``, a port of TrackEval's HOTA (Luiten et al., IJCV 2020; TrackEval is MIT
licensed) because TrackEval's PyPI releases pull in the GUI build of OpenCV next to the headless one
trtseg uses. ``tests/bench/test_bench_tracking.py`` checks the port against TrackEval where it is
installed.

As in MOTChallenge, objects the truth marks as too occluded to count (``FrameTruth.ignored``) count
neither way: a reported object that matches one is dropped before scoring, a missed one is no miss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from datasets.scenes import CABLE
from datasets.sequences import FrameTruth, TruthObject

MATCH_IOU = 0.5
CABLE_MATCH_IOU = 0.3
MASK_CLASSES = frozenset({CABLE})
HOTA_ALPHAS = np.arange(0.05, 0.99, 0.05)
_EPS = np.finfo("float").eps

Crop = tuple[int, int, np.ndarray]  # x0, y0, bool mask


@dataclass
class FrameTracks:
    """What a tracker reported for one frame: ids, classes, boxes (xyxy) and mask crops (or None)."""

    ids: np.ndarray
    class_ids: np.ndarray
    boxes: np.ndarray
    masks: list[Crop] | None = None

    @classmethod
    def empty(cls) -> FrameTracks:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4), np.float64), [])

    @classmethod
    def from_detections(cls, det: Any) -> FrameTracks:
        """From trtseg ``Detections`` carrying tracker ids."""
        if det is None or len(det) == 0:
            return cls.empty()
        ids = det.tracker_ids if det.tracker_ids is not None else np.full(len(det), -1)
        masks = None if det.masks is None else [(int(x0), int(y0), np.asarray(m, bool)) for x0, y0, m in det.masks]
        return cls(
            np.asarray(ids, np.int64), np.asarray(det.class_ids, np.int64), np.asarray(det.boxes, np.float64), masks
        )

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, keep: np.ndarray) -> FrameTracks:
        rows = np.flatnonzero(keep)
        masks = None if self.masks is None else [self.masks[int(r)] for r in rows]
        return FrameTracks(self.ids[rows], self.class_ids[rows], self.boxes[rows], masks)


# ----------------------------------------------------------------------------- similarity
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of xyxy boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1, y1 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    x2, y2 = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: np.clip(r[:, 2] - r[:, 0], 0, None) * np.clip(r[:, 3] - r[:, 1], 0, None)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def crop_iou(a: Crop, b: Crop) -> float:
    """IoU of two masks given as crops of one frame."""
    (ax, ay, am), (bx, by, bm) = a, b
    x0, y0 = max(ax, bx), max(ay, by)
    x1, y1 = min(ax + am.shape[1], bx + bm.shape[1]), min(ay + am.shape[0], by + bm.shape[0])
    inter = 0
    if x1 > x0 and y1 > y0:
        inter = int(
            np.count_nonzero(am[y0 - ay : y1 - ay, x0 - ax : x1 - ax] & bm[y0 - by : y1 - by, x0 - bx : x1 - bx])
        )
    union = int(np.count_nonzero(am)) + int(np.count_nonzero(bm)) - inter
    return inter / union if union else 0.0


def similarity(truth: list[TruthObject], tracks: FrameTracks) -> np.ndarray:
    """(G, T): box IoU, mask IoU for cables (box IoU when a tracker gave no masks), 0 across classes."""
    sim = np.zeros((len(truth), len(tracks)))
    if not truth or not len(tracks):
        return sim
    gt_boxes = np.array([o.box for o in truth], np.float64)
    boxes = box_iou(gt_boxes, tracks.boxes)
    for g, obj in enumerate(truth):
        for k in range(len(tracks)):
            if int(tracks.class_ids[k]) != obj.class_id or boxes[g, k] <= 0.0:
                continue
            if obj.class_id in MASK_CLASSES and tracks.masks is not None:
                sim[g, k] = crop_iou((obj.x0, obj.y0, obj.mask), tracks.masks[k])
            else:
                sim[g, k] = boxes[g, k]
    return sim


def thresholds(truth: list[TruthObject], cable_iou: float = CABLE_MATCH_IOU) -> np.ndarray:
    """(G, 1) least similarity for a match with each truth object."""
    return np.array([[cable_iou if o.class_id in MASK_CLASSES else MATCH_IOU] for o in truth]).reshape(-1, 1)


def drop_ignored(truth: FrameTruth, tracks: FrameTracks, cable_iou: float = CABLE_MATCH_IOU) -> FrameTracks:
    """Remove reported objects that match an ignored (too occluded) truth object rather than a counted one."""
    if not truth.ignored or not len(tracks):
        return tracks
    from scipy.optimize import linear_sum_assignment

    everything = truth.all()
    sim = similarity(everything, tracks)
    hit = sim >= thresholds(everything, cable_iou)
    rows, cols = linear_sum_assignment(-np.where(hit, sim, 0.0))
    keep = np.ones(len(tracks), bool)
    counted = len(truth.objects)
    matched = {int(c) for r, c in zip(rows, cols, strict=True) if hit[r, c]}
    for r, c in zip(rows, cols, strict=True):
        if hit[r, c] and r >= counted:
            keep[c] = False
    for c in range(len(tracks)):
        if c not in matched and hit[counted:, c].any():
            keep[c] = False
    return tracks.subset(keep)


# ----------------------------------------------------------------------------- HOTA (TrackEval's algorithm)
def hota(gt_ids: list[np.ndarray], tr_ids: list[np.ndarray], sims: list[np.ndarray]) -> dict[str, float]:
    """HOTA, DetA, AssA, LocA averaged over the localisation thresholds 0.05..0.95, as TrackEval computes them.

    ``gt_ids[t]``, ``tr_ids[t]``: the ids present in frame t; ``sims[t]``: their (G, T) similarity.
    """
    gmap = {g: k for k, g in enumerate(sorted({int(i) for ids in gt_ids for i in ids}))}
    tmap = {g: k for k, g in enumerate(sorted({int(i) for ids in tr_ids for i in ids}))}
    n_a = len(HOTA_ALPHAS)
    tp, fn, fp, loc = np.zeros(n_a), np.zeros(n_a), np.zeros(n_a), np.zeros(n_a)
    if not tmap or not gmap:
        n_gt = sum(len(x) for x in gt_ids)
        n_tr = sum(len(x) for x in tr_ids)
        return {"HOTA": 0.0, "DetA": 0.0, "AssA": 0.0, "LocA": 1.0, "gt_dets": n_gt, "tracker_dets": n_tr}
    g_idx = [np.array([gmap[int(i)] for i in ids], np.int64) for ids in gt_ids]
    t_idx = [np.array([tmap[int(i)] for i in ids], np.int64) for ids in tr_ids]
    potential = np.zeros((len(gmap), len(tmap)))
    gt_count, tr_count = np.zeros((len(gmap), 1)), np.zeros((1, len(tmap)))
    for g, t, sim in zip(g_idx, t_idx, sims, strict=True):
        denom = sim.sum(0)[np.newaxis, :] + sim.sum(1)[:, np.newaxis] - sim
        sim_iou = np.zeros_like(sim)
        ok = denom > _EPS
        sim_iou[ok] = sim[ok] / denom[ok]
        potential[g[:, None], t[None, :]] += sim_iou
        gt_count[g] += 1
        tr_count[0, t] += 1
    global_score = potential / (gt_count + tr_count - potential)
    matches = [np.zeros_like(potential) for _ in HOTA_ALPHAS]
    from scipy.optimize import linear_sum_assignment

    for g, t, sim in zip(g_idx, t_idx, sims, strict=True):
        if len(g) == 0 or len(t) == 0:
            fn += len(g)
            fp += len(t)
            continue
        rows, cols = linear_sum_assignment(-(global_score[g[:, None], t[None, :]] * sim))
        for a, alpha in enumerate(HOTA_ALPHAS):
            ok = sim[rows, cols] >= alpha - _EPS
            r, c = rows[ok], cols[ok]
            tp[a] += len(r)
            fn[a] += len(g) - len(r)
            fp[a] += len(t) - len(r)
            if len(r):
                loc[a] += sim[r, c].sum()
                matches[a][g[r], t[c]] += 1
    ass = np.zeros(n_a)
    for a in range(n_a):
        m = matches[a]
        ass[a] = np.sum(m * (m / np.maximum(1, gt_count + tr_count - m))) / max(1.0, tp[a])
    det = tp / np.maximum(1, tp + fn + fp)
    loc_a = np.maximum(1e-10, loc) / np.maximum(1e-10, tp)
    return {
        "HOTA": float(np.mean(np.sqrt(det * ass))),
        "DetA": float(np.mean(det)),
        "AssA": float(np.mean(ass)),
        "LocA": float(np.mean(loc_a)),
        "gt_dets": int(gt_count.sum()),
        "tracker_dets": int(tr_count.sum()),
    }


# ----------------------------------------------------------------------------- one sequence
def score(truths: list[FrameTruth], outputs: list[FrameTracks], cable_iou: float = CABLE_MATCH_IOU) -> dict[str, float]:
    """All metrics of one tracker on one (sampled) sequence; ``outputs[k]`` is for ``truths[k]``."""
    import motmetrics as mm

    if len(truths) != len(outputs):
        raise ValueError(f"{len(outputs)} tracker frames for {len(truths)} truth frames")
    acc = mm.MOTAccumulator(auto_id=True)
    gt_ids, tr_ids, sims = [], [], []
    for truth, out in zip(truths, outputs, strict=True):
        out = drop_ignored(truth, out, cable_iou)
        sim = similarity(truth.objects, out)
        gids = np.array([o.track_id for o in truth.objects], np.int64)
        dist = np.where(sim >= thresholds(truth.objects, cable_iou), 1.0 - sim, np.nan)
        acc.update(gids.tolist(), out.ids.tolist(), dist)
        gt_ids.append(gids)
        tr_ids.append(out.ids)
        sims.append(sim)
    names = ["idf1", "mota", "num_switches", "num_false_positives", "num_misses", "num_objects", "motp"]
    summary = mm.metrics.create().compute(acc, metrics=names, name="seq")
    row = {name: float(summary[name].iloc[0]) for name in names}
    result = hota(gt_ids, tr_ids, sims)
    return {
        "HOTA": result["HOTA"],
        "DetA": result["DetA"],
        "AssA": result["AssA"],
        "IDF1": row["idf1"] if np.isfinite(row["idf1"]) else 0.0,
        "MOTA": row["mota"],
        "IDsw": int(row["num_switches"]),
        "FP": int(row["num_false_positives"]),
        "FN": int(row["num_misses"]),
        "GT": int(row["num_objects"]),
        "frames": len(truths),
    }
