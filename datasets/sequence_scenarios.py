"""The scenarios of the tracking and incident benchmarks, each a function of a seed.

- ``occlusion``: people and e-bikes that walk and roll across at different depths; a far person
  overtakes a near one (or one waiting) and is hidden behind it for 0.5-1.5 s, two e-bikes cross
  each other, someone passes behind a parked e-bike.
- ``cables``: 3-5 thin diagonal charging cables from windows, some crossing each other, all swaying,
  plus a passer-by in front of them.
- ``fraction``: one cable from a window to an e-bike and a zone ``building_safe_zone`` cut across it so
  that exactly ``outside`` of its mask lies outside the zone.
- ``dwell``: a person walks in, waits ``dwell_s`` seconds in ``waiting_area``, leaves; a passer-by.
- ``crossing``: people crossing line ``door_line`` both ways, some turning back before it, some crossing
  and coming back, an e-bike rolling across (not a person: no crossing incident).
- ``long``: minutes of all of it at once (occlusions, dwellers, crossers, a dangerous cable), for
  duplicate incidents.

Every random choice comes from the seed (salted per scenario), none was tuned to a detector.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from datasets.scenes import CABLE, EBIKE, PERSON
from datasets.sequence_actors import (
    Size,
    bike_actor,
    cable_actor,
    cut_for_outside,
    depth,
    half_plane_zone,
    person_actor,
    scenario_rng,
    through,
    walk,
)
from datasets.sequences import FPS, Actor, NormPoint, Sequence, Stage, TruthRule, make_stage

ZONE = "building_safe_zone"
WAIT_ZONE = "waiting_area"
LINE = "door_line"
DANGER_OUTSIDE = 0.4  # the origin system's rule: 40 % of a cable outside the safe zone is dangerous
INSIDE_MIN = 0.8  # a second, inside-type rule: the cable is 'in' when 80 % of it is inside
DWELL_MIN_S = 3.0
DWELL_MIN_INSIDE = 0.5


# ----------------------------------------------------------------------------- (a) occlusion
def occlusion(seed: int, seconds: float = 10.0, size: Size = (1280, 720), fps: int = FPS) -> Sequence:
    """People and e-bikes crossing and hiding each other; ``meta['occlusion_s']`` is the planned overlap."""
    rng = scenario_rng(seed, 1)
    stage = make_stage(rng, size)
    w, h = size
    actors: list[Actor] = []
    # A far person overtakes a near one (walking slower, or waiting) and passes behind it.
    d = int(rng.choice([-1, 1]))
    y_far, y_near = depth(stage, h, rng.uniform(0.05, 0.3)), depth(stage, h, rng.uniform(0.6, 0.9))
    far = person_actor(rng, 1, stage, h, y_far, [(0, 0, y_far)])
    near = person_actor(rng, 2, stage, h, y_near, [(0, 0, y_near)])
    ph_far, ph_near = far.spec.height, near.spec.height  # type: ignore[union-attr]
    occlusion_s = rng.uniform(0.5, 1.5)
    t_c, x_c = rng.uniform(0.35, 0.6) * seconds, rng.uniform(0.35, 0.65) * w
    dv = 0.25 * (ph_far + ph_near) / occlusion_s
    v_near = 0.0 if rng.random() < 0.35 else rng.uniform(0.2, 0.4) * ph_near
    margin = 0.2 * w
    actors.append(Actor(1, PERSON, far.spec, tuple(through(w, d, x_c, t_c, v_near + dv, y_far, margin))))
    if v_near == 0.0:
        actors.append(Actor(2, PERSON, near.spec, ((-1.0, x_c, y_near), (seconds + 1.0, x_c, y_near))))
    else:
        actors.append(Actor(2, PERSON, near.spec, tuple(through(w, d, x_c, t_c, v_near, y_near, margin))))
    # Two e-bikes roll towards each other at different depths and cross.
    y1, y2 = depth(stage, h, rng.uniform(0.1, 0.35)), depth(stage, h, rng.uniform(0.55, 0.85))
    t_b = t_c + rng.uniform(0.22, 0.35) * seconds * (1 if t_c < 0.5 * seconds else -1)
    x_b = rng.uniform(0.3, 0.7) * w
    for tid, y, sign in ((3, y1, d), (4, y2, -d)):
        speed = rng.uniform(90, 170) * stage.scale
        actors.append(bike_actor(rng, tid, stage, h, y, through(w, sign, x_b, t_b, speed, y, margin)))
    # Someone passes behind a parked e-bike.
    if rng.random() < 0.8:
        y_p = depth(stage, h, rng.uniform(0.45, 0.8))
        x_p = rng.uniform(0.2, 0.8) * w
        actors.append(bike_actor(rng, 5, stage, h, y_p, [(-1.0, x_p, y_p), (seconds + 1.0, x_p, y_p)]))
        y_w = y_p - (h - stage.ground_y) * rng.uniform(0.1, 0.3)
        walker = person_actor(rng, 6, stage, h, y_w, [(0, 0, y_w)])
        t_w = rng.uniform(0.2, 0.8) * seconds
        speed = rng.uniform(0.35, 0.6) * walker.spec.height  # type: ignore[union-attr]
        actors.append(Actor(6, PERSON, walker.spec, tuple(through(w, -d, x_p, t_w, speed, y_w, margin))))
    return Sequence(f"occlusion-s{seed}", seed, stage, actors, seconds, fps, meta={"occlusion_s": occlusion_s})


# ----------------------------------------------------------------------------- (b) thin cables
def cables(seed: int, seconds: float = 10.0, size: Size = (1280, 720), fps: int = FPS) -> Sequence:
    """Several thin diagonal cables that sway, some crossing each other, and a passer-by in front."""
    rng = scenario_rng(seed, 2)
    stage = make_stage(rng, size, min_sills=3)
    w, h = size
    n = int(rng.integers(3, 6))
    picks = rng.choice(len(stage.sills), size=min(n, len(stage.sills)), replace=False)
    sills = sorted(stage.sills[int(k)] for k in picks)
    actors: list[Actor] = []
    y_bike = depth(stage, h, rng.uniform(0.15, 0.4))
    bike = bike_actor(rng, 10, stage, h, y_bike, [(-1.0, rng.uniform(0.25, 0.75) * w, y_bike)])
    bike = Actor(10, EBIKE, bike.spec, ((-1.0, bike.spec.x, y_bike), (seconds + 1.0, bike.spec.x, y_bike)))  # type: ignore[union-attr]
    actors.append(bike)
    for k, sill in enumerate(sills):
        if k == 0:
            end = bike.spec.battery_point()  # type: ignore[union-attr]
        else:
            towards = 1 if sill[0] < w / 2 else -1  # left ones lean right, right ones left: they cross
            dx = towards * rng.uniform(150, 420) * stage.scale
            end = (float(np.clip(sill[0] + dx, 10, w - 10)), depth(stage, h, rng.uniform(0.0, 0.6)))
        actors.append(cable_actor(rng, k + 1, stage, sill, end, sway=(8.0, 24.0)))
    if rng.random() < 0.8:
        y = depth(stage, h, rng.uniform(0.6, 0.95))
        walker = person_actor(rng, 20, stage, h, y, [(0, 0, y)])
        speed = rng.uniform(0.35, 0.6) * walker.spec.height  # type: ignore[union-attr]
        path = through(
            w, int(rng.choice([-1, 1])), rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * seconds, speed, y, 0.2 * w
        )
        actors.append(Actor(20, PERSON, walker.spec, tuple(path)))
    return Sequence(f"cables-s{seed}", seed, stage, actors, seconds, fps)


# ----------------------------------------------------------------------------- (c) cable outside a zone
def fraction(
    seed: int,
    outside: float,
    seconds: float = 6.0,
    size: Size = (1280, 720),
    fps: int = FPS,
    danger: float = DANGER_OUTSIDE,
    inside_min: float = INSIDE_MIN,
) -> Sequence:
    """One cable from a window to an e-bike, ``outside`` (0..1) of its mask outside ``building_safe_zone``.

    The zone is the frame cut by a line across the cable (normal along it, window to plug): the part
    near the window is inside, the street end outside. The cut is placed on the rendered first frame's
    true mask; the cable sways by 1-3 px, so later frames differ by a fraction of a point.
    """
    rng = scenario_rng(seed, 3)
    stage = make_stage(rng, size, min_sills=1)
    w, h = size
    sill = stage.sills[int(rng.integers(len(stage.sills)))]
    y_bike = depth(stage, h, rng.uniform(0.15, 0.45))
    x_bike = float(np.clip(sill[0] + rng.uniform(-300, 300) * stage.scale, 0.15 * w, 0.85 * w))
    bike = bike_actor(rng, 2, stage, h, y_bike, [(-1.0, x_bike, y_bike), (seconds + 1.0, x_bike, y_bike)])
    end = bike.spec.battery_point()  # type: ignore[union-attr]
    cable = cable_actor(rng, 1, stage, sill, end, sway=(1.0, 3.0), width=(3, 5))
    rules = [
        TruthRule("cable_danger", "presence", CABLE, zone=ZONE, min_outside=danger),
        TruthRule("cable_inside", "presence", CABLE, zone=ZONE, min_inside=inside_min),
    ]
    draft = Sequence("draft", seed, stage, [cable, bike], seconds, fps)
    obj = next(o for o in draft.render(0)[1].all() if o.track_id == 1)
    ys, xs = np.nonzero(obj.mask)
    mask_xy = np.stack([xs + obj.x0, ys + obj.y0], 1).astype(np.float64)
    chord = np.array(end, np.float64) - np.array(sill, np.float64)
    normal = tuple(chord / max(np.linalg.norm(chord), 1e-9))
    zone = half_plane_zone(normal, cut_for_outside(mask_xy, normal, outside), size)  # type: ignore[arg-type]
    if len(zone) < 3:  # the cut left no frame inside: a sliver at the window end instead
        zone = half_plane_zone(normal, float((mask_xy @ np.asarray(normal)).min()) + 0.5, size)  # type: ignore[arg-type]
    meta = {"requested_outside": outside}
    seq = Sequence(
        f"fraction-{round(outside * 100):03d}-s{seed}",
        seed,
        stage,
        [cable, bike],
        seconds,
        fps,
        zones={ZONE: zone},
        rules=rules,
        meta=meta,
    )
    first = next(o for o in seq.render(0)[1].all() if o.track_id == 1)
    seq.meta["true_outside"] = 1.0 - first.inside[ZONE]
    return seq


# ----------------------------------------------------------------------------- (d) dwell
def dwell(
    seed: int,
    dwell_s: float,
    size: Size = (1280, 720),
    fps: int = FPS,
    min_dwell_s: float = DWELL_MIN_S,
    passer: bool = True,
) -> Sequence:
    """A person walks to a spot, waits ``dwell_s`` s inside ``waiting_area`` and walks on; maybe a passer-by."""
    rng = scenario_rng(seed, 4)
    stage = make_stage(rng, size)
    w, h = size
    y = depth(stage, h, rng.uniform(0.3, 0.8))
    person = person_actor(rng, 1, stage, h, y, [(0, 0, y)])
    ph = person.spec.height  # type: ignore[union-attr]
    x_s = rng.uniform(0.3, 0.7) * w
    d = int(rng.choice([-1, 1]))
    margin = 0.15 * w
    x_in, x_out = (-margin, w + margin) if d > 0 else (w + margin, -margin)
    speed = rng.uniform(0.35, 0.55) * ph
    t0 = rng.uniform(-0.5, 0.5)
    path = walk([x_in, x_s, x_out], y, t0, speed, {1: dwell_s} if dwell_s > 0 else None)
    actors = [Actor(1, PERSON, person.spec, tuple(path))]
    seconds = path[-1][0] + 0.5
    half = rng.uniform(0.3, 0.45) * ph
    zone = [
        (max(0.0, (x_s - half) / w), max(0.0, (y - 1.15 * ph) / h)),
        (min(1.0, (x_s + half) / w), max(0.0, (y - 1.15 * ph) / h)),
        (min(1.0, (x_s + half) / w), min(1.0, (y + 0.06 * ph) / h)),
        (max(0.0, (x_s - half) / w), min(1.0, (y + 0.06 * ph) / h)),
    ]
    if passer and rng.random() < 0.75:
        y_p = float(np.clip(y + (h - stage.ground_y) * rng.uniform(-0.12, 0.12), stage.ground_y + 5, h - 2))
        other = person_actor(rng, 2, stage, h, y_p, [(0, 0, y_p)])
        v = rng.uniform(0.4, 0.6) * other.spec.height  # type: ignore[union-attr]
        p_path = through(w, -d, x_s, rng.uniform(0.2, 0.8) * seconds, v, y_p, margin)
        actors.append(Actor(2, PERSON, other.spec, tuple(p_path)))
    rules = [
        TruthRule("dwell", "dwell", PERSON, zone=WAIT_ZONE, min_inside=DWELL_MIN_INSIDE, min_duration_s=min_dwell_s)
    ]
    return Sequence(
        f"dwell-{dwell_s:g}s-s{seed}",
        seed,
        stage,
        actors,
        seconds,
        fps,
        zones={WAIT_ZONE: zone},
        rules=rules,
        meta={"dwell_s": dwell_s},
    )


# ----------------------------------------------------------------------------- (e) crossing
def crossing(seed: int, seconds: float = 20.0, size: Size = (1280, 720), fps: int = FPS) -> Sequence:
    """People crossing ``door_line`` both ways; some turn back short of it, some cross and come back."""
    rng = scenario_rng(seed, 5)
    stage = make_stage(rng, size)
    w, h = size
    x_l = rng.uniform(0.4, 0.6)
    line = (
        (x_l + rng.uniform(-0.04, 0.04), min(0.98, stage.ground_y / h + 0.02)),
        (x_l + rng.uniform(-0.04, 0.04), 0.98),
    )
    actors = _crossers(rng, stage, size, seconds, line, first_id=1, count=int(rng.integers(4, 7)))
    if rng.random() < 0.7:  # an e-bike rolls across: not a person, no crossing incident
        y = depth(stage, h, rng.uniform(0.2, 0.8))
        path = through(
            w,
            int(rng.choice([-1, 1])),
            x_l * w,
            rng.uniform(0.2, 0.8) * seconds,
            rng.uniform(90, 160) * stage.scale,
            y,
            0.15 * w,
        )
        actors.append(bike_actor(rng, 50, stage, h, y, path))
    return Sequence(f"crossing-s{seed}", seed, stage, actors, seconds, fps, lines={LINE: line}, rules=_cross_rules())


def _cross_rules() -> list[TruthRule]:
    return [
        TruthRule("cross_lr", "crossing", PERSON, line=LINE, direction="left_to_right"),
        TruthRule("cross_rl", "crossing", PERSON, line=LINE, direction="right_to_left"),
    ]


def _crossers(
    rng: np.random.Generator,
    stage: Stage,
    size: Size,
    seconds: float,
    line: tuple[NormPoint, NormPoint],
    first_id: int,
    count: int,
) -> list[Actor]:
    """Walkers around a line: 60 % cross it, 20 % turn back short of it, 20 % cross and come back."""
    w, h = size
    actors = []
    for k in range(count):
        y = depth(stage, h, rng.uniform(0.08, 0.95))
        person = person_actor(rng, first_id + k, stage, h, y, [(0, 0, y)])
        ph = person.spec.height  # type: ignore[union-attr]
        u = (y / h - line[0][1]) / max(line[1][1] - line[0][1], 1e-6)
        x_line = (line[0][0] + u * (line[1][0] - line[0][0])) * w
        d = int(rng.choice([-1, 1]))
        margin = 0.1 * w + 0.3 * ph
        x_in, x_out = (-margin, w + margin) if d > 0 else (w + margin, -margin)
        speed = rng.uniform(0.35, 0.6) * ph
        kind = rng.random()
        if kind < 0.6:
            xs, pauses = [x_in, x_out], None
        elif kind < 0.8:
            xs, pauses = [x_in, x_line - d * rng.uniform(60, 160) * stage.scale, x_in], {1: rng.uniform(0.3, 1.5)}
        else:
            xs, pauses = [x_in, x_line + d * rng.uniform(120, 260) * stage.scale, x_in], {1: rng.uniform(0.5, 2.0)}
        duration = sum(abs(b - a) for a, b in pairwise(xs)) / speed + 2.0
        t0 = rng.uniform(0.0, max(0.1, seconds - duration))
        actors.append(Actor(first_id + k, PERSON, person.spec, tuple(walk(xs, y, t0, speed, pauses))))
    return actors


# ----------------------------------------------------------------------------- long: all of it
def long(seed: int, seconds: float = 600.0, size: Size = (1280, 720), fps: int = FPS) -> Sequence:
    """Minutes of street life in front of a dangerous cable: walkers (crossing, waiting, hiding each other)."""
    rng = scenario_rng(seed, 6)
    base = fraction(seed, rng.uniform(0.55, 0.85), seconds, size, fps)
    stage, (w, h) = base.stage, size
    actors = list(base.actors)
    x_w = rng.uniform(0.25, 0.75)
    top = max(0.0, stage.ground_y / h - 0.35)
    wait = [(x_w - 0.08, top), (x_w + 0.08, top), (x_w + 0.08, 1.0), (x_w - 0.08, 1.0)]
    x_l = rng.uniform(0.35, 0.65)
    line = ((x_l, min(0.98, stage.ground_y / h + 0.02)), (x_l + rng.uniform(-0.04, 0.04), 0.98))
    tid, t = 100, rng.uniform(0.0, 4.0)
    while t < seconds - 5.0:
        y = depth(stage, h, rng.uniform(0.05, 0.95))
        person = person_actor(rng, tid, stage, h, y, [(0, 0, y)])
        ph = person.spec.height  # type: ignore[union-attr]
        d = int(rng.choice([-1, 1]))
        margin = 0.1 * w + 0.3 * ph
        x_in, x_out = (-margin, w + margin) if d > 0 else (w + margin, -margin)
        speed = rng.uniform(0.35, 0.6) * ph
        if rng.random() < 0.3:  # waits somewhere (often in the waiting area) and walks on
            x_stop = (x_w + rng.uniform(-0.04, 0.04)) * w if rng.random() < 0.6 else rng.uniform(0.15, 0.85) * w
            path = walk([x_in, x_stop, x_out], y, t, speed, {1: rng.uniform(1.0, 9.0)})
        else:
            path = walk([x_in, x_out], y, t, speed)
        if path[-1][0] < seconds:
            actors.append(Actor(tid, PERSON, person.spec, tuple(path)))
            tid += 1
        if rng.random() < 0.08:  # now and then an e-bike rolls by
            y_b = depth(stage, h, rng.uniform(0.1, 0.9))
            p = through(w, -d, w / 2, t + rng.uniform(1, 4), rng.uniform(90, 160) * stage.scale, y_b, 0.15 * w)
            if p[-1][0] < seconds:
                actors.append(bike_actor(rng, tid, stage, h, y_b, p))
                tid += 1
        t += rng.uniform(2.0, 9.0)
    rules = [
        *base.rules,
        TruthRule("dwell", "dwell", PERSON, zone=WAIT_ZONE, min_inside=DWELL_MIN_INSIDE, min_duration_s=DWELL_MIN_S),
        *_cross_rules(),
    ]
    zones = {**base.zones, WAIT_ZONE: wait}
    return Sequence(
        f"long-{seconds:g}s-s{seed}",
        seed,
        stage,
        actors,
        seconds,
        fps,
        zones=zones,
        lines={LINE: line},
        rules=rules,
        meta=dict(base.meta),
    )


SCENARIOS = {
    "occlusion": occlusion,
    "cables": cables,
    "fraction": fraction,
    "dwell": dwell,
    "crossing": crossing,
    "long": long,
}
