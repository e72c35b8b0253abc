"""Building blocks of the generated sequences: actors placed and moved on a stage, zones cut across a mask.

Sizes are those of ``datasets.scenes`` at 1280x720 scaled by ``Stage.scale``, and depth follows
``perspective_scale`` (nearer is lower in the frame and larger), so a scenario reads the same at any size.
"""

from __future__ import annotations

import math

import numpy as np

from datasets.scenes import (
    CABLE,
    CABLE_COLORS,
    EBIKE,
    PERSON,
    CableSpec,
    _jitter,
    perspective_scale,
    random_bike,
    random_person,
)
from datasets.sequences import Actor, NormPoint, Stage

Size = tuple[int, int]


def depth(stage: Stage, h: int, u: float) -> float:
    """A ground y at share u of the street band (0: foot of the facade, 1: bottom of the frame)."""
    return stage.ground_y + (h - stage.ground_y) * u


def person_height(rng: np.random.Generator, stage: Stage, y: float, h: int) -> float:
    return 250.0 * stage.scale * perspective_scale(y, stage.ground_y, h) * rng.uniform(0.9, 1.08)


def person_actor(rng: np.random.Generator, tid: int, stage: Stage, h: int, y: float, path: list) -> Actor:
    return Actor(tid, PERSON, random_person(rng, 0.0, y, person_height(rng, stage, y, h)), tuple(path))


def bike_actor(rng: np.random.Generator, tid: int, stage: Stage, h: int, y: float, path: list) -> Actor:
    r = 36.0 * stage.scale * perspective_scale(y, stage.ground_y, h) * rng.uniform(0.9, 1.1)
    return Actor(tid, EBIKE, random_bike(rng, path[0][1], y, r), tuple(path))


def walk(xs: list[float], y: float, t0: float, speed: float, pauses: dict[int, float] | None = None) -> list:
    """Key points visiting ``xs`` in turn at ``speed`` px/s from ``t0``, waiting ``pauses[i]`` s at xs[i]."""
    pauses = pauses or {}
    path = [(t0, xs[0], y)]
    t = t0
    for i in range(1, len(xs)):
        t += max(abs(xs[i] - xs[i - 1]), 1e-3) / max(speed, 1e-3)
        path.append((t, xs[i], y))
        if pauses.get(i, 0.0) > 0 and i < len(xs) - 1:
            t += pauses[i]
            path.append((t, xs[i], y))
    return path


def through(w: int, d: int, x_at: float, t_at: float, speed: float, y: float, margin: float) -> list:
    """A straight walk across the frame in direction d that is at x_at at time t_at."""
    x0, x1 = (-margin, w + margin) if d > 0 else (w + margin, -margin)
    t0 = t_at - abs(x_at - x0) / speed
    return [(t0, x0, y), (t0 + abs(x1 - x0) / speed, x1, y)]


def cable_actor(
    rng: np.random.Generator,
    tid: int,
    stage: Stage,
    a: tuple[float, float],
    b: tuple[float, float],
    sway: tuple[float, float],
    width: tuple[int, int] = (2, 4),
) -> Actor:
    length = math.hypot(b[0] - a[0], b[1] - a[1])
    spec = CableSpec(
        points=[a, b],
        sags=[rng.uniform(0.04, 0.25) * length],
        width=max(1, round(int(rng.integers(width[0], width[1] + 1)) * stage.scale)),
        color=_jitter(rng, CABLE_COLORS[int(rng.integers(len(CABLE_COLORS)))], 10),
        wobble_seed=int(rng.integers(1 << 31)),
    )
    amp = rng.uniform(*sway) * stage.scale
    return Actor(tid, CABLE, spec, sway_amp=amp, sway_period=rng.uniform(1.6, 3.6), sway_phase=rng.uniform(0, 6.3))


def scenario_rng(seed: int, salt: int) -> np.random.Generator:
    return np.random.default_rng([seed, salt])


def half_plane_zone(normal: tuple[float, float], c: float, size: Size) -> list[NormPoint]:
    """The frame rectangle clipped to {q : normal . q <= c}, normalised (Sutherland-Hodgman, one edge)."""
    w, h = size
    rect = [(0.0, 0.0), (w - 1.0, 0.0), (w - 1.0, h - 1.0), (0.0, h - 1.0)]
    out: list[tuple[float, float]] = []
    for i, p in enumerate(rect):
        q = rect[(i + 1) % 4]
        fp, fq = normal[0] * p[0] + normal[1] * p[1] - c, normal[0] * q[0] + normal[1] * q[1] - c
        if fp <= 0:
            out.append(p)
        if (fp < 0 < fq) or (fq < 0 < fp):
            s = fp / (fp - fq)
            out.append((p[0] + s * (q[0] - p[0]), p[1] + s * (q[1] - p[1])))
    pts: list[NormPoint] = []
    for x, y in out:
        pt = (round(min(max(x / w, 0.0), 1.0), 6), round(min(max(y / h, 0.0), 1.0), 6))
        if pt not in pts:
            pts.append(pt)
    return pts


def cut_for_outside(mask_xy: np.ndarray, normal: tuple[float, float], outside: float) -> float:
    """The c with ``outside`` of the mask pixels (x, y rows) beyond normal . q = c."""
    p = np.sort(mask_xy @ np.asarray(normal, np.float64))
    n = len(p)
    k = round((1.0 - outside) * n)  # pixels to keep inside
    if k >= n:
        return float(p[-1]) + 4.0
    if k <= 0:
        return float(p[0]) - 4.0
    return float(p[k - 1] + p[k]) / 2.0
