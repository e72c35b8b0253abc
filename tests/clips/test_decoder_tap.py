"""The real CameraDecoder's packet tap on a generated H.264 file: a clip cut from what it demuxed, over a loop."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from pydantic import Field

from tests.clips.helpers import probe, render
from trtseg.clips.camera import CameraClips
from trtseg.config import CameraConfig
from trtseg.config.clips import ClipConfig, EvidenceConfig
from trtseg.decode import CameraDecoder
from trtseg.decode_nvdec import NvdecCameraDecoder


class Camera(CameraConfig):
    clips: ClipConfig = Field(default_factory=ClipConfig)


def _drain(decoder: CameraDecoder, seconds: float) -> int:
    frames, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        frames += decoder.latest(timeout_s=0.2) is not None
    return frames


def test_a_clip_from_the_decoders_own_packets(media_dir: Path, tmp_path: Path) -> None:
    source = render(media_dir / "clips_tap.mp4", seconds=2.0, size=(320, 180))
    camera = Camera(
        id="cam1", source=source.name, loop=True, open_timeout_s=5, reconnect_backoff_s=0.1,
        clips={"pre_capture_s": 1.0, "post_capture_s": 0.5},
    )  # fmt: skip
    clips = CameraClips.for_camera(camera, EvidenceConfig(clip_dir=tmp_path / "clips"))
    assert clips is not None
    decoder = CameraDecoder(camera, file_dir=media_dir)
    assert clips.attach(decoder) and decoder.packet_tap is clips.ring
    decoder.start()
    try:
        _drain(decoder, 1.5)
        opened = time.time()
        assert clips.start("inc1", opened)
        _drain(decoder, 1.8)  # the 2 s file loops inside the recording: a new demux session
        closed = time.time()
        assert clips.stop("inc1", closed)
        deadline = time.monotonic() + 2.0 + clips.recorder.hold_s + 2.0
        while clips.stats()["clips"] == 0 and time.monotonic() < deadline:
            _drain(decoder, 0.2)
        stats, decoded = clips.stats(), decoder.stats()
    finally:
        decoder.stop()
        clips.close()
    assert stats["clips"] == 1 and stats["failures"] == 0, stats
    assert decoded["tap_errors"] == 0 and decoded["loops"] >= 1 and stats["buffer"]["sessions"] >= 2
    info = clips.recorder.last_clip
    assert info is not None and info.ended_by == "post_capture" and not info.capped
    assert info.start_ts <= opened - 1.0 + 0.05 and info.end_ts >= closed + 0.5 - 0.1
    seen = probe(clips.recorder.layout.resolve(info.clip))
    frames = seen["frames"]
    assert frames[0][1] and len(frames) == info.packets and seen["moov_first"]
    assert all(b[0] > a[0] for a, b in itertools.pairwise(frames))
    assert seen["duration"] >= (closed + 0.5) - (opened - 1.0) - 0.2


def test_nvdec_cameras_feed_the_clip_buffer_like_cpu_cameras(tmp_path: Path) -> None:
    """NVDEC cameras demux through the shared PyAV loop, so their packets reach the ring (issue #21;
    tests/gpu/test_nvdec_pyav.py cuts a clip from one on the GPU)."""
    camera = Camera(id="gpu1", source="rtsp://cam/1", decoder="nvdec")
    clips = CameraClips.for_camera(camera, EvidenceConfig(clip_dir=tmp_path))
    assert clips is not None
    try:
        decoder = NvdecCameraDecoder(camera)
        assert clips.attach(decoder) and decoder.packet_tap is clips.ring
        assert clips.stats()["enabled"] and clips.stats()["unsupported"] is None
    finally:
        clips.close()


def test_clips_off() -> None:
    camera = Camera(id="c", source="rtsp://cam/1", clips={"enabled": False})
    assert CameraClips.for_camera(camera, EvidenceConfig()) is None
    assert CameraClips.for_camera(Camera(id="c", source="rtsp://cam/1"), None) is None
