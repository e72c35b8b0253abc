"""One track per object: the tracker's merges of two tracks that follow one object.

A second box of one object (a cable reported twice, a walker's partial or wider box for a frame or
two) starts a second track; the two then take the object's single detection in turns, and its
identity flickers between them. Two signs give such a pair away, and each ends in one merge (the
younger track goes, the older keeps the object and its first id):

- ``merge_duplicates``: a lost track whose box all but coincides with a matched one's
  (``duplicate_track_iou``, ByteTrack's ``remove_duplicate_stracks``);
- ``record_handovers`` then ``merge_turn_taking``: two tracks that hand one detection back and forth
  ``turn_taking_merge`` times in a row, even where their boxes overlap less.

The functions work in place on the tracker's track table (``tracking._Tracks``), one update's
matched ``rows`` at a time; kept apart from the association so that each reads on its own.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from trtseg.analytics import track_kalman as kalman
from trtseg.analytics.track_match import box_iou

if TYPE_CHECKING:
    from trtseg.analytics.tracking import _Tracks

logger = logging.getLogger(__name__)

# What the older track takes over from the younger, matched one (besides its hits and mask).
_TAKEN_OVER = ("mean", "cov", "mask_geometry", "last_seen", "class_ids", "tracked", "yielded_to", "handovers")


def merge_duplicates(tr: _Tracks, rows: np.ndarray, duplicate_track_iou: float) -> np.ndarray:
    """Merge each lost track whose box all but coincides with a matched one's into the older of the two.

    As ByteTrack's ``remove_duplicate_stracks`` does, of a matched and a lost confirmed track of one
    class whose boxes overlap by ``duplicate_track_iou`` the younger goes (1: off); when the younger is
    the matched one, the older takes over its state, so the object keeps its first id. ``rows``: the
    rows matched now; returns them with each taken-over row replaced by the row that took it over.
    """
    if duplicate_track_iou >= 1.0 or len(rows) == 0:
        return rows
    lost = np.flatnonzero(tr.confirmed & ~tr.tracked)
    matched = rows[tr.confirmed[rows]]
    if len(lost) == 0 or len(matched) == 0:
        return rows
    iou = box_iou(kalman.to_xyxy(tr.mean[matched]), kalman.to_xyxy(tr.mean[lost]))
    iou[tr.class_ids[matched][:, None] != tr.class_ids[lost][None, :]] = 0.0
    if not (iou >= duplicate_track_iou).any():
        return rows
    out = rows.copy()
    used_m, used_l = set(), set()
    for flat in np.argsort(-iou, axis=None).tolist():
        i, j = divmod(flat, len(lost))
        if iou[i, j] < duplicate_track_iou:
            break
        if i in used_m or j in used_l:
            continue
        used_m.add(i)
        used_l.add(j)
        _merge_pair(tr, int(matched[i]), int(lost[j]), out)
    return out


def record_handovers(
    tr: _Tracks, rows: np.ndarray, cols: np.ndarray, sim: np.ndarray, threshold: float, turn_taking_merge: int
) -> list[tuple[int, int]]:
    """(taker, loser) rows of the tracks that take one detection in turns (for ``merge_turn_taking``).

    A handover: a lost confirmed track (the taker) is matched now (``rows`` to ``cols``) to a detection
    that a confirmed track matched at the last update and not now (the loser) could have taken (``sim``
    at least ``threshold``). Each loser is marked with its taker's id (``yielded_to``) and the number of
    handovers between the two in a row (``handovers``: one more than the taker's when the taker had
    yielded to the loser, else 1); every other matched track's mark is cleared. The pairs whose count
    reaches ``turn_taking_merge`` are returned. Call before the matches are applied: it needs who was
    matched until now.
    """
    matched = np.zeros(len(tr), bool)
    matched[rows] = True
    losers = np.flatnonzero(tr.tracked & tr.confirmed & ~matched)
    takers = (tr.confirmed & ~tr.tracked)[rows]
    handovers: list[tuple[int, int]] = []
    if len(losers) and takers.any():
        for taker, col in zip(rows[takers].tolist(), cols[takers].tolist(), strict=True):
            handovers += [(taker, loser) for loser in losers[sim[losers, col] >= threshold].tolist()]
    counts = [int(tr.handovers[t]) + 1 if tr.yielded_to[t] == tr.ids[lo] else 1 for t, lo in handovers]
    tr.yielded_to[rows], tr.handovers[rows] = 0, 0
    for (taker, loser), count in zip(handovers, counts, strict=True):
        tr.yielded_to[loser], tr.handovers[loser] = tr.ids[taker], count
    return [pair for pair, count in zip(handovers, counts, strict=True) if count >= turn_taking_merge]


def merge_turn_taking(tr: _Tracks, rows: np.ndarray, turns: list[tuple[int, int]]) -> np.ndarray:
    """Merge the two tracks of each pair in ``turns`` (``record_handovers``) into the older of the two.

    When the object's box swings (a walker's width with the stride), the predicted box of whichever
    track is lost, its size frozen, fits some frames better than the matched one's, and the two take
    the object's one detection in turns, both reporting what it does. Their boxes need not overlap as
    much as ``duplicate_track_iou`` asks, but the turns give them away: each time, the track left
    unmatched is the one that just took the detection, and the taker has stayed unmatched since it lost
    it. Two objects hand a detection over once when one hides the other and their ids swap, and back
    once when the swap is put right; that is why ``turn_taking_merge`` handovers in a row (3 by
    default: the swap, its repair, and the swap again) are asked for. Of the two the younger goes and
    the older keeps the object (its state from now), as in ``merge_duplicates``. ``rows``: the rows
    matched now; returns them with each taken-over row replaced.
    """
    out = rows.copy()
    for taker, loser in turns:
        if tr.confirmed[taker] and tr.confirmed[loser]:  # neither merged away already
            _merge_pair(tr, taker, loser, out)
    return out


def _merge_pair(tr: _Tracks, matched: int, lost: int, rows: np.ndarray) -> None:
    """Two tracks of one object (``matched`` now, ``lost``): the younger goes, the older keeps the object.

    When the younger is the matched one, the older takes over its state, so the object keeps its
    first id, and ``rows`` (the rows matched now) is changed in place to name the older.
    """
    young, old = matched, lost
    if (tr.born[old], tr.ids[old]) > (tr.born[young], tr.ids[young]):
        tr.confirmed[old], tr.yielded_to[old] = False, 0  # the lost one is the younger: dropped at the end
        logger.debug("duplicate track merged kept=%d dropped=%d", tr.ids[young], tr.ids[old])
        return
    for name in _TAKEN_OVER:
        getattr(tr, name)[old] = getattr(tr, name)[young]
    tr.hits[old] += 1
    tr.masks[old] = tr.masks[young]
    tr.tracked[young], tr.confirmed[young], tr.yielded_to[young] = False, False, 0
    rows[rows == young] = old
    logger.debug("duplicate track merged kept=%d dropped=%d", tr.ids[old], tr.ids[young])
