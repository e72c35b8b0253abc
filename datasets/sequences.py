"""Generated video sequences with ground-truth tracks and incidents, for the tracking and incident benchmarks.

No labelled video can be downloaded where trtseg runs, and a tracker or a zone rule is only as good as
the measurement of it, so this renders its own, the way ``datasets.video.SampleScene`` does: a
background drawn once, then per frame the moving sprites of ``datasets.scenes`` (persons, e-bikes,
charging cables) in depth order on a ``Canvas``, whose owner map makes each object's *visible* mask
exact. Every frame comes with its truth: per object the track id, class, visible mask (as a box crop),
its box, how much of it is visible, its ground point and the share of its mask inside each zone.
From those, ``datasets.sequence_truth`` derives what a rule engine should report (rule, object,
open and close time), from the truth alone, never from a detector.

The seed drives everything (background, object looks, paths, timings, zones), so a benchmark can be
run on seeds nobody tuned on. Scenarios are in ``datasets.sequence_scenarios``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

import cv2
import numpy as np

from datasets.scenes import (
    CABLE,
    CLASS_NAMES,
    EBIKE,
    PERSON,
    BikeSpec,
    CableSpec,
    Canvas,
    PersonSpec,
    degrade,
    draw_cable,
    draw_ebike,
    draw_person,
    render_background,
)

FPS = 25
BASE_SIZE = (1280, 720)  # the scene generator's native size; other sizes are scaled from it
MIN_AREA = 60  # visible label pixels (at 1280x720) below which an object is absent, as in SceneConfig
MIN_VISIBILITY = 0.2  # objects less visible than this are 'ignored' by the metrics, not counted
CABLE_LABEL_WIDTH = 16  # px at 1280x720, as the demo model was trained (SceneConfig.cable_label_width)

NormPoint = tuple[float, float]


# ----------------------------------------------------------------------------- actors
@dataclass(frozen=True)
class Actor:
    """One labelled object and how it moves.

    Persons and bikes follow ``path``: (t seconds, x, y) key points of their ground point in pixels,
    linearly interpolated; they exist from the first key time to the last (off-frame parts are clipped).
    Cables hang still at their ends and sway sideways by ``sway_amp`` px with ``sway_period`` s.
    """

    track_id: int
    class_id: int
    spec: PersonSpec | BikeSpec | CableSpec
    path: tuple[tuple[float, float, float], ...] = ()
    sway_amp: float = 0.0
    sway_period: float = 2.7
    sway_phase: float = 0.0

    def present(self, t: float) -> bool:
        return self.class_id == CABLE or (self.path[0][0] <= t <= self.path[-1][0])

    def position(self, t: float) -> tuple[float, float]:
        ts = [p[0] for p in self.path]
        return float(np.interp(t, ts, [p[1] for p in self.path])), float(np.interp(t, ts, [p[2] for p in self.path]))

    def velocity(self, t: float) -> float:
        """Horizontal speed, px/s (a central difference: the sign is what the drawing needs)."""
        dt = 0.02
        return (self.position(t + dt)[0] - self.position(t - dt)[0]) / (2 * dt)

    def at(self, t: float) -> PersonSpec | BikeSpec | CableSpec:
        """The sprite to draw at time t."""
        spec = self.spec
        if isinstance(spec, CableSpec):
            sway = self.sway_amp * math.sin(2 * math.pi * t / self.sway_period + self.sway_phase)
            return replace(spec, sway=sway)
        x, y = self.position(t)
        v = self.velocity(t)
        moving = abs(v) > 1.0
        if isinstance(spec, BikeSpec):
            return replace(spec, x=x, ground_y=y, facing=(1 if v > 0 else -1) if moving else spec.facing)
        return replace(
            spec,
            x=x,
            foot_y=y,
            facing=(1 if v > 0 else -1) if moving else 0,
            stride=0.9 if moving else 0.0,
            phase=2 * math.pi * 1.8 * t,
        )

    @property
    def depth(self) -> float:
        """Draw order key: cables first (on the wall), then far to near."""
        return -1.0 if self.class_id == CABLE else self.path[0][2]


# ----------------------------------------------------------------------------- truth
@dataclass
class TruthObject:
    """One object as the camera sees it in one frame."""

    track_id: int
    class_id: int
    x0: int
    y0: int
    mask: np.ndarray  # bool crop of the visible label mask; frame pixel (x0 + c, y0 + r) is mask[r, c]
    visibility: float  # visible label pixels / label pixels in the frame unoccluded
    anchor: tuple[float, float]  # the true ground point in px (cables: bottom-centre of the visible box)
    inside: dict[str, float] = field(default_factory=dict)  # zone -> share of the visible mask inside

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x1, y1, x2, y2), exclusive end, of the visible mask."""
        h, w = self.mask.shape
        return self.x0, self.y0, self.x0 + w, self.y0 + h

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))

    @property
    def class_name(self) -> str:
        return CLASS_NAMES[self.class_id]

    def dense(self, shape: tuple[int, int]) -> np.ndarray:
        out = np.zeros(shape, bool)
        h, w = self.mask.shape
        out[self.y0 : self.y0 + h, self.x0 : self.x0 + w] = self.mask
        return out


@dataclass
class FrameTruth:
    """The truth of one frame: objects the metrics count, and those too occluded to count either way."""

    index: int
    t: float
    objects: list[TruthObject]
    ignored: list[TruthObject]

    def all(self) -> list[TruthObject]:
        return [*self.objects, *self.ignored]


@dataclass(frozen=True)
class TruthRule:
    """What a rule means, stated without trtseg's configuration (the benchmark translates it).

    presence: the object's visible mask has at least ``min_inside`` in / ``min_outside`` out of
    ``zone`` for ``min_duration_s``; dwell: the same (``min_inside``) for ``min_duration_s`` seconds;
    crossing: the ground point changes side of ``line`` in ``direction`` and stays ``min_stay_s``.
    Gaps shorter than ``close_after_s`` do not end an incident.
    """

    name: str
    kind: Literal["presence", "dwell", "crossing"]
    class_id: int
    zone: str | None = None
    line: str | None = None
    min_inside: float | None = None
    min_outside: float | None = None
    min_duration_s: float = 0.0
    direction: Literal["left_to_right", "right_to_left", "both"] = "both"
    min_stay_s: float = 0.4
    close_after_s: float = 5.0

    @property
    def threshold(self) -> float | None:
        return self.min_inside if self.min_inside is not None else self.min_outside

    def fraction(self, obj: TruthObject) -> float | None:
        """The share the rule compares with its threshold (outside for min_outside), None without a zone."""
        if self.zone is None:
            return None
        inside = obj.inside.get(self.zone, 0.0)
        return 1.0 - inside if self.min_outside is not None else inside


@dataclass(frozen=True)
class TrueIncident:
    """An incident the truth says a rule engine must report."""

    rule: str
    track_id: int
    class_id: int
    open_s: float
    close_s: float
    fraction: float | None = None  # median true fraction while open (presence/dwell)
    threshold: float | None = None


# ----------------------------------------------------------------------------- the sequence
@dataclass
class Stage:
    """The still part of a scene: the background (already degraded once) and where things can stand."""

    image: np.ndarray
    ground_y: float
    sills: list[tuple[float, float]]
    scale: float  # size / BASE_SIZE


def make_stage(rng: np.random.Generator, size: tuple[int, int], min_sills: int = 0) -> Stage:
    """A facade and street rendered at 1280x720 (what the model knows) and resized to ``size``."""
    for _ in range(50):
        bg = render_background(rng, BASE_SIZE)
        sills = [s for s in bg.sills if 0.15 * BASE_SIZE[1] < s[1] < bg.ground_y - 80]
        if len(sills) >= min_sills:
            break
    else:
        raise ValueError(f"no facade with {min_sills} usable window sills in 50 tries")
    image = degrade(rng, bg.image, jpeg=False)
    s = size[0] / BASE_SIZE[0]
    if size != BASE_SIZE:
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return Stage(image, bg.ground_y * s, [(x * s, y * s) for x, y in sills], s)


class Sequence:
    """A rendered-on-demand video with its truth. Frame i is at ``i / fps`` seconds."""

    def __init__(
        self,
        name: str,
        seed: int,
        stage: Stage,
        actors: list[Actor],
        seconds: float,
        fps: int = FPS,
        zones: dict[str, list[NormPoint]] | None = None,
        lines: dict[str, tuple[NormPoint, NormPoint]] | None = None,
        rules: list[TruthRule] | None = None,
        meta: dict[str, float] | None = None,
    ) -> None:
        self.name, self.seed, self.stage, self.fps = name, seed, stage, fps
        self.actors = sorted(actors, key=lambda a: a.depth)
        self.size = (stage.image.shape[1], stage.image.shape[0])
        self.n_frames = max(1, round(seconds * fps))
        self.zones = dict(zones or {})
        self.lines = dict(lines or {})
        self.rules = list(rules or [])
        self.meta = dict(meta or {})
        w, h = self.size
        self.label_width = max(2, round(CABLE_LABEL_WIDTH * stage.scale))
        self.min_area = max(8, round(MIN_AREA * stage.scale**2))
        self._zone_masks = {name: zone_mask(points, (h, w)) for name, points in self.zones.items()}
        nr = np.random.default_rng([seed, 7])
        self._noise = [
            (
                np.abs(nr.normal(0, 2.5, (h, w, 3))).astype(np.uint8),
                np.abs(nr.normal(0, 2.5, (h, w, 3))).astype(np.uint8),
            )
            for _ in range(4)
        ]

    @property
    def seconds(self) -> float:
        return self.n_frames / self.fps

    def step(self, fps: float | None) -> int:
        """Frames between two inferred ones when inferring at ``fps`` (every frame for None)."""
        return 1 if not fps else max(1, round(self.fps / fps))

    def indices(self, fps: float | None = None) -> range:
        return range(0, self.n_frames, self.step(fps))

    def frames(self, fps: float | None = None) -> Iterator[tuple[np.ndarray, FrameTruth]]:
        """(BGR image, truth) of every frame inferred at ``fps`` (every frame for None)."""
        for i in self.indices(fps):
            yield self.render(i)

    def render(self, i: int) -> tuple[np.ndarray, FrameTruth]:
        """Frame i and its truth."""
        t = i / self.fps
        canvas = Canvas(self.stage.image.copy())
        drawn: list[Actor] = []
        sprites: list[PersonSpec | BikeSpec | CableSpec] = []
        for actor in self.actors:
            if not actor.present(t):
                continue
            sprite = actor.at(t)
            if isinstance(sprite, CableSpec):
                draw_cable(canvas, sprite, self.label_width)
            elif isinstance(sprite, BikeSpec):
                draw_ebike(canvas, sprite)
            else:
                draw_person(canvas, sprite)
            drawn.append(actor)
            sprites.append(sprite)
        pos, neg = self._noise[i % len(self._noise)]
        image = cv2.subtract(cv2.add(canvas.image, pos), neg)
        return image, self._truth(i, t, canvas, drawn, sprites)

    def _truth(
        self, i: int, t: float, canvas: Canvas, drawn: list[Actor], sprites: list[PersonSpec | BikeSpec | CableSpec]
    ) -> FrameTruth:
        objects: list[TruthObject] = []
        ignored: list[TruthObject] = []
        # One labelled record per drawn sprite, in drawing order (draw_* commit exactly one each).
        for actor, sprite, record in zip(drawn, sprites, canvas._records, strict=True):
            label = record.label_mask > 0
            visible = label & (canvas.owner <= record.layer)
            area = int(np.count_nonzero(visible))
            if area < self.min_area:
                continue
            ys, xs = np.nonzero(visible)
            y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
            crop = visible[y0:y1, x0:x1].copy()
            if isinstance(sprite, CableSpec):
                anchor = ((x0 + x1) / 2.0, float(y1))
            else:
                anchor = (sprite.x, sprite.ground_y if isinstance(sprite, BikeSpec) else sprite.foot_y)
            inside = {
                name: float(np.count_nonzero(zone[y0:y1, x0:x1] & crop)) / area
                for name, zone in self._zone_masks.items()
            }
            obj = TruthObject(
                actor.track_id,
                actor.class_id,
                x0,
                y0,
                crop,
                area / max(1, int(np.count_nonzero(label))),
                anchor,
                inside,
            )
            (objects if obj.visibility >= MIN_VISIBILITY else ignored).append(obj)
        return FrameTruth(i, t, objects, ignored)

    def describe(self) -> dict[str, object]:
        counts = {CLASS_NAMES[c]: sum(a.class_id == c for a in self.actors) for c in (CABLE, EBIKE, PERSON)}
        return {
            "name": self.name,
            "seed": self.seed,
            "size": list(self.size),
            "fps": self.fps,
            "seconds": self.seconds,
            "objects": counts,
            **self.meta,
        }


def zone_mask(points: list[NormPoint], shape: tuple[int, int]) -> np.ndarray:
    """A normalised polygon rasterised at (H, W), the way trtseg's ZoneRaster does (rounded vertices)."""
    h, w = shape
    out = np.zeros(shape, np.uint8)
    cv2.fillPoly(out, [np.round(np.asarray(points, np.float64) * (w, h)).astype(np.int32)], 1)
    return out.astype(bool)


def line_side(point: tuple[float, float], line: tuple[NormPoint, NormPoint], size: tuple[int, int]) -> int:
    """+1 left of the line walking from its first point to its second, -1 right (y points down), 0 on it."""
    (ax, ay), (bx, by) = ((x * size[0], y * size[1]) for x, y in line)
    cross = (bx - ax) * (point[1] - ay) - (by - ay) * (point[0] - ax)
    return 0 if cross == 0 else (1 if cross < 0 else -1)
