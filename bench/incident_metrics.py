"""Scoring reported incidents against the true ones: precision, recall, duplicates, near-threshold cases.

A reported incident matches a true one when (1) it has the same rule, (2) it follows the same object
for at least half its life: of the analysed frames between its start and its last sighting in which
its track was reported, at least half matched that true object, and (3) it opened within 2 s of the
truth. Matching is one-to-one (closest opening first). Unmatched reports are false positives,
unmatched truths misses. A *duplicate* is any report beyond the true count for one object and rule
(at least one): a track lost and found again under a new id that opens a second incident is one.
Cases whose true fraction lies within 5 points of the rule's threshold are reported apart: a mask
fraction that close to its threshold is decided by the mask's edge pixels.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from bench.tracking_metrics import CABLE_MATCH_IOU, FrameTracks, similarity, thresholds
from datasets.sequences import FrameTruth, TrueIncident, TruthRule

OPEN_TOLERANCE_S = 2.0
FOLLOW_SHARE = 0.5
NEAR_POINTS = 0.05


@dataclass
class Reported:
    """The final state of one reported incident, times in seconds of the sequence."""

    incident_id: str
    rule: str
    track_id: int | None
    open_s: float
    last_s: float
    severity: str = "detection"
    closed: bool = False
    peak_fraction: float | None = None


@dataclass
class Outcome:
    """One reported or true incident after matching."""

    kind: str  # "tp" | "fp" | "fn" | "tn" (an object and rule with neither a true nor a reported incident)
    rule: str
    truth_object: int | None
    near: bool
    fraction: float | None
    reported: Reported | None = None
    truth: TrueIncident | None = None
    share: float = 0.0


@dataclass
class Score:
    outcomes: list[Outcome] = field(default_factory=list)
    duplicates: int = 0

    def counts(self, near: bool | None = None) -> dict[str, Any]:
        chosen = [o for o in self.outcomes if near is None or o.near == near]
        c = Counter(o.kind for o in chosen)
        tp, fp, fn = c["tp"], c["fp"], c["fn"]
        return {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "tn": c["tn"],
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
        }

    def extend(self, other: Score) -> None:
        self.outcomes += other.outcomes
        self.duplicates += other.duplicates


def reported_from_records(records: list[Any], epoch: float) -> list[Reported]:
    """The latest state of each incident (records only move forward), times relative to ``epoch``."""
    latest: dict[str, Any] = {}
    for record in records:
        latest[record.incident_id] = record
    return [
        Reported(
            r.incident_id,
            r.rule,
            r.track_id,
            _seconds(r.started_at, epoch),
            _seconds(r.last_seen_at, epoch),
            r.severity,
            r.status == "closed",
            r.peak_fraction,
        )
        for r in latest.values()
    ]


def _seconds(when: datetime, epoch: float) -> float:
    return when.timestamp() - epoch


def track_log(
    truths: list[FrameTruth], outputs: list[FrameTracks], cable_iou: float = CABLE_MATCH_IOU
) -> dict[int, list[tuple[float, int | None]]]:
    """Per reported track id, (time, true object it matched or None) for each frame it was reported in."""
    from scipy.optimize import linear_sum_assignment

    log: dict[int, list[tuple[float, int | None]]] = defaultdict(list)
    for truth, out in zip(truths, outputs, strict=True):
        objects = truth.all()
        sim = similarity(objects, out)
        hit = sim >= thresholds(objects, cable_iou)
        matched: dict[int, int] = {}
        if len(objects) and len(out):
            rows, cols = linear_sum_assignment(-np.where(hit, sim, 0.0))
            matched = {int(c): objects[r].track_id for r, c in zip(rows, cols, strict=True) if hit[r, c]}
        for k, tid in enumerate(out.ids.tolist()):
            log[int(tid)].append((truth.t, matched.get(k)))
    return dict(log)


def followed(log: dict[int, list[tuple[float, int | None]]], rep: Reported) -> tuple[int | None, float]:
    """The true object a report's track matched most during its life, and the share of its frames."""
    if rep.track_id is None:
        return None, 0.0
    rows = [g for t, g in log.get(rep.track_id, []) if rep.open_s - 1e-6 <= t <= rep.last_s + 1e-6]
    seen = [g for g in rows if g is not None]
    if not rows or not seen:
        return None, 0.0
    obj, n = Counter(seen).most_common(1)[0]
    return obj, n / len(rows)


def true_fraction(truths: list[FrameTruth], rule: TruthRule, obj: int | None, t0: float, t1: float) -> float | None:
    """The median true fraction of an object under a rule between two times (None: no zone or never seen)."""
    if obj is None or rule.zone is None:
        return None
    values = [
        v
        for ft in truths
        if t0 - 1e-6 <= ft.t <= t1 + 1e-6
        for o in ft.all()
        if o.track_id == obj and (v := rule.fraction(o)) is not None
    ]
    return float(np.median(values)) if values else None


def _near(value: float | None, threshold: float | None) -> bool:
    return value is not None and threshold is not None and abs(value - threshold) <= NEAR_POINTS + 1e-9


def match(
    reported: list[Reported],
    truth: list[TrueIncident],
    rules: list[TruthRule],
    log: dict[int, list[tuple[float, int | None]]],
    truths: list[FrameTruth],
) -> Score:
    """Match the reports of one sequence to its true incidents."""
    by_name = {r.name: r for r in rules}
    result = Score()
    followers = {rep.incident_id: followed(log, rep) for rep in reported}
    pairs = []
    for i, rep in enumerate(reported):
        obj, share = followers[rep.incident_id]
        for j, true in enumerate(truth):
            gap = abs(rep.open_s - true.open_s)
            if rep.rule == true.rule and obj == true.track_id and share >= FOLLOW_SHARE and gap <= OPEN_TOLERANCE_S:
                pairs.append((gap, i, j))
    used_r, used_t = set(), set()
    for _, i, j in sorted(pairs):
        if i in used_r or j in used_t:
            continue
        used_r.add(i)
        used_t.add(j)
        true, rep = truth[j], reported[i]
        result.outcomes.append(
            Outcome(
                "tp",
                true.rule,
                true.track_id,
                _near(true.fraction, true.threshold),
                true.fraction,
                rep,
                true,
                followers[rep.incident_id][1],
            )
        )
    for j, true in enumerate(truth):
        if j not in used_t:
            near = _near(true.fraction, true.threshold)
            result.outcomes.append(Outcome("fn", true.rule, true.track_id, near, true.fraction, None, true))
    for i, rep in enumerate(reported):
        if i in used_r:
            continue
        obj, share = followers[rep.incident_id]
        rule = by_name.get(rep.rule)
        value = None if rule is None else true_fraction(truths, rule, obj, rep.open_s, rep.last_s)
        near = rule is not None and _near(value, rule.threshold)
        result.outcomes.append(Outcome("fp", rep.rule, obj, near, value, rep, None, share))
    for rule in rules:
        if rule.kind == "crossing":
            continue
        flagged = {(o.truth_object, o.rule) for o in result.outcomes}
        for obj in sorted({o.track_id for ft in truths for o in ft.all() if o.class_id == rule.class_id}):
            if (obj, rule.name) not in flagged:
                value = true_fraction(truths, rule, obj, -np.inf, np.inf)
                result.outcomes.append(Outcome("tn", rule.name, obj, _near(value, rule.threshold), value))
    per_key = Counter(
        (followers[rep.incident_id][0], rep.rule) for rep in reported if followers[rep.incident_id][0] is not None
    )
    true_per_key = Counter((t.track_id, t.rule) for t in truth)
    result.duplicates = sum(max(0, n - max(1, true_per_key[key])) for key, n in per_key.items())
    return result
