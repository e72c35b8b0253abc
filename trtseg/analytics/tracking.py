"""Per-camera multi-object tracker: ByteTrack's two-stage association, with mask IoU, stepped by seconds.

Why not a library: the ByteTrack of supervision, Ultralytics, ``trackers`` and boxmot matches by box
IoU only, steps its Kalman filter once per call and counts its lost-track buffer in frames. Here
inference may run below the source rate and unevenly, so the filter steps by elapsed seconds and the
buffer is in seconds; and thin cables need the mask to be matched at all (``track_match``). The
algorithm is ByteTrack's: detections at or above ``high_score`` are matched first to every kept
track (lost ones included), those between ``low_score`` and ``high_score`` then only extend tracks
that were still tracked; a detection left over starts a track if it scores ``new_track_score``, and
a new track stays tentative until it has been matched in ``probation_frames`` inferred frames (one
miss drops it). Ids start at 1 and are never reused, not even after ``reset``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from trtseg.analytics import track_kalman as kalman
from trtseg.analytics.track_match import FrameMasks, TrackMask, assign, similarity
from trtseg.config.analytics import TrackerConfig
from trtseg.detections import Detections

logger = logging.getLogger(__name__)

_ARRAYS = ("ids", "class_ids", "hits", "confirmed", "tracked", "last_seen", "mean", "cov", "mask_geometry")


@dataclass(slots=True)
class _Tracks:
    """Every kept track, one row each: a structure of arrays, so the filter steps them all at once."""

    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    hits: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # inferred frames matched
    confirmed: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    tracked: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # matched at the last update
    last_seen: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))  # tracker clock, s
    mean: np.ndarray = field(default_factory=lambda: np.zeros((0, 8)))
    cov: np.ndarray = field(default_factory=lambda: np.zeros((0, 3, 4)))  # see track_kalman
    mask_geometry: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))  # see track_match.similarity
    masks: list[TrackMask | None] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def keep(self, rows: np.ndarray) -> None:
        """Keep only the tracks where the bool ``rows`` is True."""
        for name in _ARRAYS:
            setattr(self, name, getattr(self, name)[rows])
        self.masks = [m for m, k in zip(self.masks, rows.tolist(), strict=True) if k]

    def extend(self, other: _Tracks) -> None:
        for name in _ARRAYS:
            setattr(self, name, np.concatenate([getattr(self, name), getattr(other, name)]))
        self.masks.extend(other.masks)


class ObjectTracker:
    """Tracks of one camera, fed its inferred frames in order. Not thread-safe: one per camera actor."""

    def __init__(self, config: TrackerConfig) -> None:
        self.config = config
        self._tracks = _Tracks()
        self._next_id = 1
        self._clock = 0.0  # seconds of analysed video; only moves forward
        self._last_now: float | None = None
        self._warned_clock = False
        self._last_ms = 0.0
        self._removed: tuple[int, ...] = ()

    def reset(self) -> None:
        """Forget every track and the clock (a camera reconfigured); ids go on from where they were."""
        self._tracks = _Tracks()
        self._clock = 0.0
        self._last_now = None
        self._removed = ()

    @property
    def stats(self) -> dict[str, float]:
        """Tracks now: active (matched at the last update), lost (coasting), confirmed, tentative; cost."""
        tr = self._tracks
        return {
            "active": float(np.count_nonzero(tr.tracked)),
            "lost": float(len(tr) - np.count_nonzero(tr.tracked)),
            "confirmed": float(np.count_nonzero(tr.confirmed)),
            "tentative": float(len(tr) - np.count_nonzero(tr.confirmed)),
            "started": float(self._next_id - 1),
            "last_update_ms": self._last_ms,
        }

    @property
    def removed_ids(self) -> tuple[int, ...]:
        """Confirmed track ids given up at the last update (unseen longer than ``lost_track_s``)."""
        return self._removed

    def update(self, detections: Detections, now_s: float) -> Detections:
        """Associate one inferred frame's detections; the confirmed tracks matched in it, ids set.

        ``now_s`` is the analysis clock in seconds: it may step unevenly; a step back counts as none.
        An empty ``detections`` ages every track as a frame without objects does.
        """
        started = time.perf_counter()
        cfg = self.config
        dt = self._advance(now_s)
        self._expire()
        tr = self._tracks
        tr.mean, tr.cov = kalman.predict(tr.mean, tr.cov, dt)

        boxes, scores = detections.boxes, detections.scores
        usable = (scores >= cfg.low_score) & np.isfinite(boxes).all(axis=1)  # NaN scores compare False
        cand = np.flatnonzero(usable)  # detection indices; the columns below index into cand
        high = np.flatnonzero(scores[cand] >= cfg.high_score)
        low = np.flatnonzero(scores[cand] < cfg.high_score)
        frame_masks = FrameMasks(detections.masks if cfg.use_masks else None, cand)
        class_ids = detections.class_ids[cand].astype(np.int64)
        if cfg.class_aware:
            allowed = tr.class_ids[:, None] == class_ids[None, :]
        else:
            allowed = np.ones((len(tr), len(cand)), bool)
        predicted = kalman.to_xyxy(tr.mean)
        threshold, weight = cfg.match_threshold, cfg.mask_weight
        sim, score = similarity(
            predicted, tr.mask_geometry, tr.masks, frame_masks, boxes[cand], allowed, threshold, weight
        )

        # Stage 1: confident detections against every track, lost ones included.
        first, free_tracks, free_high = assign(sim[:, high], score[:, high], threshold, weight)
        matched_rows, matched_cols = [first[:, 0]], [high[first[:, 1]]]
        # Stage 2: the doubtful detections only extend confirmed tracks that were tracked until now.
        second_rows = free_tracks[tr.tracked[free_tracks] & tr.confirmed[free_tracks]]
        if len(second_rows) and len(low):
            pairs = np.ix_(second_rows, low)
            second, _, _ = assign(sim[pairs], score[pairs], threshold, weight)
            matched_rows.append(second_rows[second[:, 0]])
            matched_cols.append(low[second[:, 1]])
        rows = np.concatenate(matched_rows).astype(np.int64)
        cols = np.concatenate(matched_cols).astype(np.int64)

        self._apply_matches(rows, cols, boxes[cand], class_ids, frame_masks)
        starters = high[free_high]
        starters = starters[scores[cand][starters] >= cfg.new_track_score]
        first_new = len(self._tracks)
        self._start(starters, boxes[cand], class_ids, frame_masks)

        tr = self._tracks
        out_rows = np.concatenate([rows, np.arange(first_new, len(tr))])
        out_cols = np.concatenate([cols, starters])
        shown = tr.confirmed[out_rows]
        out_rows, out_cols = out_rows[shown], out_cols[shown]
        order = np.argsort(out_cols)
        index, ids = cand[out_cols[order]], tr.ids[out_rows[order]]
        if len(index) == len(detections):  # every detection is shown, in order: no need to slice
            out = dataclasses.replace(detections, tracker_ids=ids)
        else:
            out = detections[index]
            out.tracker_ids = ids
        keep = tr.tracked | tr.confirmed  # a tentative track that missed a frame is dropped
        if not keep.all():
            tr.keep(keep)
        self._last_ms = (time.perf_counter() - started) * 1000.0
        return out

    # -- steps ---------------------------------------------------------------------------------------

    def _advance(self, now_s: float) -> float:
        """Seconds since the last update; a step back (or a non-finite stamp) counts as none."""
        previous, finite = self._last_now, math.isfinite(now_s)
        dt = now_s - previous if finite and previous is not None else 0.0
        if finite:
            self._last_now = now_s
        if not finite or dt < 0.0:
            # Track ages are kept on the tracker's own clock, so they stay right from the new base on.
            level = logging.DEBUG if self._warned_clock else logging.WARNING
            logger.log(level, "tracker clock stepped back, counted as no time now_s=%s previous_s=%s", now_s, previous)
            self._warned_clock = True
            dt = 0.0
        self._clock += dt
        return dt

    def _expire(self) -> None:
        """Give up tracks unseen longer than the lost-track buffer."""
        tr = self._tracks
        gone = (self._clock - tr.last_seen) > self.config.lost_track_s
        self._removed = tuple(int(i) for i in tr.ids[gone & tr.confirmed])
        if gone.any():
            tr.keep(~gone)

    def _apply_matches(
        self, rows: np.ndarray, cols: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray, frame_masks: FrameMasks
    ) -> None:
        """Correct the matched tracks; confirmed ones that missed go lost (``update`` drops tentative ones)."""
        cfg, tr = self.config, self._tracks
        measured = kalman.xyxy_to_cxcywh(boxes[cols])
        tr.mean[rows], tr.cov[rows] = kalman.update(tr.mean[rows], tr.cov[rows], measured)
        tr.hits[rows] += 1
        tr.last_seen[rows] = self._clock
        tr.class_ids[rows] = class_ids[cols]
        tr.confirmed[rows] |= tr.hits[rows] >= cfg.probation_frames
        tr.mask_geometry[rows] = frame_masks.geometry(cols, boxes[cols])
        for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
            tr.masks[row] = frame_masks.mask(col) if frame_masks.present else None
        matched = np.zeros(len(tr), bool)
        matched[rows] = True
        newly_lost = np.flatnonzero(tr.tracked & ~matched & tr.confirmed)
        for row in newly_lost.tolist():
            mask = tr.masks[row]
            tr.masks[row] = None if mask is None else mask.detached()
        tr.mean[newly_lost, 6:8] = 0.0  # a lost box keeps its size: only its position coasts
        tr.tracked = matched

    def _start(self, cols: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray, frame_masks: FrameMasks) -> None:
        """New tentative tracks (confirmed at once when ``probation_frames`` is 1)."""
        if len(cols) == 0:
            return
        measured = kalman.xyxy_to_cxcywh(boxes[cols])
        mean, cov = kalman.initiate(measured)
        n = len(cols)
        new = _Tracks(
            ids=np.arange(self._next_id, self._next_id + n, dtype=np.int64),
            class_ids=class_ids[cols].copy(),
            hits=np.ones(n, np.int64),
            confirmed=np.full(n, self.config.probation_frames <= 1),
            tracked=np.ones(n, bool),
            last_seen=np.full(n, self._clock),
            mean=mean,
            cov=cov,
            mask_geometry=frame_masks.geometry(cols, boxes[cols]),
            masks=[frame_masks.mask(col) if frame_masks.present else None for col in cols.tolist()],
        )
        self._next_id += n
        self._tracks.extend(new)
