"""Calibration frames from real footage (a real H.264 clip decoded by PyAV) and image folders."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.model import load_model_info
from engines.quant.calibration import build_calibration_set
from engines.quant.common import QuantizationError
from engines.quant.sampling import Sampling, sample_frames, split_count
from tests.services.streaming import RtspServer


def digest(frame: np.ndarray) -> str:
    return hashlib.sha1(frame.tobytes()).hexdigest()


@pytest.mark.parametrize("sampling", ["uniform", "every:5", "random:7"])
def test_sampling_modes_take_distinct_frames(clip: Path, sampling: str) -> None:
    frames = sample_frames([clip], 6, sampling)
    assert len(frames) == 6
    assert all(f.shape == (180, 320, 3) and f.dtype == np.uint8 for f in frames)
    # The clip holds 8 different pictures of 0.5 s each: 6 spread samples see at least 4 of them.
    assert len({digest(f) for f in frames}) >= 4


def test_random_sampling_is_reproducible(clip: Path) -> None:
    first = [digest(f) for f in sample_frames([clip], 4, "random:3")]
    again = [digest(f) for f in sample_frames([clip], 4, "random:3")]
    assert first == again


def test_every_k_stops_at_end_of_clip(clip: Path) -> None:
    with pytest.raises(QuantizationError, match="only 4 of 10"):
        sample_frames([clip], 10, "every:10")  # a 40-frame clip has 4 frames at every 10th


def test_count_is_shared_among_sources(clip: Path, tmp_path: Path) -> None:
    image = np.full((90, 160, 3), 40, np.uint8)
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), image + i)
    frames = sample_frames([clip, tmp_path], 5, "uniform")
    assert [f.shape for f in frames] == [(180, 320, 3)] * 3 + [(90, 160, 3)] * 2
    assert split_count(5, 2) == [3, 2]


def test_bad_sources_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(QuantizationError, match="at least one frame"):
        sample_frames([tmp_path], 0)
    with pytest.raises(QuantizationError, match="no calibration sources"):
        sample_frames([], 4)
    with pytest.raises(QuantizationError, match="not found"):
        sample_frames([tmp_path / "missing.mp4"], 4)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(QuantizationError, match="cannot open calibration source"):
        sample_frames([junk], 4)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(QuantizationError, match="no images"):
        sample_frames([empty], 4)
    with pytest.raises(QuantizationError, match="unknown sampling"):
        Sampling.parse("every:0")


def test_calibration_set_letterboxed_like_inference_and_cached(clip: Path, seg_model: Path, tmp_path: Path) -> None:
    from engines.preprocess import preprocess

    info = load_model_info(seg_model)
    cache = tmp_path / "calib.npy"
    calib = build_calibration_set([clip], info, 4, "uniform", imgsz=(192, 320), cache=cache)
    assert calib.data.shape == (4, 3, 192, 320) and calib.data.dtype == np.uint8
    frames = sample_frames([clip], 4, "uniform")
    expected, _ = preprocess(frames, (192, 320), info.stride, rectangular=False)
    np.testing.assert_allclose(calib.as_float(), expected, atol=1e-6)
    again = build_calibration_set([clip], info, 4, "uniform", imgsz=(192, 320), cache=cache)
    assert again.sha256 == calib.sha256 and cache.is_file()
    other = build_calibration_set([clip], info, 4, "random:1", imgsz=(192, 320), cache=cache)
    assert other.sha256 != calib.sha256


@pytest.mark.slow
def test_live_camera_sampling(rtsp_server: RtspServer) -> None:
    """A real RTSP camera (gst-rtsp-server): every:K frames come over the network."""
    frames = sample_frames([rtsp_server.url], 3, "every:5", open_timeout_s=10.0)
    assert [f.shape for f in frames] == [(360, 640, 3)] * 3


def test_source_without_duration_needs_every_k(tmp_path: Path) -> None:
    """A raw H.264 stream has no duration (like a live camera): uniform/random say so; every:K works."""
    raw = tmp_path / "camera.h264"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=10", "-t", "2",
         "-c:v", "libx264", "-f", "h264", str(raw)],
        check=True, timeout=60,
    )  # fmt: skip
    for sampling in ("uniform", "random:1"):
        with pytest.raises(QuantizationError, match="no known duration"):
            sample_frames([raw], 2, sampling)
    assert len(sample_frames([raw], 3, "every:4")) == 3
