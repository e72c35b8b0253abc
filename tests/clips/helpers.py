"""Real H.264 packets for the clip tests: a generated clip with B-frames, fed into a ring at a chosen pace."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from trtseg.clips.packet_ring import PacketRing

FPS = 25


class Clock:
    """A settable clock shared by the ring and the recorder."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def render(path: Path, seconds: float = 4.0, size: tuple[int, int] = (320, 180), gop: int = 25) -> Path:
    """An H.264 clip with B-frames (libx264 'veryfast') and a key frame every ``gop`` frames."""
    if not path.exists():
        from datasets.video import render_sample_video

        render_sample_video(path, seconds=seconds, fps=FPS, size=size, seed=1, gop=gop, preset="veryfast")
    return path


@dataclass
class Demuxed:
    """A file's video packets (bytes, pts, dts, duration, key) and its stream, kept open as the template source."""

    container: Any
    stream: Any
    packets: list[tuple[bytes, int | None, int | None, int, bool]]

    @property
    def time_base(self) -> Fraction:
        return Fraction(self.stream.time_base)


def demux(path: Path) -> Demuxed:
    container = av.open(str(path))
    stream = container.streams.video[0]
    packets = [(bytes(p), p.pts, p.dts, p.duration or 0, p.is_keyframe) for p in container.demux(stream) if p.size]
    return Demuxed(container, stream, packets)


def feed(ring: PacketRing, clip: Demuxed, clock: Clock, count: int | None = None, session: bool = True) -> float:
    """Append the clip's packets one frame step apart, advancing the clock; returns the last capture time."""
    if session:
        ring.begin_session(clip.stream)
    for data, pts, dts, duration, key in clip.packets[:count]:
        clock.now += 1.0 / FPS
        ring.add(data, pts, dts, duration, key, ts=clock.now)
    return clock.now


def probe(path: Path) -> dict[str, Any]:
    """What a player sees: ffprobe's duration, every frame decoded, the first one's type, atom order."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_name,width,height",
         "-of", "json", str(path)],
        check=True, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    info = json.loads(out.stdout)
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append((frame.pts, bool(frame.key_frame)))
    head = path.read_bytes()[:4096]
    return {
        "duration": float(info["format"]["duration"]),
        "codec": info["streams"][0]["codec_name"],
        "width": info["streams"][0]["width"],
        "frames": frames,
        "moov_first": 0 <= head.find(b"moov") < (head.find(b"mdat") if b"mdat" in head else 1 << 30),
    }
