"""Short H.264 sample videos of a moving facade scene, for the demo and the pipeline tests.

trtseg ingests camera streams, and no sample footage can be downloaded where it runs, so
this renders one: a facade with a charging cable swaying from a window down to a parked
e-bike, a person walking across, a second e-bike rolling in, under a camera that pans
slowly and jitters a little. Cheap per frame on purpose (a 10 s 720p clip takes a few
seconds on 2 cores): the background is rendered once, larger than the frame, and each
frame is a crop of it with a few sprites (cable, bikes, person) drawn on top.

CLI: ``python -m datasets.video out.mp4 --seconds 10 [--fps 25] [--size 1280x720] [--seed 0]``
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import av
import cv2
import numpy as np

from datasets.scenes import (
    BikeSpec,
    CableSpec,
    Canvas,
    Instance,
    SceneConfig,
    degrade,
    draw_cable,
    draw_ebike,
    draw_person,
    perspective_scale,
    random_bike,
    random_cable,
    random_person,
    render_background,
)

log = logging.getLogger(__name__)

MARGIN = 48  # px of background around the frame, room for the camera pan and jitter


@dataclass
class VideoFrame:
    """One rendered frame; `instances` is filled only when labels were asked for."""

    index: int
    image: np.ndarray  # uint8 (H, W, 3), BGR
    instances: list[Instance] | None = None


class SampleScene:
    """A fixed scene (background, cable, bikes, walker) that can be rendered at any frame."""

    def __init__(self, seconds: float, fps: int, size: tuple[int, int], seed: int, charging_bay: bool = False) -> None:
        rng = np.random.default_rng(seed)
        self.rng_seed = seed
        self.fps = fps
        self.size = size
        self.n_frames = max(1, round(seconds * fps))
        w, h = size
        world = (w + 2 * MARGIN, h + 2 * MARGIN)
        bg = render_background(rng, world)
        for _ in range(50):  # a cable needs a window above the street
            if bg.sills:
                break
            bg = render_background(rng, world)
        else:
            raise ValueError(f"no facade with windows fits a {w}x{h} frame")
        self.background = degrade(rng, bg.image, jpeg=False)
        self.cfg = SceneConfig(size=size)
        gy = float(bg.ground_y)
        hw = float(world[1])
        # A parked e-bike near the facade, on charge through a cable from a window.
        y_park = gy + (hw - gy) * rng.uniform(0.2, 0.4)
        visible = [s for s in bg.sills if MARGIN + 60 < s[1] < gy - 80] or bg.sills  # in frame, not at the top
        sill = visible[int(rng.integers(len(visible)))]
        x_park = float(np.clip(sill[0] + rng.uniform(-250, 250), 150, world[0] - 150))
        self.parked = random_bike(rng, x_park, y_park, 36.0 * perspective_scale(y_park, gy, int(hw)))
        cable = random_cable(rng, sill, self.parked.battery_point(), gy, self.cfg.cable_width)
        self.cable = replace(cable, width=max(3, cable.width))
        # The demo's safe case: a bike charging in a bay by the wall through a short cable from a
        # ground-floor window (drawn from its own generator, so the rest of the scene is unchanged).
        self.bay: tuple[BikeSpec, CableSpec] | None = None
        if charging_bay:
            bay_rng = np.random.default_rng(seed + 7)
            low = max(s[1] for s in bg.sills)  # the ground floor's sills; the lead comes from the floor above
            left = [s for s in bg.sills if s[1] < low - 60 and MARGIN + 150 < s[0] < MARGIN + 0.4 * w]
            sill = max(left, key=lambda s: (s[1], -s[0])) if left else min(bg.sills, key=lambda s: s[0])
            y_bay = gy + (hw - gy) * 0.12
            bike = random_bike(bay_rng, sill[0] + 90.0, y_bay, 36.0 * perspective_scale(y_bay, gy, int(hw)))
            lead = random_cable(bay_rng, sill, bike.battery_point(), gy, self.cfg.cable_width)
            self.bay = (bike, replace(lead, width=max(3, lead.width), sags=[min(v, 25.0) for v in lead.sags]))
        # A second bike rolls in from the right and parks.
        y_in = gy + (hw - gy) * rng.uniform(0.45, 0.7)
        r_in = 36.0 * perspective_scale(y_in, gy, int(hw))
        self.arriving = replace(random_bike(rng, 0.0, y_in, r_in), facing=-1)
        self.arrive_from = world[0] + 3 * r_in
        self.arrive_to = float(rng.uniform(0.2, 0.6) * world[0])
        # A person walks across, in front of everything.
        y_walk = gy + (hw - gy) * rng.uniform(0.7, 0.95)
        self.walker = replace(
            random_person(rng, 0.0, y_walk, 250.0 * perspective_scale(y_walk, gy, int(hw))), facing=1, stride=0.9
        )
        self.walk_speed = world[0] / max(1.0, self.n_frames * rng.uniform(0.8, 1.0))  # px per frame
        self.pan_amp = rng.uniform(0.4, 1.0) * (MARGIN - 8)
        self.pan_phase = rng.uniform(0, 2 * math.pi)
        self.sway_amp = rng.uniform(6, 18)
        jit = np.random.default_rng(seed + 1).normal(0, 1.0, (self.n_frames + 8, 2))
        self.jitter = cv2.GaussianBlur(jit, (1, 9), 0) * 2.0  # smooth hand-held jitter, px
        nr = np.random.default_rng(seed + 2)
        self.noise = [
            (
                np.abs(nr.normal(0, 2.5, (h, w, 3))).astype(np.uint8),
                np.abs(nr.normal(0, 2.5, (h, w, 3))).astype(np.uint8),
            )
            for _ in range(4)
        ]

    def camera_offset(self, i: int) -> tuple[int, int]:
        t = i / self.fps
        ox = MARGIN + self.pan_amp * math.sin(2 * math.pi * t / 20.0 + self.pan_phase) + self.jitter[i, 0]
        oy = MARGIN + self.jitter[i, 1]
        return int(np.clip(round(ox), 0, 2 * MARGIN)), int(np.clip(round(oy), 0, 2 * MARGIN))

    def render(self, i: int, labels: bool = False) -> VideoFrame:
        """Frame i (0-based): crop the background at the camera offset, draw the sprites."""
        w, h = self.size
        ox, oy = self.camera_offset(i)
        canvas = Canvas(self.background[oy : oy + h, ox : ox + w].copy())
        t = i / self.fps
        sway = self.sway_amp * math.sin(2 * math.pi * t / 2.7)
        cable = replace(self.cable, points=[(x - ox, y - oy) for x, y in self.cable.points], sway=sway)
        draw_cable(canvas, cable, self.cfg.cable_label_width)
        draw_ebike(canvas, _shift_bike(self.parked, ox, oy))
        if self.bay is not None:
            bike, lead = self.bay
            lead = replace(lead, points=[(x - ox, y - oy) for x, y in lead.points], sway=0.3 * sway)
            draw_cable(canvas, lead, self.cfg.cable_label_width)
            draw_ebike(canvas, _shift_bike(bike, ox, oy))
        # the second bike appears from 30 % of the clip and rolls to its place until 60 %
        u = float(np.clip((i / max(1, self.n_frames - 1) - 0.3) / 0.3, 0.0, 1.0))
        if i >= 0.3 * (self.n_frames - 1):
            x = self.arrive_from + (self.arrive_to - self.arrive_from) * (1 - (1 - u) ** 2)
            draw_ebike(canvas, _shift_bike(replace(self.arriving, x=x), ox, oy))
        walker = replace(
            self.walker, x=-80.0 + self.walk_speed * i - ox, foot_y=self.walker.foot_y - oy, phase=2 * math.pi * t * 1.8
        )
        draw_person(canvas, walker)
        pos, neg = self.noise[i % len(self.noise)]
        img = cv2.subtract(cv2.add(canvas.image, pos), neg)
        inst = canvas.instances(self.cfg.min_area, self.cfg.min_component_area) if labels else None
        return VideoFrame(i, img, inst)


def _shift_bike(b: BikeSpec, ox: int, oy: int) -> BikeSpec:
    return replace(b, x=b.x - ox, ground_y=b.ground_y - oy)


def iter_video_frames(
    seconds: float = 10.0,
    fps: int = 25,
    size: tuple[int, int] = (1280, 720),
    seed: int = 0,
    labels: bool = False,
    charging_bay: bool = False,
) -> Iterator[VideoFrame]:
    """The frames of the sample clip, in order (the same for the same arguments)."""
    scene = SampleScene(seconds, fps, size, seed, charging_bay)
    for i in range(scene.n_frames):
        yield scene.render(i, labels)


def render_sample_video(
    path: str | Path,
    seconds: float = 10.0,
    fps: int = 25,
    size: tuple[int, int] = (1280, 720),
    seed: int = 0,
    gop: int = 25,
    crf: int = 23,
    preset: str = "veryfast",
    charging_bay: bool = False,
) -> Path:
    """Render the sample clip to an H.264 (libx264, yuv420p) file; returns its path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    if w % 2 or h % 2:
        raise ValueError(f"yuv420p needs even width and height, got {w}x{h}")
    t0 = time.perf_counter()
    n = 0
    with av.open(str(out), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"preset": preset, "crf": str(crf), "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        for frame in iter_video_frames(seconds, fps, size, seed, charging_bay=charging_bay):
            vf = av.VideoFrame.from_ndarray(frame.image, format="bgr24")
            for packet in stream.encode(vf):
                container.mux(packet)
            n += 1
        for packet in stream.encode():
            container.mux(packet)
    log.info("wrote %s: %d frames %dx%d @ %d fps in %.1fs", out, n, w, h, fps, time.perf_counter() - t0)
    return out


def _size(s: str) -> tuple[int, int]:
    w, h = s.lower().split("x")
    return int(w), int(h)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Render trtseg's sample video (H.264).")
    ap.add_argument("out", type=Path)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--size", type=_size, default=(1280, 720), help="WIDTHxHEIGHT")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gop", type=int, default=25)
    ap.add_argument("--crf", type=int, default=23)
    ap.add_argument("--preset", default="veryfast")
    ap.add_argument("--charging-bay", action="store_true", help="add the demo's safe cable by the wall")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    render_sample_video(a.out, a.seconds, a.fps, a.size, a.seed, a.gop, a.crf, a.preset, a.charging_bay)


if __name__ == "__main__":
    main()
