"""CPU cost per frame of the object tracker (and of a camera's whole analytics) on one core.

Usage: .venv/bin/python bench/bench_analytics_cost.py [--objects 5,20,50] [--frames 400] [--with-rules]
Prints a markdown table: median and p99 milliseconds per inferred frame at each object count.

The scene is synthetic, 1280x720: objects with small masks (people as ellipses, charging cables as
thin diagonal lines) that move, bounce off the edges and score between 0.3 and 0.95, so both
association stages and the mask IoU run. Detections are built before timing; only
``ObjectTracker.update`` (and ``CameraAnalytics.update`` when the lead's module imports) is timed.
Thread pools are pinned to one thread, so the figure is one core's, without ``taskset``.
``--with-rules`` gives the camera the demo's zone and rule: presence of ``charging_cable`` in
``building_safe_zone`` by mask fraction, escalating to an alert at 40 % outside.
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # before numpy is imported: one core's figure (not when a test imports this)
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[_var] = "1"

import argparse
import gc
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trtseg.analytics.tracking import ObjectTracker  # noqa: E402
from trtseg.config.analytics import TrackerConfig  # noqa: E402
from trtseg.detections import Detections  # noqa: E402
from trtseg.masks import InstanceMasks  # noqa: E402

WIDTH, HEIGHT, FPS = 1280, 720, 25
NAMES = {0: "person", 1: "charging_cable"}
SAFE_ZONE = [(0.05, 0.05), (0.6, 0.05), (0.6, 0.95), (0.05, 0.95)]
GOAL_MS = 1.0  # the goal: tracker and rules at most 1 ms per frame at 20 objects


def _object_mask(kind: int, w: int, h: int, flip: bool) -> np.ndarray:
    canvas = np.zeros((h, w), np.uint8)
    if kind == 0:
        cv2.ellipse(canvas, (w // 2, h // 2), (max(w // 2 - 1, 1), max(h // 2 - 1, 1)), 0, 0, 360, 1, -1)
    else:
        ends = ((0, h - 1), (w - 1, 0)) if flip else ((0, 0), (w - 1, h - 1))
        cv2.line(canvas, ends[0], ends[1], 1, 3)
    return canvas.view(bool)


def make_scene(objects: int, frames: int, seed: int = 0) -> list[Detections]:
    """``frames`` frames of ``objects`` moving objects with small masks, one Detections each."""
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, 2, objects)
    sizes = np.where(
        kinds[:, None] == 0, rng.uniform([24, 48], [60, 120], (objects, 2)), rng.uniform(40, 140, (objects, 2))
    )
    pos = rng.uniform([0, 0], [WIDTH, HEIGHT], (objects, 2)) - sizes / 2
    vel = rng.uniform(-120, 120, (objects, 2)) / FPS  # pixels per frame
    flips = rng.integers(0, 2, objects).astype(bool)
    masks = [_object_mask(int(k), int(w), int(h), bool(f)) for k, (w, h), f in zip(kinds, sizes, flips, strict=True)]
    out = []
    for _ in range(frames):
        pos += vel
        for axis, limit in ((0, WIDTH), (1, HEIGHT)):
            out_low, out_high = pos[:, axis] < 0, pos[:, axis] + sizes[:, axis] > limit
            vel[out_low | out_high, axis] *= -1
            pos[:, axis] = np.clip(pos[:, axis], 0, limit - sizes[:, axis])
        x0, y0 = np.floor(pos).astype(int).T
        boxes = np.stack([x0, y0, x0 + sizes[:, 0].astype(int), y0 + sizes[:, 1].astype(int)], axis=1)
        seen = rng.random(objects) > 0.03  # a missed detection now and then
        crops = [(int(x0[i]), int(y0[i]), masks[i]) for i in np.flatnonzero(seen)]
        out.append(
            Detections(
                boxes=boxes[seen].astype(np.float32),
                scores=rng.uniform(0.3, 0.95, int(seen.sum())).astype(np.float32),
                class_ids=kinds[seen].astype(np.int32),
                masks=InstanceMasks.from_crops((HEIGHT, WIDTH), crops),
                names=NAMES,
                frame_shape=(HEIGHT, WIDTH),
            )
        )
    return out


def _time(step: Callable[[int], object], frames: int, warmup: int) -> np.ndarray:
    """Milliseconds of each ``step(i)`` after ``warmup`` untimed ones, garbage collection paused."""
    times = []
    gc.collect()
    gc.disable()
    try:
        for i in range(frames):
            started = time.perf_counter_ns()
            step(i)
            if i >= warmup:
                times.append((time.perf_counter_ns() - started) / 1e6)
    finally:
        gc.enable()
    return np.array(times)


def bench_tracker(scene: list[Detections], warmup: int) -> np.ndarray:
    tracker = ObjectTracker(TrackerConfig())
    return _time(lambda i: tracker.update(scene[i], i / FPS), len(scene), warmup)


def camera_step(scene: list[Detections], with_rules: bool) -> Callable[[int], object] | str:
    """A timed step through ``CameraAnalytics.update``, or why it cannot run yet."""
    try:
        from trtseg.analytics.camera import CameraAnalytics
        from trtseg.config import CameraConfig
        from trtseg.frames import Frame
    except ImportError as exc:
        return f"skipped: trtseg.analytics.camera is not importable yet ({exc})"
    analytics: dict[str, object] = {}
    if with_rules:
        analytics = {
            "zones": [{"name": "building_safe_zone", "points": SAFE_ZONE}],
            "rules": [
                {
                    "name": "cable_outside",
                    "kind": "presence",
                    "classes": ["charging_cable"],
                    "zone": "building_safe_zone",
                    "membership": "mask_fraction",
                    "label": "safe",
                    "escalate": {"min_outside": 0.4, "label": "danger"},
                }
            ],
        }
    camera = CameraConfig(
        id="bench", source="rtsp://127.0.0.1/bench", classes=list(NAMES.values()), analytics=analytics
    )
    cam = CameraAnalytics(camera, NAMES)
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    t0 = 1_700_000_000.0

    def step(i: int) -> object:
        return cam.update(Frame("bench", i, t0 + i / FPS, image, pts_s=i / FPS), scene[i])

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", default="5,20,50", help="object counts, comma-separated")
    parser.add_argument("--frames", type=int, default=400, help="timed frames per count (after warm-up)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed frames first")
    parser.add_argument("--with-rules", action="store_true", help="camera with the demo's zone and presence rule")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.objects.split(",") if c.strip()]

    rows = []
    camera_note = ""
    for count in counts:
        scene = make_scene(count, args.frames + args.warmup, args.seed)
        tracker_ms = bench_tracker(scene, args.warmup)
        step = camera_step(scene, args.with_rules)
        if isinstance(step, str):
            camera_note, camera_ms = step, None
        else:
            camera_ms = _time(step, len(scene), args.warmup)
        rows.append((count, tracker_ms, camera_ms))

    label = "camera analytics (demo zone + presence rule)" if args.with_rules else "camera analytics (no rules)"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"Analytics cost per inferred frame, one core ({platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {load} at the end: p99 suffers first on a busy "
        f"machine), {args.frames} frames at {WIDTH}x{HEIGHT}; goal: at most {GOAL_MS:g} ms at 20 objects "
        "for tracker and rules together.\n"
    )
    print(f"| objects | tracker median ms | tracker p99 ms | {label} median ms | p99 ms |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for count, tracker_ms, camera_ms in rows:
        cam = (
            ("n/a", "n/a")
            if camera_ms is None
            else (f"{np.median(camera_ms):.3f}", f"{np.percentile(camera_ms, 99):.3f}")
        )
        print(f"| {count} | {np.median(tracker_ms):.3f} | {np.percentile(tracker_ms, 99):.3f} | {cam[0]} | {cam[1]} |")
    if camera_note:
        print(f"\nCamera analytics {camera_note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
