"""NVDEC cameras demuxed by PyAV (issue #21), on the GPU machine: the CPU decoder's pictures, one NVDEC
session across a looping file's passes, clips cut from an NVDEC camera's packets, HTTP sources
through the protocol whitelist.

Media are made with PyAV alone (tests/core/nvdec_media.py): the GPU machine has no ffmpeg binary.
Run there with ``pytest tests/gpu/test_nvdec_pyav.py -m gpu`` (tools/gpu_smoke.sh does).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from tests.core.nvdec_media import encode, hls_playlist, remux
from tests.services.http_files import serve_directory
from trtseg.clips.camera import CameraClips
from trtseg.config import CameraConfig
from trtseg.config.clips import EvidenceConfig
from trtseg.decode import CameraDecoder
from trtseg.decode_nvdec import NvdecCameraDecoder
from trtseg.sources import Source

pytest.importorskip("PyNvVideoCodec", reason="PyNvVideoCodec is not installed")
pytestmark = [pytest.mark.gpu, pytest.mark.slow]

SIZE = (320, 192)  # NVDEC's HEVC takes 144x144 at least
FRAMES = 25
WORST_MEAN_DIFF = 6.0  # as tests/bench/test_decode_nvdec.py: NVDEC's and FFmpeg's colour conversions differ a little


def _collecting(base: type[CameraDecoder]) -> type[CameraDecoder]:
    class Collecting(base):  # type: ignore[valid-type, misc]
        """Keeps a host copy of every delivered picture by frame number, and each pass's frame count."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.pictures: dict[int, np.ndarray] = {}
            self.passes: list[int] = []

        def _deliver(self, video_frame: Any, pts: float) -> None:
            super()._deliver(video_frame, pts)
            image = self._slot.image  # type: ignore[union-attr]
            self.pictures[self._frames - 1] = np.array(image.get() if hasattr(image, "get") else image)

        def _close_stream(self, source: Source, clean: bool) -> None:
            if clean:
                self.passes.append(self._frames_in_session)
            super()._close_stream(source, clean)

    return Collecting


def _decode_file(path: Path, kind: str, loop: bool = False, passes: int = 1) -> Any:
    camera = CameraConfig(id="cam", source=path.name, decoder=kind, loop=loop, reconnect_backoff_s=0.1)
    if kind == "nvdec":
        decoder = _collecting(NvdecCameraDecoder)(camera, file_dir=path.parent, host_frames=True)
    else:
        decoder = _collecting(CameraDecoder)(camera, file_dir=path.parent)
    decoder.start()
    try:
        deadline = time.monotonic() + 10.0 + 2.0 * passes
        while time.monotonic() < deadline:
            stats = decoder.stats()
            if stats["ended"] or stats["state"] == "failed" or (loop and len(decoder.passes) >= passes):
                break
            decoder.latest(timeout_s=0.1)
        decoder.final = decoder.stats()  # before stop(), which leaves every decoder 'stopped'
    finally:
        decoder.stop()
    return decoder


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("nvdec_media")
    h264 = encode(folder / "h264.mp4", "libx264", frames=FRAMES, size=SIZE)
    remux(h264, folder / "h264.mkv")
    remux(h264, folder / "h264.ts")
    hevc = encode(folder / "hevc.mp4", "libx265", frames=FRAMES, size=SIZE)
    remux(hevc, folder / "hevc.ts")
    return folder


@pytest.mark.parametrize("name", ["h264.mp4", "h264.mkv", "h264.ts", "hevc.mp4", "hevc.ts"])
def test_nvdec_gives_the_cpu_decoders_pictures(media: Path, name: str) -> None:
    """Every frame of a clip with B-frames, in display order, equal to FFmpeg's within the tolerance."""
    nvdec = _decode_file(media / name, "nvdec")
    cpu = _decode_file(media / name, "cpu")
    assert nvdec.final["state"] != "failed", nvdec.final
    assert sorted(nvdec.pictures) == sorted(cpu.pictures) == list(range(FRAMES))
    same = [float(np.abs(nvdec.pictures[i].astype(np.float32) - cpu.pictures[i]).mean()) for i in range(FRAMES)]
    shifted = [float(np.abs(nvdec.pictures[i].astype(np.float32) - cpu.pictures[i + 1]).mean()) for i in range(24)]
    assert float(np.mean(shifted)) > 2.0 * float(np.mean(same)), "the clip moves too little to tell frames apart"
    worst = int(np.argmax(same))
    assert same[worst] < WORST_MEAN_DIFF, f"frame {worst} differs by {same[worst]:.2f}"
    assert nvdec.stats()["nvdec_decoders"] == 1
    print(f"{name}: mean diff {np.mean(same):.2f}, worst {same[worst]:.2f}")


def test_a_codec_nvdec_cannot_take_fails_the_camera_naming_decoder(media: Path) -> None:
    encode(media / "mpeg4.avi", "mpeg4", frames=5, size=SIZE)
    stats = _decode_file(media / "mpeg4.avi", "nvdec").final
    assert stats["state"] == "failed" and stats["frames"] == 0 and stats["reconnects"] == 0, stats
    assert "decoder 'nvdec'" in stats["last_error"] and "mpeg4" in stats["last_error"], stats


def test_a_looping_file_keeps_one_nvdec_session_and_every_frame(media: Path) -> None:
    decoder = _decode_file(media / "h264.mp4", "nvdec", loop=True, passes=4)
    stats = decoder.stats()
    print(f"passes {decoder.passes}, loop gap {stats['loop_gap_s']} s over {stats['loops']} loops, stats {stats}")
    assert len(decoder.passes) >= 4 and all(count == FRAMES for count in decoder.passes), decoder.passes
    assert stats["nvdec_decoders"] == 1 and stats["nvdec_reused"] >= 3 and stats["nvdec_reuse_failed"] == 0
    assert stats["loop_gap_s"] / max(stats["loops"], 1) < 0.25, stats  # a new NVDEC session cost 0.3-0.4 s


def test_a_clip_is_cut_from_an_nvdec_cameras_packets(media: Path, tmp_path: Path) -> None:
    source = encode(media / "clip_src.mp4", "libx264", frames=50, size=SIZE)
    camera = CameraConfig(
        id="gpu1", source=source.name, decoder="nvdec", loop=True, clips={"pre_capture_s": 1.0, "post_capture_s": 0.5}
    )
    clips = CameraClips.for_camera(camera, EvidenceConfig(clip_dir=tmp_path / "clips"))
    assert clips is not None
    decoder = NvdecCameraDecoder(camera, file_dir=media, host_frames=True)
    assert clips.attach(decoder)
    decoder.start()
    try:
        _drain(decoder, 1.5)
        opened = time.time()
        assert clips.start("inc1", opened)
        _drain(decoder, 1.8)  # the 2 s file loops inside the recording
        closed = time.time()
        assert clips.stop("inc1", closed)
        deadline = time.monotonic() + 4.0 + clips.recorder.hold_s
        while clips.stats()["clips"] == 0 and time.monotonic() < deadline:
            _drain(decoder, 0.2)
        stats, decoded = clips.stats(), decoder.stats()
    finally:
        decoder.stop()
        clips.close()
    assert stats["clips"] == 1 and stats["failures"] == 0 and decoded["tap_errors"] == 0, (stats, decoded)
    info = clips.recorder.last_clip
    assert info is not None
    path = clips.recorder.layout.resolve(info.clip)
    head = path.read_bytes()[:4096]
    assert 0 <= head.find(b"moov") < head.find(b"mdat")  # faststart: plays while it downloads
    with av.open(str(path)) as container:
        frames = [frame for frame in container.decode(video=0)]
    assert frames and frames[0].key_frame and len(frames) == info.packets
    assert info.start_ts <= opened - 1.0 + 0.05 and info.end_ts >= closed + 0.5 - 0.1


def _drain(decoder: CameraDecoder, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        decoder.latest(timeout_s=0.2)


@pytest.fixture
def site(media: Path) -> Iterator[str]:
    with serve_directory(media) as base:
        yield base


def _live(url: str, seconds: float = 10.0) -> dict[str, Any]:
    camera = CameraConfig(id="web", source=url, decoder="nvdec", open_timeout_s=3, max_failures=1)
    decoder = NvdecCameraDecoder(camera, host_frames=True).start()
    filters: set[Any] = set()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and decoder.state not in ("failed", "stopped"):
            filters.add(decoder.stats()["bitstream_filter"])
            if decoder.stats()["frames"] >= 10:
                break
            decoder.latest(timeout_s=0.2)
        return decoder.stats() | {"filters_seen": filters}
    finally:
        decoder.stop()


def test_http_sources_open_through_the_whitelist(site: str, media: Path) -> None:
    mp4 = _live(f"{site}/h264.mp4")
    assert mp4["frames"] >= 10 and "h264_mp4toannexb" in mp4["filters_seen"], mp4
    ts = _live(f"{site}/h264.ts")
    assert ts["frames"] >= 10 and "h264_mp4toannexb" not in ts["filters_seen"], ts
    hls_playlist(media / "good.m3u8", "h264.ts", FRAMES / 25)
    assert _live(f"{site}/good.m3u8")["frames"] >= 10
    # An HLS playlist may not make the camera read local files: http's whitelist has no 'file'.
    hls_playlist(media / "local.m3u8", f"file://{media / 'h264.ts'}", FRAMES / 25)
    local = _live(f"{site}/local.m3u8", seconds=6.0)
    assert local["frames"] == 0, local
