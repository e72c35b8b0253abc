"""Per-camera analytics: the tracker, named zones and lines, and the rules that turn tracks into incidents.

Shapes are in normalised frame coordinates (0..1 of width and height), so they survive a change of
resolution. Rules are a discriminated union on ``kind`` (presence, crossing, dwell, count): the
union is the registry, and adding a rule kind is adding one model and one evaluator.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from trtseg.config.base import Section

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Fraction01 = Annotated[float, Field(ge=0.0, le=1.0)]
Point = tuple[Fraction01, Fraction01]
Severity = Literal["alert", "detection"]
SEVERITY_RANK: dict[str, int] = {"detection": 0, "alert": 1}
MIN_POLYGON_AREA = 1e-5  # of the frame: a polygon smaller than this is degenerate


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _segments_cross(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """Proper or touching intersection of two segments (collinear overlap included)."""
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0)) and ((d3 > 0) != (d4 > 0)) and d1 * d2 < 0 and d3 * d4 < 0:
        return True

    def on_segment(o: Point, a: Point, b: Point) -> bool:
        return min(o[0], a[0]) <= b[0] <= max(o[0], a[0]) and min(o[1], a[1]) <= b[1] <= max(o[1], a[1])

    return any(
        d == 0 and on_segment(*seg, pt)
        for d, seg, pt in ((d1, (q1, q2), p1), (d2, (q1, q2), p2), (d3, (p1, p2), q1), (d4, (p1, p2), q2))
    )


def polygon_area(points: list[Point]) -> float:
    """Absolute shoelace area of a polygon in normalised units."""
    total = 0.0
    for i, (x1, y1) in enumerate(points):
        x2, y2 = points[(i + 1) % len(points)]
        total += x1 * y2 - x2 * y1
    return abs(total) / 2.0


def polygon_problem(points: list[Point]) -> str | None:
    """Why a polygon is unusable (repeated points, zero area, crossing edges), or None when it is fine."""
    if len(set(points)) != len(points):
        return "polygon repeats a point"
    n = len(points)
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # neighbouring edges share a vertex
            if _segments_cross(points[i], points[(i + 1) % n], points[j], points[(j + 1) % n]):
                return f"polygon is self-intersecting (edge {i} crosses edge {j})"
    if polygon_area(points) < MIN_POLYGON_AREA:
        return f"polygon is degenerate (area {polygon_area(points):.2e} of the frame, at least {MIN_POLYGON_AREA})"
    return None


class ZoneConfig(Section):
    """A named polygon on the camera's picture."""

    name: str = Field(pattern=NAME_PATTERN, description="Unique zone name on this camera.")
    points: list[Point] = Field(
        min_length=3, max_length=64, description="Vertices as (x, y) in 0..1 of the frame's width and height."
    )

    @model_validator(mode="after")
    def _simple_polygon(self) -> ZoneConfig:
        problem = polygon_problem(list(self.points))
        if problem:
            raise ValueError(f"zone '{self.name}': {problem}")
        return self


class LineConfig(Section):
    """A named two-point line; 'left' and 'right' are as seen walking from the first point to the second."""

    name: str = Field(pattern=NAME_PATTERN, description="Unique line name on this camera.")
    points: tuple[Point, Point] = Field(description="The line's two ends as (x, y) in 0..1.")

    @model_validator(mode="after")
    def _two_distinct_points(self) -> LineConfig:
        (x1, y1), (x2, y2) = self.points
        if abs(x1 - x2) + abs(y1 - y2) < 1e-4:
            raise ValueError(f"line '{self.name}': its two points coincide")
        return self


class TrackerConfig(Section):
    """ByteTrack-style association by box IoU and mask IoU; times are seconds of analysed video.

    Defaults were tuned on generated sequences (``bench/bench_tracking.py``, development seeds only)
    with the demo segmenter, and checked on seeds nobody tuned on; see ``trtseg/analytics/tracking.py``.
    """

    enabled: bool = Field(default=True, description="Track objects (rules and incidents need tracks).")
    high_score: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Detections at or above it are matched first and may start tracks."
    )
    low_score: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Detections between it and high_score only extend existing tracks."
    )
    new_track_score: float = Field(
        default=0.6, ge=0.0, le=1.0, description="A detection must score this much to start a new track."
    )
    class_high_score: dict[str, Fraction01] = Field(
        default_factory=lambda: {"charging_cable": 0.25},
        description="high_score of the named classes where it differs: a segmenter is less sure of a thin cable "
        "than of a person (the demo model scores real cables 0.25-0.6, real people 0.7-0.9).",
    )
    class_new_track_score: dict[str, Fraction01] = Field(
        default_factory=lambda: {"charging_cable": 0.25},
        description="new_track_score of the named classes where it differs.",
    )
    match_threshold: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="Least similarity (the larger of box IoU and mask IoU of the predicted box) for a match.",
    )
    low_match_threshold: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Least similarity for a detection below high_score to extend a track (ByteTrack's 0.5): a "
        "doubtful detection must overlap well, or a ghost box between two walkers takes one's id.",
    )
    use_masks: bool = Field(
        default=True, description="Also associate by mask IoU: thin objects (cables) barely overlap as boxes."
    )
    mask_weight: float = Field(
        default=0.25,
        ge=0.0,
        le=1.0,
        description="Added to a pair's similarity times its mask IoU when choosing matches: where boxes are "
        "ambiguous (crossing cables share a box) the mask that agrees wins; 0: similarity alone.",
    )
    duplicate_iou: float = Field(
        default=0.8,
        ge=0.0,
        le=1.0,
        description="A detection left over whose mask IoU with one of the same class matched in the frame (or a "
        "better new one) is at least this is the same object reported twice: it starts no track. 1: off.",
    )
    duplicate_cover: float = Field(
        default=0.7,
        ge=0.0,
        le=1.0,
        description="A track whose mask lies at least this much inside the mask of an older track of the same "
        "class shown in the frame is a second report of that object (a cable's upper part, a cable half hidden "
        "by a passer-by): it is kept but not shown, so it raises no incident of its own. 1: off.",
    )
    duplicate_classes: list[str] = Field(
        default_factory=lambda: ["charging_cable"],
        description="Classes duplicate_iou and duplicate_cover apply to (empty: all): thin objects a segmenter "
        "splits or doubles; two people overlapping are two people.",
    )
    motion_noise: float = Field(
        default=0.1,
        gt=0.0,
        le=10.0,
        description="Process noise of the Kalman filter relative to ByteTrack's: lower trusts steady motion "
        "more than a jumpy box.",
    )
    second_sighting_speed: float = Field(
        default=2.0,
        ge=0.0,
        le=20.0,
        description="A track seen once takes a detection of its class and size this many of its sizes per "
        "second away (a walker at 5 fps moves past its own width); 0: by overlap only.",
    )
    lost_track_s: float = Field(
        default=2.0, gt=0.0, le=600.0, description="How long an unseen track is kept to be found again."
    )
    duplicate_track_iou: float = Field(
        default=0.85,
        gt=0.0,
        le=1.0,
        description="A lost track whose box overlaps a matched track's of its class by at least this much is the "
        "same object (ByteTrack's duplicate removal): the younger goes, the older keeps the object. 1: off.",
    )
    turn_taking_merge: int = Field(
        default=3,
        ge=0,
        le=100,
        description="Two tracks that hand one detection back and forth this many times in a row are one object "
        "(a second box of a walker started a second track): the younger goes, the older keeps the object. One "
        "handover and its return is a swap in an occlusion, put right; 0: off.",
    )
    probation_frames: int = Field(
        default=3, ge=1, le=100, description="Inferred frames a new track must be matched before it is confirmed."
    )
    probation_s: float | None = Field(
        default=0.15,
        ge=0.0,
        le=60.0,
        description="Or: a new track matched in two frames this many seconds apart is confirmed, whichever comes "
        "first (3 frames at 25 fps, 2 at 5 fps); None: probation_frames only.",
    )
    confirm_at_start: bool = Field(
        default=True,
        description="Tracks born in the tracker's first frame (a camera starting) are confirmed at once, as "
        "ByteTrack does: what is already in view is no newcomer.",
    )
    class_aware: bool = Field(default=True, description="Match detections only to tracks of the same class.")


class RuleBase(Section):
    """What every rule has: whom it concerns, how sure, how long, how bad, how often."""

    name: str = Field(pattern=NAME_PATTERN, description="Unique rule name on this camera.")
    classes: list[str] = Field(
        default_factory=list, description="Classes the rule concerns; empty: the camera's classes of interest."
    )
    min_confidence: float = Field(default=0.25, ge=0.0, le=1.0, description="Detections below it are ignored.")
    min_area: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Smallest mask area, as a fraction of the frame, that counts."
    )
    min_duration_s: float = Field(
        default=0.0, ge=0.0, le=3600.0, description="Inertia: the condition must hold this long before it opens."
    )
    severity: Severity = Field(default="detection", description="'alert' or 'detection' when the rule matches.")
    cooldown_s: float = Field(
        default=0.0, ge=0.0, le=86400.0, description="After an incident closes, none opens for the same key this long."
    )
    close_after_s: float = Field(
        default=5.0, gt=0.0, le=3600.0, description="The incident closes after the condition is unmet this long."
    )
    label: str | None = Field(default=None, max_length=64, description="Word leading the result text, e.g. 'safe'.")
    clip: bool | None = Field(
        default=None,
        description="Whether this rule's incidents get a clip: true always, false never; empty: the camera's "
        "clips.severities decide (alerts by default). Needs the camera's clips.enabled.",
    )


class Escalation(Section):
    """When a presence incident becomes an alert (it never goes back: incidents only escalate)."""

    min_inside: Fraction01 | None = Field(default=None, description="Alert when at least this share is inside.")
    min_outside: Fraction01 | None = Field(default=None, description="Alert when at least this share is outside.")
    label: str | None = Field(default=None, max_length=64, description="Word leading the result text, e.g. 'danger'.")

    @model_validator(mode="after")
    def _one_threshold(self) -> Escalation:
        if (self.min_inside is None) == (self.min_outside is None):
            raise ValueError("set exactly one of min_inside and min_outside")
        return self


class ZoneTest(Section):
    """How an object's membership of a zone is judged; mixed into the rules that use zones."""

    zone: str | None = Field(default=None, description="Zone name; empty: the whole frame.")
    membership: Literal["mask_fraction", "anchor"] = Field(
        default="mask_fraction",
        description="'mask_fraction': the share of the instance mask inside the polygon; 'anchor': one point of "
        "the box (as box-based systems do), inside counting as 1 and outside as 0.",
    )
    anchor: Literal["bottom_center", "center"] = Field(default="bottom_center", description="The 'anchor' point.")
    min_inside: Fraction01 | None = Field(default=None, description="The object is in when this share is inside.")
    min_outside: Fraction01 | None = Field(default=None, description="The object counts when this share is outside.")
    hysteresis: float = Field(
        default=0.05, ge=0.0, le=0.5, description="A met threshold is left only below it minus this margin."
    )
    median_frames: int = Field(
        default=3, ge=1, le=25, description="Fractions are the median over this many recent inferred frames."
    )

    @model_validator(mode="after")
    def _thresholds(self) -> ZoneTest:
        if self.min_inside is not None and self.min_outside is not None:
            raise ValueError("set at most one of min_inside and min_outside")
        if self.zone is None and (self.min_inside is not None or self.min_outside is not None):
            raise ValueError("min_inside / min_outside need a zone")
        return self


class PresenceRule(RuleBase, ZoneTest):
    """An object of the classes is present (in the zone, by its mask or its anchor): one incident per track."""

    kind: Literal["presence"] = "presence"
    window: int = Field(default=1, ge=1, le=1000, description="N: recent inferred frames looked at (K of N).")
    min_hits: int = Field(default=1, ge=1, le=1000, description="K: frames of the last N that must match.")
    escalate: Escalation | None = Field(default=None, description="When the incident becomes an alert.")

    @model_validator(mode="after")
    def _hits_fit_window(self) -> PresenceRule:
        if self.min_hits > self.window:
            raise ValueError(f"min_hits ({self.min_hits}) cannot exceed window ({self.window})")
        if self.escalate is not None and self.zone is None:
            raise ValueError("escalate needs a zone")
        return self


class CrossingRule(RuleBase):
    """A track's anchor crosses a line in the given direction and stays on the new side for some frames."""

    kind: Literal["crossing"] = "crossing"
    line: str = Field(description="Line name.")
    direction: Literal["left_to_right", "right_to_left", "both"] = Field(
        default="both", description="Which way counts, seen walking from the line's first point to its second."
    )
    anchor: Literal["bottom_center", "center"] = Field(default="bottom_center", description="The point that crosses.")
    min_frames: int = Field(
        default=2, ge=1, le=100, description="Inferred frames the anchor must stay on the new side."
    )


class DwellRule(RuleBase, ZoneTest):
    """An object stays in a zone at least ``min_dwell_s`` seconds."""

    kind: Literal["dwell"] = "dwell"
    min_dwell_s: float = Field(gt=0.0, le=86400.0, description="Seconds inside the zone before it opens.")

    @model_validator(mode="after")
    def _needs_zone(self) -> DwellRule:
        if self.zone is None:
            raise ValueError("a dwell rule needs a zone")
        return self


class CountRule(RuleBase, ZoneTest):
    """At least ``min_count`` objects of the classes are in the zone at once: one incident per (zone, rule)."""

    kind: Literal["count"] = "count"
    min_count: int = Field(ge=1, le=10_000, description="Objects needed at once.")


Rule = Annotated[PresenceRule | CrossingRule | DwellRule | CountRule, Field(discriminator="kind")]


class AnalyticsConfig(Section):
    """Tracker, zones, lines and rules of one camera."""

    tracker: TrackerConfig = Field(default_factory=TrackerConfig, description="Object tracker.")
    zones: list[ZoneConfig] = Field(default_factory=list, max_length=64, description="Named polygons.")
    lines: list[LineConfig] = Field(default_factory=list, max_length=64, description="Named lines.")
    rules: list[Rule] = Field(default_factory=list, max_length=128, description="Rules that raise incidents.")
    refresh_s: float = Field(
        default=2.0, ge=0.2, le=60.0, description="An open incident's row is refreshed at least this often."
    )
    trajectory_points: int = Field(default=200, ge=2, le=200, description="Most trajectory points kept per incident.")

    @model_validator(mode="after")
    def _references(self) -> AnalyticsConfig:
        for kind, items in (("zone", self.zones), ("line", self.lines), ("rule", self.rules)):
            seen: set[str] = set()
            for item in items:
                if item.name in seen:
                    raise ValueError(f"{kind} name '{item.name}' is used more than once")
                seen.add(item.name)
        zones, lines = {z.name for z in self.zones}, {line.name for line in self.lines}
        for index, rule in enumerate(self.rules):
            zone = getattr(rule, "zone", None)
            if zone is not None and zone not in zones:
                raise ValueError(f"rules.{index} ('{rule.name}'): zone '{zone}' is not defined")
            if isinstance(rule, CrossingRule) and rule.line not in lines:
                raise ValueError(f"rules.{index} ('{rule.name}'): line '{rule.line}' is not defined")
        return self

    def zone(self, name: str) -> ZoneConfig:
        return next(z for z in self.zones if z.name == name)

    def line(self, name: str) -> LineConfig:
        return next(line for line in self.lines if line.name == name)
