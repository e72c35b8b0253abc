"""CameraDecoder on real files: stamping, pacing, the latest-frame mailbox, looping, broken input."""

from __future__ import annotations

import itertools
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.services.streaming import make_test_clip, wait_until
from trtseg.config import CameraConfig
from trtseg.decode import CameraDecoder
from trtseg.frames import Frame


def _camera(source: str, **extra: object) -> CameraConfig:
    return CameraConfig(id="cam1", source=source, open_timeout_s=5, reconnect_backoff_s=0.1, **extra)


def _take_for(decoder: CameraDecoder, seconds: float) -> list[Frame]:
    frames: list[Frame] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        frame = decoder.latest(timeout_s=0.5)
        if frame is not None:
            frames.append(frame)
    return frames


@pytest.mark.parametrize("threads", [1, 0])
def test_file_frames_are_stamped_and_paced(sample_clip: Path, media_dir: Path, threads: int) -> None:
    """One decoding thread (the default) or FFmpeg's own choice: the same frames, paced alike."""
    decoder = CameraDecoder(_camera(sample_clip.name, decode_threads=threads), file_dir=media_dir).start()
    try:
        start = time.time()
        frames = _take_for(decoder, 2.0)
        stats = decoder.stats()
    finally:
        decoder.stop()
    assert len(frames) >= 40, stats
    first, last = frames[0], frames[-1]
    assert first.camera_id == "cam1"
    assert first.image.shape == (720, 1280, 3) and first.image.dtype == np.uint8
    assert all(b.seq > a.seq for a, b in itertools.pairwise(frames))
    assert all(b.pts_s > a.pts_s for a, b in itertools.pairwise(frames))
    assert start - 1 < first.capture_ts <= last.capture_ts <= time.time()
    # Paced at the native 25 fps: stream time advances like wall time.
    wall = last.capture_ts - first.capture_ts
    assert abs((last.pts_s - first.pts_s) - wall) < 0.25, (last.pts_s - first.pts_s, wall)
    rate = (last.seq - first.seq) / wall
    assert 21 <= rate <= 29, rate
    assert stats["state"] == "live" and stats["width"] == 1280 and stats["height"] == 720
    assert stats["source_fps"] == pytest.approx(25, abs=0.1)
    assert stats["decode_threads"] == threads
    assert 20 <= stats["fps_in"] <= 30 and stats["fps_out"] > 15
    assert decoder.state == "stopped"


def test_frames_nobody_takes_are_dropped_not_queued(sample_clip: Path, media_dir: Path) -> None:
    decoder = CameraDecoder(_camera(sample_clip.name), file_dir=media_dir).start()
    try:
        assert wait_until(lambda: decoder.stats()["frames"] >= 30, timeout_s=5)
        frame = decoder.latest(timeout_s=1)
        stats = decoder.stats()
        assert frame is not None
        # The one frame taken is (nearly) the newest; every other one was overwritten and counted.
        assert frame.seq >= stats["frames"] - 2
        assert stats["drops"] >= frame.seq - 1 >= 28
        assert decoder.latest(timeout_s=0) is None or decoder.stats()["frames"] > stats["frames"]
    finally:
        decoder.stop()


def test_file_ends_without_loop(small_clip: Path, media_dir: Path) -> None:
    decoder = CameraDecoder(_camera(small_clip.name), file_dir=media_dir).start()
    try:
        assert wait_until(lambda: decoder.state == "stopped", timeout_s=8)
        stats = decoder.stats()
    finally:
        decoder.stop()
    assert stats["ended"] is True and stats["frames"] == 75 and stats["last_error"] is None
    assert stats["reconnects"] == 0


class _Picture:
    """What ``_deliver`` takes of a decoded frame: its picture."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image

    def to_ndarray(self, format: str = "bgr24") -> np.ndarray:
        return self.image


def test_a_reopen_under_way_counts_in_the_loop_gap(sample_clip: Path, media_dir: Path) -> None:
    """A window read while the file is reopening is not charged the frames of that time."""
    decoder = CameraDecoder(_camera(sample_clip.name, loop=True), file_dir=media_dir)  # not started
    decoder._frame_step = 0.04
    decoder._looped_at = time.monotonic() - 0.5  # the last frame of a pass came 0.5 s ago
    during = decoder.stats()["loop_gap_s"]
    assert 0.45 <= during < 0.6
    decoder._deliver(_Picture(np.zeros((4, 4, 3), np.uint8)), 0.0)  # the first frame of the next pass
    after = decoder.stats()["loop_gap_s"]
    assert during <= after < during + 0.1  # the reopen closed: the counter kept what it had shown
    time.sleep(0.05)
    assert decoder.stats()["loop_gap_s"] == after  # and stops growing with frames flowing


@pytest.mark.slow
def test_file_loops_with_monotonic_pts(small_clip: Path, media_dir: Path) -> None:
    decoder = CameraDecoder(_camera(small_clip.name, loop=True), file_dir=media_dir).start()
    try:
        frames = _take_for(decoder, 4.0)
        stats = decoder.stats()
    finally:
        decoder.stop()
    assert stats["loops"] >= 1 and stats["state"] == "live" and stats["reconnects"] == 0
    # The reopen is timed (benchmarks leave it out of what a live camera would deliver); a local file
    # reopens in milliseconds.
    assert 0.0 <= stats["loop_gap_s"] < 0.3 * stats["loops"], stats
    pts = [f.pts_s for f in frames]
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert max(pts) > 3.0  # past the end of the 3 s clip
    steps = np.diff(pts)
    assert steps.max() < 0.25, steps.max()  # no jump at the loop point (only frames not taken)


def test_inference_interval_marks_frames(small_clip: Path, media_dir: Path) -> None:
    decoder = CameraDecoder(_camera(small_clip.name, inference_fps=5), file_dir=media_dir).start()
    try:
        frames = _take_for(decoder, 2.0)
    finally:
        decoder.stop()
    assert len(frames) >= 40
    marked = [f for f in frames if f.infer]
    span = frames[-1].pts_s - frames[0].pts_s
    assert abs(len(marked) - 5 * span) <= 2, (len(marked), span)
    gaps = np.diff([f.pts_s for f in marked])
    assert gaps.min() >= 0.19 - 1e-6


def test_resolution_change_mid_stream(tmp_path: Path, media_dir: Path) -> None:
    parts = []
    for index, size in enumerate(((320, 240), (480, 270))):
        clip = make_test_clip(tmp_path / f"p{index}.mp4", seconds=1.0, fps=25, size=size)
        ts = tmp_path / f"p{index}.ts"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-i", str(clip), "-c", "copy", "-bsf:v", "h264_mp4toannexb", str(ts)],
            check=True,
            timeout=60,
        )
        parts.append(ts.read_bytes())
    joined = media_dir / "sizes.ts"
    joined.write_bytes(b"".join(parts))
    decoder = CameraDecoder(_camera(joined.name), file_dir=media_dir).start()
    sizes: set[tuple[int, int]] = set()
    try:
        deadline = time.monotonic() + 6
        while decoder.state != "stopped" and time.monotonic() < deadline:
            frame = decoder.latest(timeout_s=0.2)
            if frame is not None:
                sizes.add((frame.width, frame.height))
        stats = decoder.stats()
    finally:
        decoder.stop()
    assert sizes == {(320, 240), (480, 270)}, sizes
    assert stats["ended"] and (stats["width"], stats["height"]) == (480, 270)


@pytest.mark.parametrize("kind", ["empty", "garbage", "truncated"])
def test_broken_files_fail_clearly(kind: str, sample_clip: Path, media_dir: Path) -> None:
    path = media_dir / f"broken-{kind}.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    else:
        path.write_bytes(sample_clip.read_bytes()[:4096])  # header only: no decodable frame
    decoder = CameraDecoder(_camera(path.name), file_dir=media_dir).start()
    try:
        assert wait_until(lambda: decoder.state == "failed", timeout_s=10), decoder.stats()
        stats = decoder.stats()
    finally:
        decoder.stop()
    assert stats["frames"] == 0
    assert stats["last_error"], stats
    assert decoder.latest(timeout_s=0.1) is None


def test_corrupt_packets_are_skipped(small_clip: Path, tmp_path: Path, media_dir: Path) -> None:
    ts = tmp_path / "c.ts"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(small_clip), "-c", "copy", str(ts)], check=True, timeout=60
    )
    data = bytearray(ts.read_bytes())
    rng = np.random.default_rng(1)
    for offset in rng.integers(len(data) // 5, len(data) * 4 // 5, 400):
        data[int(offset)] ^= 0xFF
    corrupt = media_dir / "corrupt.ts"
    corrupt.write_bytes(bytes(data))
    decoder = CameraDecoder(_camera(corrupt.name), file_dir=media_dir).start()
    try:
        assert wait_until(lambda: decoder.state in ("stopped", "failed"), timeout_s=10), decoder.stats()
        stats = decoder.stats()
    finally:
        decoder.stop()
    assert stats["ended"] and stats["state"] == "stopped"
    assert stats["frames"] >= 50, stats  # the damaged frames are skipped or concealed, the rest decoded


def test_refused_source_fails_at_start(media_dir: Path) -> None:
    decoder = CameraDecoder(_camera("../etc/passwd"), file_dir=media_dir)
    with pytest.raises(ValueError, match=r"'\.\.'"):
        decoder.start()
    assert decoder.state == "failed" and "'..'" in decoder.stats()["last_error"]
