"""Hostile media reaches the real decoder (PyAV/FFmpeg), pusher and engine: clear errors, no crash, nothing leaked.

Inputs: zero-byte, truncated and corrupted H.264 files, a stream whose resolution changes mid-way,
an 8K frame, and camera URLs that try to read local files (file://, concat:, subfile:, an HLS
playlist served over http whose segments point at file:).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.reliability.conftest import ffmpeg_clip, poll
from tests.services.http_files import serve_directory
from trtseg.config import CameraConfig, EngineConfig, PusherConfig
from trtseg.decode import CameraDecoder
from trtseg.frames import Frame

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "trtseg-cable-n.onnx"


def _camera(source: str, **extra: object) -> CameraConfig:
    base: dict[str, object] = {"id": "hostile", "source": source, "push": "none", "open_timeout_s": 5.0}
    base.update(extra)
    return CameraConfig.model_validate(base)


def _drain(decoder: CameraDecoder, timeout_s: float) -> list[Frame]:
    """Take frames until the decoder thread ends (or the time is up); returns the frames taken."""
    frames: list[Frame] = []
    poll(lambda: _take(decoder, frames) or decoder.state in ("stopped", "failed"), timeout_s, "the decoder to end")
    while (frame := decoder.latest(0.0)) is not None:
        frames.append(frame)
    return frames


def _take(decoder: CameraDecoder, into: list[Frame]) -> bool:
    frame = decoder.latest(0.05)
    if frame is not None:
        into.append(frame)
    return False


def test_zero_byte_file_fails_clearly(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    decoder = CameraDecoder(_camera(str(empty)), file_dir=tmp_path).start()
    try:
        frames = _drain(decoder, 20)
    finally:
        decoder.stop()
    stats = decoder.stats()
    assert frames == [] and stats["frames"] == 0
    assert stats["last_error"], "a zero-byte file must leave a readable error"
    assert "Traceback" not in stats["last_error"]


def test_truncated_mp4_without_index_fails_clearly(tmp_path: Path) -> None:
    clip = ffmpeg_clip(tmp_path / "full.mp4", 2.0, (160, 120))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])  # the moov index at the end is gone
    decoder = CameraDecoder(_camera(str(cut)), file_dir=tmp_path).start()
    try:
        _drain(decoder, 20)
    finally:
        decoder.stop()
    stats = decoder.stats()
    assert stats["frames"] == 0 and stats["last_error"]


def test_truncated_transport_stream_plays_what_is_there(tmp_path: Path) -> None:
    clip = ffmpeg_clip(tmp_path / "full.ts", 2.0, (160, 120), fmt="mpegts")
    data = clip.read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: len(data) // 2 + 77])  # mid-packet, mid-frame
    decoder = CameraDecoder(_camera(str(cut)), file_dir=tmp_path).start()
    try:
        _drain(decoder, 20)
    finally:
        decoder.stop()
    stats = decoder.stats()
    assert 0 < stats["frames"] < 20, stats
    assert stats["ended"] is True


def test_corrupted_h264_stream_keeps_decoding(tmp_path: Path) -> None:
    clip = ffmpeg_clip(tmp_path / "clean.h264", 3.0, (160, 120), fmt="h264")
    data = bytearray(clip.read_bytes())
    rng = np.random.default_rng(7)
    start, end = len(data) // 4, 3 * len(data) // 4
    for offset in rng.integers(start, end, size=400):
        data[int(offset)] = int(rng.integers(0, 256))
    data[start + 100 : start + 2100] = bytes(2000)  # a run of zeros too: a dropped chunk
    broken = tmp_path / "broken.h264"
    broken.write_bytes(bytes(data))
    decoder = CameraDecoder(_camera(str(broken)), file_dir=tmp_path).start()
    try:
        frames = _drain(decoder, 30)
    finally:
        decoder.stop()
    stats = decoder.stats()
    assert stats["frames"] > 5, stats
    assert all(f.image.dtype == np.uint8 and f.image.shape == (120, 160, 3) for f in frames)


def test_resolution_change_mid_stream_reaches_the_pusher(tmp_path: Path) -> None:
    from trtseg.pipeline import CameraOutput

    first = ffmpeg_clip(tmp_path / "a.ts", 1.5, (320, 240), fmt="mpegts")
    second = ffmpeg_clip(tmp_path / "b.ts", 1.5, (160, 96), fmt="mpegts")
    joined = tmp_path / "joined.ts"
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    camera = _camera(str(joined), push="hls")
    output = CameraOutput(camera, PusherConfig(hls_dir=tmp_path / "hls", preset="ultrafast", threads=1), {})
    decoder = CameraDecoder(camera, file_dir=tmp_path).start()
    shapes: set[tuple[int, ...]] = set()
    try:
        for frame in _drain(decoder, 30):
            shapes.add(frame.image.shape)
            output.process(frame, None)
    finally:
        decoder.stop()
        output.close()
    assert {(240, 320, 3), (96, 160, 3)} <= shapes, shapes
    pushed = output.stats()
    assert pushed["frames"] >= 2
    assert list((tmp_path / "hls" / "hostile").glob("*.ts")), "the encoder kept writing across the size change"


@pytest.mark.slow
@pytest.mark.skipif(not MODEL.is_file(), reason="models/trtseg-cable-n.onnx is missing")
def test_8k_frame_is_decoded_and_segmented(tmp_path: Path) -> None:
    from engines.engine import SegmentationEngine

    clip = ffmpeg_clip(tmp_path / "8k.mp4", 0.2, (7680, 4320), fps=5)
    decoder = CameraDecoder(_camera(str(clip)), file_dir=tmp_path).start()
    try:
        frames = _drain(decoder, 60)
    finally:
        decoder.stop()
    assert frames and frames[0].image.shape == (4320, 7680, 3)
    engine = SegmentationEngine(EngineConfig(model=MODEL, backend="onnxruntime", device="cpu", intra_op_threads=1))
    found = engine.load().predict([frames[0].image])[0]
    assert found.frame_shape == (4320, 7680)
    if len(found):
        assert float(found.boxes[:, 2].max()) <= 7680 and float(found.boxes[:, 3].max()) <= 4320


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "/etc/passwd",
        "concat:/etc/passwd|/etc/hostname",
        "subfile:,start,0,end,100,,:/etc/passwd",
        "crypto+file:///etc/passwd",
        "pipe:0",
        "data:text/plain;base64,aGVsbG8=",
        "gopher://127.0.0.1/etc/passwd",
        "rtsp://127.0.0.1/../../etc/passwd\nfile:/etc/passwd",
    ],
)
def test_local_file_tricks_are_refused_before_ffmpeg(tmp_path: Path, url: str) -> None:
    """Refused either by the configuration model or by the decoder's start, with a message saying why."""
    with pytest.raises(ValueError) as refused:
        decoder = CameraDecoder(_camera(url), file_dir=tmp_path)
        decoder.start()
        decoder.stop()
    assert str(refused.value).strip()


@pytest.fixture
def playlist_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on loopback serving ``tmp_path/www``; yields (base URL, directory)."""
    www = tmp_path / "www"
    www.mkdir()
    with serve_directory(www) as base_url:
        yield base_url, www


def _playlist(segment_uri: str) -> str:
    return f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{segment_uri}\n#EXT-X-ENDLIST\n"


def test_http_playlist_cannot_reach_local_files(tmp_path: Path, playlist_server: tuple[str, Path]) -> None:
    """The same real segment plays when served over http, and never when the playlist names it as a file."""
    base, www = playlist_server
    segment = ffmpeg_clip(www / "seg.ts", 1.0, (160, 120), fmt="mpegts")
    (www / "good.m3u8").write_text(_playlist(f"{base}/seg.ts"))
    (www / "evil.m3u8").write_text(_playlist(f"file://{segment}"))
    (www / "evil2.m3u8").write_text(_playlist(str(segment)))

    control = CameraDecoder(_camera(f"{base}/good.m3u8"), file_dir=None).start()
    try:
        poll(lambda: control.stats()["frames"] > 0, 30, "the http segment to play (control case)")
    finally:
        control.stop()

    for name in ("evil.m3u8", "evil2.m3u8"):
        camera = _camera(f"{base}/{name}", max_failures=2, reconnect_backoff_s=0.1, reconnect_backoff_max_s=0.2)
        decoder = CameraDecoder(camera, file_dir=None).start()
        try:
            poll(lambda d=decoder: d.state == "failed", 30, f"{name} to be given up")
        finally:
            decoder.stop()
        stats = decoder.stats()
        assert stats["frames"] == 0, f"{name}: a local file was read through the playlist"
        assert stats["last_error"]
