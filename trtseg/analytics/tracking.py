"""Per-camera multi-object tracker: ByteTrack's association, with mask IoU, stepped by seconds.

Why not a library: the ByteTrack of supervision, Ultralytics, ``trackers`` and boxmot matches by box
IoU only, steps its Kalman filter once per call and counts its lost-track buffer in frames. Here
inference may run below the source rate and unevenly, so the filter steps by elapsed seconds and the
buffer is in seconds; and thin cables need the mask to be matched at all (``track_match``).

The association is ByteTrack's, in its order: (1) detections at or above ``high_score`` are matched
to the confirmed tracks, lost ones included; (2) those between ``low_score`` and ``high_score`` then
only extend confirmed tracks that were still tracked, and only where they overlap well
(``low_match_threshold``); (3) tentative tracks get what confident detections are left, so a new
track never takes an established one's object. At a low inference rate a walker can move more than
its own width between two frames, so a track seen once, whose speed is not known yet, also takes a
detection of its class and size within ``second_sighting_speed`` sizes per second of it. A detection
left over starts a track if it scores ``new_track_score`` and is not the mask of an object already
matched in the frame seen a second time (``duplicate_iou``). Scores may be set per class: a segmenter
is less sure of a thin cable than of a person. A new track is confirmed once matched in
``probation_frames`` frames or in two frames ``probation_s`` apart (so fewer frames suffice at a low
rate), or at once when it is born in the tracker's first frame; one miss drops it. A confirmed track
whose mask lies mostly (``duplicate_cover``) inside that of an older track shown in the same frame
is a second report of that object: it is kept but not shown. A lost track whose box all but coincides
(``duplicate_track_iou``) with a matched one's is the same object: the younger of the two goes; so
are two tracks that hand one detection back and forth (``turn_taking_merge``); both merges are in
``track_merge``. Ids start at 1 and are never reused, not even after ``reset``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trtseg.analytics import track_kalman as kalman
from trtseg.analytics.track_match import (
    FrameMasks,
    TrackMask,
    assign,
    second_sighting,
    similarity,
    suppress,
)
from trtseg.analytics.track_merge import merge_duplicates, merge_turn_taking, record_handovers
from trtseg.config.analytics import TrackerConfig
from trtseg.detections import Detections

logger = logging.getLogger(__name__)

_ARRAYS = (
    "ids",
    "class_ids",
    "hits",
    "confirmed",
    "tracked",
    "born",
    "last_seen",
    "yielded_to",
    "handovers",
    "mean",
    "cov",
    "mask_geometry",
)


@dataclass(slots=True)
class _Tracks:
    """Every kept track, one row each: a structure of arrays, so the filter steps them all at once."""

    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    hits: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # inferred frames matched
    confirmed: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    tracked: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # matched at the last update
    born: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))  # tracker clock at the first match, s
    last_seen: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))  # tracker clock, s
    # The id of the track that took this one's detection when this one went lost (0: none, or matched since),
    # and how many times in a row the two have handed it over (see track_merge.record_handovers).
    yielded_to: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    handovers: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
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
        self._updates = 0  # since construction or reset
        self._table: tuple[np.ndarray, ...] = (np.zeros(0),)
        self._table_key: tuple[Any, ...] | None = None  # the class names the table is for

    def reset(self) -> None:
        """Forget every track and the clock (a camera reconfigured); ids go on from where they were."""
        self._tracks = _Tracks()
        self._clock = 0.0
        self._last_now = None
        self._removed = ()
        self._updates = 0

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
        self._updates += 1
        self._expire()
        tr = self._tracks
        tr.mean, tr.cov = kalman.predict(tr.mean, tr.cov, dt, cfg.motion_noise)

        boxes, scores = detections.boxes, detections.scores
        usable = (scores >= cfg.low_score) & np.isfinite(boxes).all(axis=1)  # NaN scores compare False
        cand = np.flatnonzero(usable)  # detection indices; the columns below index into cand
        cand_boxes, cand_scores = boxes[cand], scores[cand]
        class_ids = detections.class_ids[cand].astype(np.int64)
        by_class = self._class_table(class_ids, detections.names)
        high_score, new_track_score, doubled = (table[class_ids] for table in by_class)
        high = np.flatnonzero(cand_scores >= high_score)
        low = np.flatnonzero(cand_scores < high_score)
        frame_masks = FrameMasks(detections.masks if cfg.use_masks else None, cand)
        if cfg.class_aware:
            allowed = tr.class_ids[:, None] == class_ids[None, :]
        else:
            allowed = np.ones((len(tr), len(cand)), bool)
        threshold, weight = cfg.match_threshold, cfg.mask_weight
        sim, score = similarity(
            kalman.to_xyxy(tr.mean), tr.mask_geometry, tr.masks, frame_masks, cand_boxes, allowed, threshold, weight
        )
        matched_rows: list[np.ndarray] = []
        matched_cols: list[np.ndarray] = []

        def match(rows: np.ndarray, cols: np.ndarray, least: float) -> tuple[np.ndarray, np.ndarray]:
            """Assign ``cols`` to ``rows``; the rows and columns left over."""
            if len(rows) == 0 or len(cols) == 0:
                return rows, cols
            pairs = np.ix_(rows, cols)
            found, free_rows, free_cols = assign(sim[pairs], score[pairs], least, weight)
            matched_rows.append(rows[found[:, 0]])
            matched_cols.append(cols[found[:, 1]])
            return rows[free_rows], cols[free_cols]

        # 1: confident detections, confirmed tracks (lost ones included).
        free_tracks, left = match(np.flatnonzero(tr.confirmed), high, threshold)
        # 2: doubtful detections only extend confirmed tracks that were tracked until now.
        still, _ = match(free_tracks[tr.tracked[free_tracks]], low, cfg.low_match_threshold)
        free_tracks = np.concatenate([free_tracks[~tr.tracked[free_tracks]], still])
        # 3: tentative tracks take what confident detections are left; one seen once, also by distance.
        tentative, left = match(np.flatnonzero(~tr.confirmed), left, threshold)
        unmatched = np.concatenate([free_tracks, tentative])
        once = unmatched[(tr.hits[unmatched] == 1) & tr.tracked[unmatched]]  # seen at the last frame only
        if cfg.second_sighting_speed > 0 and len(once) and len(left):
            reach = cfg.second_sighting_speed * max(dt, 1.0 / kalman.REFERENCE_FPS)
            measured = kalman.xyxy_to_cxcywh(cand_boxes[left])
            found = second_sighting(tr.mean[once], measured, allowed[np.ix_(once, left)], reach)
            matched_rows.append(once[found[:, 0]])
            matched_cols.append(left[found[:, 1]])
            left = np.delete(left, found[:, 1])
        rows = np.concatenate([np.zeros(0, np.int64), *matched_rows]).astype(np.int64)
        cols = np.concatenate([np.zeros(0, np.int64), *matched_cols]).astype(np.int64)

        turns: list[tuple[int, int]] = []
        if cfg.turn_taking_merge:  # who was matched until now is needed: before the matches are applied
            turns = record_handovers(tr, rows, cols, sim, threshold, cfg.turn_taking_merge)
        self._apply_matches(rows, cols, cand_boxes, class_ids, frame_masks)
        rows = merge_turn_taking(tr, rows, turns)
        rows = merge_duplicates(tr, rows, cfg.duplicate_track_iou)
        starters = left[cand_scores[left] >= new_track_score[left]]
        # Duplicates are looked for among the classes a segmenter reports twice at times (cables).
        if cfg.duplicate_iou < 1.0 and frame_masks.present and doubled[starters].any():
            by_score = starters[np.argsort(-cand_scores[starters], kind="stable")]
            unique = np.ones(len(cand), bool)
            unique[by_score[doubled[by_score]]] = False
            unique[suppress(by_score[doubled[by_score]], cols, class_ids, frame_masks, cfg.duplicate_iou, "iou")] = True
            starters = starters[unique[starters]]
        first_new = len(self._tracks)
        self._start(starters, cand_boxes, class_ids, frame_masks)

        tr = self._tracks
        out_rows = np.concatenate([rows, np.arange(first_new, len(tr))])
        out_cols = np.concatenate([cols, starters])
        shown = tr.confirmed[out_rows]
        out_rows, out_cols = out_rows[shown], out_cols[shown]
        if cfg.duplicate_cover < 1.0 and frame_masks.present and np.count_nonzero(doubled[out_cols]) > 1:
            by_age = np.lexsort((tr.ids[out_rows], tr.born[out_rows]))  # oldest first
            by_age = by_age[doubled[out_cols[by_age]]]
            kept = suppress(out_cols[by_age], out_cols[:0], class_ids, frame_masks, cfg.duplicate_cover, "cover")
            visible = ~doubled
            visible[kept] = True
            shown = visible[out_cols]
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

    def _class_table(self, class_ids: np.ndarray, names: dict[int, str]) -> tuple[np.ndarray, ...]:
        """Per class id: high_score, new_track_score, and whether duplicates are looked for (kept till names change)."""
        size = int(class_ids.max()) + 1 if len(class_ids) else 0
        key = tuple(names.items())
        if key != self._table_key or size > len(self._table[0]):
            cfg = self.config
            n = max([size, *(cid + 1 for cid in names)])
            high, new = np.full(n, cfg.high_score), np.full(n, cfg.new_track_score)
            doubled = np.full(n, not cfg.duplicate_classes)
            for cid, name in names.items():
                if cid >= 0:
                    high[cid] = cfg.class_high_score.get(name, cfg.high_score)
                    new[cid] = cfg.class_new_track_score.get(name, cfg.new_track_score)
                    doubled[cid] = not cfg.duplicate_classes or name in cfg.duplicate_classes
            self._table, self._table_key = (high, new, doubled), key
        return self._table

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
        if cfg.probation_s is not None:  # two sightings this far apart are as good as probation_frames
            tr.confirmed[rows] |= (tr.hits[rows] >= 2) & (self._clock - tr.born[rows] >= cfg.probation_s - 1e-9)
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
        """New tentative tracks (confirmed at once when ``probation_frames`` is 1, or at the start)."""
        if len(cols) == 0:
            return
        # What is in view when the tracker starts (a camera starting) is no newcomer, as in ByteTrack.
        at_once = self.config.probation_frames <= 1 or (self.config.confirm_at_start and self._updates == 1)
        measured = kalman.xyxy_to_cxcywh(boxes[cols])
        mean, cov = kalman.initiate(measured)
        n = len(cols)
        new = _Tracks(
            ids=np.arange(self._next_id, self._next_id + n, dtype=np.int64),
            class_ids=class_ids[cols].copy(),
            hits=np.ones(n, np.int64),
            confirmed=np.full(n, at_once),
            tracked=np.ones(n, bool),
            born=np.full(n, self._clock),
            last_seen=np.full(n, self._clock),
            yielded_to=np.zeros(n, np.int64),
            handovers=np.zeros(n, np.int64),
            mean=mean,
            cov=cov,
            mask_geometry=frame_masks.geometry(cols, boxes[cols]),
            masks=[frame_masks.mask(col) if frame_masks.present else None for col in cols.tolist()],
        )
        self._next_id += n
        self._tracks.extend(new)
