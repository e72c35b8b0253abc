"""The demux loop every decoder shares (``CameraDecoder._session``), through the hooks NVDEC overrides.

A decoder kind changes only ``_open_stream``, ``_decode_packet`` and ``_close_stream``; these tests
run the real loop on a real looping file with decoders that record what the loop hands them, and
one that delivers frames the way NVDEC does (``_GpuFrame``: an image and a pts, no PyAV frame).
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import av
import pytest

from tests.core.nvdec_media import encode
from trtseg.clips.packet_ring import PacketRing
from trtseg.config import CameraConfig
from trtseg.decode import CameraDecoder, StreamRefused
from trtseg.decode_nvdec import _GpuFrame
from trtseg.sources import Source

FRAMES = 13  # about half a second per pass at 25 fps


class Recording(CameraDecoder):
    """Records each pass: the packet sizes it was given and how the pass ended."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.passes: list[dict[str, Any]] = []

    def _open_stream(self, stream: Any, container: Any) -> None:
        super()._open_stream(stream, container)
        self.passes.append({"sizes": [], "clean": None, "frames": 0, "format": container.format.name})

    def _decode_packet(self, packet: Any) -> list[Any]:
        self.passes[-1]["sizes"].append(packet.size)
        return super()._decode_packet(packet)

    def _close_stream(self, source: Source, clean: bool) -> None:
        self.passes[-1].update(clean=clean, frames=self._frames_in_session, file=source.is_file)


class GpuShaped(Recording):
    """Delivers frames as NVDEC's decoder does: an image with the packet's pts, not a PyAV frame."""

    def _decode_packet(self, packet: Any) -> list[Any]:
        frames = super()._decode_packet(packet)
        return [_GpuFrame(frame.to_ndarray(format="bgr24"), frame.pts) for frame in frames]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return encode(tmp_path_factory.mktemp("loop") / "loop.mp4", "libx264", frames=FRAMES)


def _run_passes(decoder: CameraDecoder, passes: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    decoder.start()
    try:
        while decoder.stats()["loops"] < passes and time.monotonic() < deadline:
            decoder.latest(timeout_s=0.1)
    finally:
        decoder.stop()


@pytest.mark.parametrize("kind", [Recording, GpuShaped])
def test_each_pass_ends_with_the_flush_packet_and_loses_no_frame(clip: Path, kind: type[Recording]) -> None:
    camera = CameraConfig(id="c", source=clip.name, loop=True, reconnect_backoff_s=0.1)
    decoder = kind(camera, file_dir=clip.parent)
    ring = PacketRing(lookback_s=10.0, max_bytes=1 << 20)
    decoder.packet_tap = ring
    _run_passes(decoder, passes=2)
    done = [p for p in decoder.passes if p["clean"]]
    assert len(done) >= 2, decoder.passes
    for one in done:
        # every packet, then the demuxer's empty one: what flushes a decoder at the end of a file
        assert one["sizes"][-1] == 0 and all(one["sizes"][:-1]) and len(one["sizes"]) == FRAMES + 1
        assert one["frames"] == FRAMES and one["file"] and one["format"].startswith("mov")
    assert decoder.passes[-1]["clean"] in (True, False)  # the pass stop() cut short is closed too
    stats = decoder.stats()
    assert stats["tap_errors"] == 0 and ring.stats()["sessions"] == len(decoder.passes)
    assert ring.stats()["packets_in"] >= 2 * FRAMES


def test_gpu_shaped_frames_keep_the_streams_timestamps(clip: Path) -> None:
    camera = CameraConfig(id="c", source=clip.name, loop=False)
    decoder = GpuShaped(camera, file_dir=clip.parent)
    seen: list[float] = []
    decoder.start()
    try:
        deadline = time.monotonic() + 10.0
        while not decoder.stats()["ended"] and time.monotonic() < deadline:
            frame = decoder.latest(timeout_s=0.1)
            if frame is not None:
                seen.append(frame.pts_s)
                assert frame.image.shape == (96, 128, 3)
    finally:
        decoder.stop()
    assert decoder.stats()["frames"] == FRAMES
    steps = [b - a for a, b in itertools.pairwise(seen)]
    # frames the mailbox overwrote leave whole frame steps out; the steps themselves are the stream's
    assert steps and all(step > 0 and abs(step / 0.04 - round(step / 0.04)) < 1e-6 for step in steps), seen


class Refusing(CameraDecoder):
    def _open_stream(self, stream: Any, container: Any) -> None:
        raise StreamRefused(f"decoder 'nvdec' cannot decode this camera's {stream.codec_context.name} video")


def test_a_refused_stream_fails_the_camera_at_once(clip: Path) -> None:
    camera = CameraConfig(id="c", source=clip.name, loop=True, reconnect_backoff_s=0.05, max_failures=0)
    decoder = Refusing(camera, file_dir=clip.parent).start()
    try:
        deadline = time.monotonic() + 5.0
        while decoder.state != "failed" and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        stats = decoder.stats()
    finally:
        decoder.stop()
    assert stats["state"] == "failed" and stats["reconnects"] == 0 and stats["frames"] == 0
    assert stats["last_error"] == "decoder 'nvdec' cannot decode this camera's h264 video"


class Damaged(CameraDecoder):
    """Every packet fails to decode, as a stream reopened mid-GOP without its parameter sets."""

    def _decode_packet(self, packet: Any) -> list[Any]:
        if packet.size:
            raise av.error.InvalidDataError(0, "no parameter sets")
        return []


def test_a_run_of_damaged_packets_ends_the_session(clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trtseg.decode as decode

    monkeypatch.setattr(decode, "CORRUPT_RUN_LIMIT", 5)
    camera = CameraConfig(id="c", source=clip.name, loop=True, reconnect_backoff_s=0.1)
    decoder = Damaged(camera, file_dir=clip.parent)
    decoder.start()
    try:
        deadline = time.monotonic() + 10.0
        while decoder.stats()["state"] != "failed" and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        decoder.stop()
    stats = decoder.stats()
    # The session ended after 5 damaged packets in a row, before the end of the file (14 packets):
    # a file that gave nothing fails; a live stream would reconnect instead of skipping forever.
    assert stats["corrupt"] == 5 and "5 damaged packets in a row" in (stats["last_error"] or "")
