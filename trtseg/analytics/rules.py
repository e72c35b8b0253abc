"""Rule evaluators: per analysed frame, which (rule, track) keys meet their condition now.

One evaluator per rule kind (presence, crossing, dwell, count), registered in ``EVALUATORS`` by the
rule's ``kind``. An evaluator keeps only what its condition needs (fraction medians, hysteresis
states, sides of a line, entry times) and returns ``Observation``s; opening, escalating, refreshing
and closing incidents is ``trtseg.analytics.incidents``'s job, so every kind shares one lifecycle.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import median
from typing import Any

import numpy as np

from trtseg.analytics.geometry import ZoneRaster, anchor_points, segments_intersect, side_of_line
from trtseg.config.analytics import (
    AnalyticsConfig,
    CountRule,
    CrossingRule,
    DwellRule,
    PresenceRule,
    RuleBase,
    ZoneTest,
)
from trtseg.detections import Detections

Key = tuple[str, int | None]  # (rule name, track id; None for count rules)
DEFAULT_ZONE_SHARE = 0.5  # dwell and count rules without a threshold: in when half the mask is inside
# A box's bottom edge stands for the object's ground point only to within a few pixels (feet, shadow, the
# mask's edge): a crossing may pass a line's end by this share of the object's box height. A walker close
# to the camera, crossing a line drawn down to the frame's bottom, otherwise seems to go around its end.
LINE_END_SLACK = 0.1


@dataclass(slots=True)
class Observation:
    """One key that meets its rule's condition in this frame, with the figures an incident keeps."""

    key: Key
    rule: RuleBase
    class_name: str | None
    confidence: float
    index: list[int]  # rows of the frame's tracked detections this concerns
    alert: bool = False  # the escalation condition holds (presence rules)
    fraction: float | None = None  # median share inside (or outside, per the rule) its zone
    side: str | None = None  # "inside" | "outside": what ``fraction`` measures
    count: int | None = None
    anchor: tuple[float, float] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    source: Detections | None = None  # the frame's tracked objects, of which ``index`` are this key's

    @property
    def detections(self) -> Detections | None:
        """This key's objects, sliced only when asked for (key frames, stored records)."""
        return None if self.source is None else self.source[self.index]


class FrameView:
    """One analysed frame's tracked objects, with zone fractions and anchors computed once and shared."""

    def __init__(self, tracked: Detections, zones: dict[str, ZoneRaster], clock: float, ts: float) -> None:
        self.tracked = tracked
        self.zones = zones
        self.clock = clock  # analysis seconds (see trtseg.analytics.camera)
        self.ts = ts  # capture time
        self.ids = [int(i) for i in (tracked.tracker_ids if tracked.tracker_ids is not None else [])]
        self.names = tracked.class_names
        self.area_share = tracked.areas / float(max(1, tracked.frame_shape[0] * tracked.frame_shape[1]))
        self._fractions: dict[str, np.ndarray] = {}
        self._anchors: dict[str, np.ndarray] = {}

    def inside(self, zone: str) -> np.ndarray:
        """(N,) share of each object's mask inside the zone."""
        if zone not in self._fractions:
            self._fractions[zone] = self.zones[zone].inside_fractions(self.tracked)
        return self._fractions[zone]

    def anchors(self, anchor: str) -> np.ndarray:
        if anchor not in self._anchors:
            self._anchors[anchor] = anchor_points(self.tracked, anchor)
        return self._anchors[anchor]

    def observe(
        self, rule: RuleBase, row: int, anchor: tuple[float, float] | None = None, **figures: Any
    ) -> Observation:
        """The observation of one object (row) under ``rule``, keyed by (rule, track)."""
        return Observation(
            key=(rule.name, self.ids[row]),
            rule=rule,
            class_name=self.names[row],
            confidence=float(self.tracked.scores[row]),
            index=[row],
            source=self.tracked,
            anchor=anchor if anchor is not None else _point(self.anchors("bottom_center")[row]),
            **figures,
        )

    def eligible(self, rule: RuleBase, classes: set[str]) -> list[int]:
        """Rows of the rule's classes that pass its confidence and area."""
        scores = self.tracked.scores
        return [
            i
            for i, name in enumerate(self.names)
            if name in classes and scores[i] >= rule.min_confidence and self.area_share[i] >= rule.min_area
        ]


def zone_side(test: ZoneTest, default_share: float | None) -> tuple[str, float] | None:
    """Which share a zone test measures and its threshold; None when any object matches."""
    if test.min_outside is not None:
        return "outside", test.min_outside
    if test.min_inside is not None:
        return "inside", test.min_inside
    if test.zone is None or default_share is None:
        return None
    return "inside", default_share


class Hysteresis:
    """A threshold met on the median of recent values, left only below the threshold minus a margin."""

    __slots__ = ("margin", "on", "threshold", "values")

    def __init__(self, threshold: float, margin: float, frames: int) -> None:
        self.threshold, self.margin = threshold, margin
        self.values: deque[float] = deque(maxlen=frames)
        self.on = False

    def step(self, value: float) -> tuple[bool, float]:
        self.values.append(value)
        level = float(median(self.values))
        limit = self.threshold - self.margin if self.on else self.threshold
        self.on = level >= limit - 1e-9
        return self.on, level


class Evaluator:
    """Base: per-track state that is dropped when its track has not been seen for a while."""

    def __init__(self, rule: Any, config: AnalyticsConfig, default_classes: list[str]) -> None:
        self.rule = rule
        self.config = config
        self.classes = set(rule.classes or default_classes)
        self._state: dict[int, Any] = {}
        self._seen: dict[int, float] = {}

    def observe(self, view: FrameView) -> list[Observation]:
        raise NotImplementedError

    def _touch(self, track: int, clock: float, make: Callable[[], Any]) -> Any:
        self._seen[track] = clock
        state = self._state.get(track)
        if state is None:
            state = self._state[track] = make()
        return state

    def forget_older_than(self, clock: float) -> None:
        """Drop the state of tracks unseen since ``clock`` (their tracker has long dropped them)."""
        for track in [t for t, seen in self._seen.items() if seen < clock]:
            self._seen.pop(track, None)
            self._state.pop(track, None)

    def _share(self, view: FrameView, row: int, test: ZoneTest, side: str) -> float:
        """The measured share (anchor tests give 0 or 1)."""
        assert test.zone is not None
        if test.membership == "anchor":
            point = view.anchors(test.anchor)[row : row + 1]
            inside = float(view.zones[test.zone].contains_points(point, view.tracked.frame_shape)[0])
        else:
            inside = float(view.inside(test.zone)[row])
        return inside if side == "inside" else 1.0 - inside


@dataclass(slots=True)
class _PresenceState:
    hits: deque[bool]
    condition: Hysteresis | None
    escalation: Hysteresis | None


class PresenceEvaluator(Evaluator):
    """Objects present (K of N frames), optionally by their share in a zone; escalation to alert."""

    rule: PresenceRule

    def observe(self, view: FrameView) -> list[Observation]:
        rule, out = self.rule, []
        condition = zone_side(rule, None)
        escalation = None
        if rule.escalate is not None:
            esc = rule.escalate
            escalation = ("outside", esc.min_outside) if esc.min_outside is not None else ("inside", esc.min_inside)
        for row in view.eligible(rule, self.classes):
            track = view.ids[row]
            state: _PresenceState = self._touch(
                track,
                view.clock,
                lambda: _PresenceState(
                    deque(maxlen=rule.window),
                    None if condition is None else Hysteresis(condition[1], rule.hysteresis, rule.median_frames),
                    None if escalation is None else Hysteresis(escalation[1], rule.hysteresis, rule.median_frames),
                ),
            )
            met, fraction, side = True, None, None
            if condition is not None and state.condition is not None:
                side = condition[0]
                met, fraction = state.condition.step(self._share(view, row, rule, side))
            alert = False
            if escalation is not None and state.escalation is not None:
                side = escalation[0]
                alert, fraction = state.escalation.step(self._share(view, row, rule, side))
            state.hits.append(met)
            if sum(state.hits) < rule.min_hits or not met:
                continue
            out.append(view.observe(rule, row, alert=alert, fraction=fraction, side=side))
        return out


@dataclass(slots=True)
class _DwellState:
    zone: Hysteresis
    entered: float | None = None


class DwellEvaluator(Evaluator):
    """Objects in a zone for at least ``min_dwell_s`` seconds of analysed video."""

    rule: DwellRule

    def observe(self, view: FrameView) -> list[Observation]:
        rule, out = self.rule, []
        side, threshold = zone_side(rule, DEFAULT_ZONE_SHARE) or ("inside", DEFAULT_ZONE_SHARE)
        for row in view.eligible(rule, self.classes):
            track = view.ids[row]
            state: _DwellState = self._touch(
                track, view.clock, lambda: _DwellState(Hysteresis(threshold, rule.hysteresis, rule.median_frames))
            )
            inside, fraction = state.zone.step(self._share(view, row, rule, side))
            if not inside:
                state.entered = None
                continue
            state.entered = view.clock if state.entered is None else state.entered
            dwell = view.clock - state.entered
            if dwell + 1e-9 < rule.min_dwell_s:
                continue
            out.append(view.observe(rule, row, fraction=fraction, side=side, details={"dwell_s": round(dwell, 2)}))
        return out


@dataclass(slots=True)
class _CrossingState:
    stable: int = 0  # the side held for min_frames frames (0: not yet known)
    stable_point: tuple[float, float] | None = None
    candidate: int = 0
    candidate_frames: int = 0
    candidate_point: tuple[float, float] | None = None
    crossings: int = 0


class CrossingEvaluator(Evaluator):
    """A track's anchor moves from one side of a line to the other, across the segment, and stays."""

    rule: CrossingRule

    def __init__(self, rule: CrossingRule, config: AnalyticsConfig, default_classes: list[str]) -> None:
        super().__init__(rule, config, default_classes)
        self.line = config.line(rule.line).points

    def observe(self, view: FrameView) -> list[Observation]:
        rule, out = self.rule, []
        anchors = view.anchors(rule.anchor)
        heights = (view.tracked.boxes[:, 3] - view.tracked.boxes[:, 1]) / float(max(1, view.tracked.frame_shape[0]))
        for row in view.eligible(rule, self.classes):
            track = view.ids[row]
            state: _CrossingState = self._touch(track, view.clock, _CrossingState)
            point = _point(anchors[row])
            side = side_of_line(point, self.line)
            if side == 0:
                continue
            if side == state.stable or state.stable == 0:  # the first side seen is where the track starts
                state.stable, state.candidate, state.candidate_frames, state.stable_point = side, 0, 0, point
                continue
            if side != state.candidate:
                state.candidate, state.candidate_frames, state.candidate_point = side, 0, point
            state.candidate_frames += 1
            if state.candidate_frames < rule.min_frames:
                continue
            previous, before = state.stable, state.stable_point
            state.stable, state.stable_point, state.candidate, state.candidate_frames = side, point, 0, 0
            if before is None or state.candidate_point is None:
                continue
            line = extended(self.line, LINE_END_SLACK * float(heights[row]))
            if not segments_intersect(before, state.candidate_point, *line):
                continue  # went around the segment's end
            direction = "left_to_right" if previous > 0 else "right_to_left"
            if rule.direction not in ("both", direction):
                continue
            state.crossings += 1
            out.append(
                view.observe(rule, row, anchor=point, details={"direction": direction, "crossings": state.crossings})
            )
        return out


class CountEvaluator(Evaluator):
    """At least ``min_count`` objects of the classes in a zone at once; one key per rule."""

    rule: CountRule

    def observe(self, view: FrameView) -> list[Observation]:
        rule = self.rule
        side, threshold = zone_side(rule, DEFAULT_ZONE_SHARE) or ("inside", DEFAULT_ZONE_SHARE)
        rows: list[int] = []
        for row in view.eligible(rule, self.classes):
            track = view.ids[row]
            state: Hysteresis = self._touch(
                track, view.clock, lambda: Hysteresis(threshold, rule.hysteresis, rule.median_frames)
            )
            if state.step(self._share(view, row, rule, side))[0]:
                rows.append(row)
        if len(rows) < rule.min_count:
            return []
        scores = view.tracked.scores
        names = sorted({view.names[r] for r in rows})
        return [
            Observation(
                key=(rule.name, None),
                rule=rule,
                class_name=",".join(names),
                confidence=float(max(scores[r] for r in rows)),
                index=rows,
                source=view.tracked,
                count=len(rows),
                details={"tracks": [view.ids[r] for r in rows]},
            )
        ]


EVALUATORS: dict[str, type[Evaluator]] = {
    "presence": PresenceEvaluator,
    "crossing": CrossingEvaluator,
    "dwell": DwellEvaluator,
    "count": CountEvaluator,
}


def build_evaluators(config: AnalyticsConfig, default_classes: list[str]) -> list[Evaluator]:
    """One evaluator per configured rule, in configuration order."""
    return [EVALUATORS[rule.kind](rule, config, default_classes) for rule in config.rules]


def extended(
    line: tuple[tuple[float, float], tuple[float, float]], margin: float
) -> tuple[tuple[float, float], tuple[float, float]]:
    """The segment lengthened by ``margin`` (normalised units) beyond each end."""
    (ax, ay), (bx, by) = line
    length = float(np.hypot(bx - ax, by - ay))
    if margin <= 0.0 or length <= 0.0:
        return line
    ux, uy = (bx - ax) / length * margin, (by - ay) / length * margin
    return (ax - ux, ay - uy), (bx + ux, by + uy)


def _point(values: np.ndarray) -> tuple[float, float]:
    return (round(float(values[0]), 5), round(float(values[1]), 5))
