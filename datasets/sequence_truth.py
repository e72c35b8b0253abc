"""True incidents: what a rule engine must report on a generated sequence, derived from its truth alone.

Presence and dwell: the stretches of frames in which an object's visible mask meets the rule's zone
threshold (stretches closer than ``close_after_s`` joined), lasting ``min_duration_s``; the incident
opens ``min_duration_s`` into the stretch. Crossing: each change of side of the object's true ground
point that lasts ``min_stay_s``, in the rule's direction. Nothing here looks at a detector.
"""

from __future__ import annotations

import numpy as np

from datasets.sequences import FrameTruth, Sequence, TrueIncident, TruthObject, TruthRule, line_side


def _runs(times: list[float], flags: list[bool], merge_gap_s: float) -> list[tuple[float, float]]:
    """Maximal [start, end] stretches of true flags, joining those separated by less than ``merge_gap_s``."""
    runs: list[tuple[float, float]] = []
    for t, flag in zip(times, flags, strict=True):
        if not flag:
            continue
        if runs and t - runs[-1][1] < merge_gap_s:
            runs[-1] = (runs[-1][0], t)
        else:
            runs.append((t, t))
    return runs


def true_incidents(seq: Sequence, truths: list[FrameTruth]) -> list[TrueIncident]:
    """What each of the sequence's rules should report on these frames (any sampling of them)."""
    out: list[TrueIncident] = []
    for rule in seq.rules:
        tracks: dict[int, list[tuple[float, TruthObject | None]]] = {}
        actors = [a for a in seq.actors if a.class_id == rule.class_id]
        for ft in truths:
            seen = {o.track_id: o for o in ft.all()}
            for actor in actors:
                tracks.setdefault(actor.track_id, []).append((ft.t, seen.get(actor.track_id)))
        for track_id, rows in tracks.items():
            if rule.kind == "crossing":
                out += _crossings(seq, rule, track_id, rows)
            else:
                out += _zone_incidents(rule, track_id, rows)
    return sorted(out, key=lambda x: (x.open_s, x.rule, x.track_id))


def _meets(rule: TruthRule, obj: TruthObject | None) -> bool:
    if obj is None:
        return False
    value = rule.fraction(obj)
    return value is None or value >= (rule.threshold or 0.0)


def _zone_incidents(rule: TruthRule, track_id: int, rows: list[tuple[float, TruthObject | None]]) -> list[TrueIncident]:
    times = [t for t, _ in rows]
    out = []
    for start, end in _runs(times, [_meets(rule, o) for _, o in rows], rule.close_after_s):
        if end - start < rule.min_duration_s:
            continue
        values = [rule.fraction(o) for t, o in rows if o is not None and start <= t <= end and _meets(rule, o)]
        fractions = [v for v in values if v is not None]
        out.append(
            TrueIncident(
                rule.name,
                track_id,
                rule.class_id,
                start + rule.min_duration_s,
                end,
                float(np.median(fractions)) if fractions else None,
                rule.threshold,
            )
        )
    return out


def _crossings(
    seq: Sequence, rule: TruthRule, track_id: int, rows: list[tuple[float, TruthObject | None]]
) -> list[TrueIncident]:
    """Side changes of the ground point that last ``min_stay_s``; seen or not, the object is where it is."""
    assert rule.line is not None
    line = seq.lines[rule.line]
    actor = next(a for a in seq.actors if a.track_id == track_id)
    sides = [(t, line_side(actor.position(t), line, seq.size)) for t, _ in rows if actor.present(t)]
    out = []
    side = 0
    pending: tuple[int, float] | None = None  # (new side, time it was reached)
    for t, s in sides:
        if s == 0:
            continue
        if side == 0:
            side = s
            continue
        if s != side and pending is None:
            pending = (s, t)
        elif pending is not None and s != pending[0]:
            pending = None  # went back before it counted
        if pending is not None and t - pending[1] >= rule.min_stay_s - 1e-9:
            direction = "left_to_right" if pending[0] == -1 else "right_to_left"
            if rule.direction in ("both", direction):
                out.append(TrueIncident(rule.name, track_id, rule.class_id, pending[1], pending[1]))
            side, pending = pending[0], None
    return out
