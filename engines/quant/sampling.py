"""Pick calibration frames from the user's own footage: video files, camera URLs, or images.

INT8 ranges are only as good as the frames they were measured on, so calibration uses what the
cameras actually see. Three ways to pick N frames from a source: ``uniform`` over its duration
(one seek per frame, cheap on long recordings), ``every:K`` (every K-th decoded frame from the
start: the only choice for live streams, which have no duration), ``random[:SEED]`` (sorted random
instants, reproducible from the seed). Image files and folders of images are accepted too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np

from engines.quant.common import QuantizationError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
Mode = Literal["uniform", "every", "random"]


@dataclass(frozen=True)
class Sampling:
    """How frames are picked from each source."""

    mode: Mode = "uniform"
    every: int = 1
    seed: int = 0

    @classmethod
    def parse(cls, text: str | Sampling) -> Sampling:
        """``uniform`` | ``every:K`` | ``random`` | ``random:SEED`` (what the CLI accepts)."""
        if isinstance(text, Sampling):
            return text
        mode, _, arg = text.strip().lower().partition(":")
        try:
            if mode == "uniform" and not arg:
                return cls("uniform")
            if mode == "every":
                k = int(arg or "1")
                if k < 1:
                    raise ValueError
                return cls("every", every=k)
            if mode == "random":
                return cls("random", seed=int(arg or "0"))
        except ValueError:
            pass
        raise QuantizationError(f"unknown sampling {text!r}: use 'uniform', 'every:K' (K >= 1) or 'random[:SEED]'")

    def __str__(self) -> str:
        return {"uniform": "uniform", "every": f"every:{self.every}", "random": f"random:{self.seed}"}[self.mode]


def split_count(count: int, n_sources: int) -> list[int]:
    """Share ``count`` frames among sources as evenly as possible (earlier sources get the rest)."""
    base, rest = divmod(count, n_sources)
    return [base + (1 if i < rest else 0) for i in range(n_sources)]


def sample_frames(
    sources: Sequence[str | Path], count: int, sampling: Sampling | str = "uniform", open_timeout_s: float = 10.0
) -> list[np.ndarray]:
    """Decode ``count`` BGR frames from ``sources`` (shared evenly); raise if fewer can be had."""
    if count < 1:
        raise QuantizationError(f"calibration needs at least one frame, count={count}")
    if not sources:
        raise QuantizationError("no calibration sources given (video files, camera URLs or image folders)")
    spec = Sampling.parse(sampling)
    frames: list[np.ndarray] = []
    for source, want in zip(sources, split_count(count, len(sources)), strict=True):
        if want == 0:
            continue
        got = list(_sample_source(str(source), want, spec, open_timeout_s))
        logger.info("calibration frames sampled source=%s wanted=%d got=%d sampling=%s", source, want, len(got), spec)
        if not got:
            raise QuantizationError(f"no frames could be decoded from {source}")
        frames.extend(got)
    if len(frames) < count:
        raise QuantizationError(
            f"only {len(frames)} of {count} calibration frames could be sampled from {len(sources)} source(s); "
            "give more or longer sources, a smaller count, or a smaller every:K"
        )
    return frames


def _sample_source(source: str, want: int, spec: Sampling, open_timeout_s: float) -> Iterator[np.ndarray]:
    path = Path(source)
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        yield from _sample_images(path, want, spec)
        return
    if "://" not in source and not path.exists():
        raise QuantizationError(f"calibration source not found: {source}")
    try:
        # RTSP over TCP: UDP loses packets (and whole frames) on busy networks.
        options = {"rtsp_transport": "tcp"} if source.startswith(("rtsp://", "rtsps://")) else {}
        container = av.open(source, options=options, timeout=(open_timeout_s, open_timeout_s))
    except (av.FFmpegError, OSError) as exc:
        raise QuantizationError(f"cannot open calibration source {source}: {exc}") from exc
    try:
        if not container.streams.video:
            raise QuantizationError(f"{source} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        duration = _duration_s(container, stream)
        try:
            if spec.mode == "every":
                yield from _every_k(container, stream, want, spec.every)
            elif duration is None:
                raise QuantizationError(
                    f"{source} has no known duration (a live stream?): '{spec}' sampling needs one; use every:K"
                )
            else:
                yield from _at_times(container, stream, _instants(spec, want, duration))
        except av.FFmpegError as exc:
            raise QuantizationError(f"cannot decode calibration source {source}: {exc}") from exc
    finally:
        container.close()


def _duration_s(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None


def _instants(spec: Sampling, want: int, duration: float) -> list[float]:
    """Sorted instants (s) to take frames at: the middle of ``want`` equal slices, or seeded random."""
    if spec.mode == "random":
        rng = np.random.default_rng(spec.seed)
        return sorted(float(t) for t in rng.uniform(0.0, duration, size=want))
    step = duration / want
    return [step * (i + 0.5) for i in range(want)]


def _every_k(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, want: int, k: int
) -> Iterator[np.ndarray]:
    taken = 0
    for index, frame in enumerate(container.decode(stream)):
        if index % k == 0:
            yield frame.to_ndarray(format="bgr24")
            taken += 1
            if taken >= want:
                return


def _at_times(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, instants: list[float]
) -> Iterator[np.ndarray]:
    """One frame at (or just after) each instant: seek to the keyframe before it, decode forward."""
    time_base = float(stream.time_base) if stream.time_base else 1.0 / 90_000
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0
    for instant in instants:
        target = start + instant
        container.seek(int(target / time_base), stream=stream, backward=True, any_frame=False)
        picked = None
        for frame in container.decode(stream):
            if frame.time is None or frame.time >= target - 1e-3:
                picked = frame.to_ndarray(format="bgr24")
                break
        if picked is None:  # instant past the last frame (rounded durations): stop here
            logger.debug("no frame at or after instant=%.3f", instant)
            return
        yield picked


def _sample_images(path: Path, want: int, spec: Sampling) -> Iterator[np.ndarray]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise QuantizationError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {path}")
    if spec.mode == "every":
        chosen = files[:: spec.every][:want]
    elif spec.mode == "random":
        rng = np.random.default_rng(spec.seed)
        chosen = [files[i] for i in sorted(rng.choice(len(files), size=min(want, len(files)), replace=False))]
    else:
        step = len(files) / want
        chosen = [files[min(len(files) - 1, math.floor(step * (i + 0.5)))] for i in range(min(want, len(files)))]
    for file in chosen:
        image = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if image is None:
            raise QuantizationError(f"cannot read calibration image {file}")
        yield image
