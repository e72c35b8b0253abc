"""datasets.video: the sample clip is real H.264 with the asked size, rate and length."""

from __future__ import annotations

import time
from pathlib import Path

import av
import numpy as np
import pytest

from datasets.scenes import CABLE, EBIKE, PERSON
from datasets.video import iter_video_frames, main, render_sample_video


def _probe(path: Path) -> tuple[str, str, int, int, float, int, list[int]]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        keys, n = [], 0
        for f in c.decode(s):
            if f.key_frame:
                keys.append(n)
            n += 1
        return s.codec_context.name, s.codec_context.pix_fmt, s.width, s.height, float(s.average_rate), n, keys


def test_short_clip_codec_size_rate_frames(tmp_path: Path) -> None:
    out = render_sample_video(tmp_path / "a.mp4", seconds=2, fps=25, size=(640, 360), seed=1)
    codec, pix, w, h, fps, n, keys = _probe(out)
    assert (codec, pix, w, h, fps, n) == ("h264", "yuv420p", 640, 360, 25.0, 50)
    assert keys == [0, 25]  # GOP of 25 frames


def test_fps_is_configurable(tmp_path: Path) -> None:
    out = render_sample_video(tmp_path / "b.mp4", seconds=1, fps=10, size=(640, 360), seed=2, gop=5)
    _, _, _, _, fps, n, keys = _probe(out)
    assert (fps, n, keys) == (10.0, 10, [0, 5])


def test_frames_are_deterministic_and_move() -> None:
    a = [f.image for f in iter_video_frames(seconds=0.4, fps=25, size=(640, 360), seed=5)]
    b = [f.image for f in iter_video_frames(seconds=0.4, fps=25, size=(640, 360), seed=5)]
    assert len(a) == 10 and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], a[9])


def test_labels_follow_the_story() -> None:
    frames = list(iter_video_frames(seconds=4, fps=5, size=(1280, 720), seed=0, labels=True))
    classes = [sorted({i.class_id for i in f.instances or []}) for f in frames]
    assert all(CABLE in c and EBIKE in c for c in classes)  # the parked bike on charge, every frame
    assert any(PERSON in c for c in classes)  # the walker crosses
    bikes = [sum(i.class_id == EBIKE for i in f.instances or []) for f in frames]
    assert bikes[0] == 1 and max(bikes) == 2  # the second bike arrives


def test_odd_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        render_sample_video(tmp_path / "c.mp4", seconds=1, size=(641, 360))


@pytest.mark.slow
def test_cli_renders_ten_seconds_of_720p_quickly(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    main([str(tmp_path / "sample.mp4"), "--seconds", "10"])
    took = time.perf_counter() - t0
    codec, pix, w, h, fps, n, _ = _probe(tmp_path / "sample.mp4")
    assert (codec, pix, w, h, fps, n) == ("h264", "yuv420p", 1280, 720, 25.0, 250)
    assert took < 30.0
