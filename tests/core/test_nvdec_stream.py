"""What NVDEC is fed, checked on any machine: codec mapping, Annex B conversion by container, GPU ordinals.

The converted packets are decoded by FFmpeg's own decoder with no extradata at all, as NVDEC's
parser reads them: only a complete Annex B stream (start codes, parameter sets in band) decodes.
"""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from tests.core.nvdec_media import encode, frame_count, remux
from trtseg.config import CameraConfig
from trtseg.decode import StreamRefused
from trtseg.decode_nvdec import NvdecCameraDecoder, make_decoder
from trtseg.nvdec_stream import (
    NVDEC_CODECS,
    PacketFeed,
    annexb_filter,
    cuda_ordinal,
    length_prefixed,
    nvdec_codec,
    segmenter_gpu,
)


@pytest.fixture(scope="module")
def h264_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return encode(tmp_path_factory.mktemp("nvdec") / "clip.mp4", "libx264")


@pytest.fixture(scope="module")
def hevc_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return encode(tmp_path_factory.mktemp("nvdec") / "clip_hevc.mp4", "libx265")


def _fed(path: Path) -> tuple[PacketFeed, list[bytes]]:
    """The packets a PacketFeed gives NVDEC for the whole file, the demuxer's empty end packet included."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        feed = PacketFeed(stream, container.format.name)
        out: list[bytes] = []
        for packet in container.demux(stream):
            out.extend(bytes(p) for p in feed.packets(packet))
    return feed, out


def _decoded_without_extradata(codec: str, packets: list[bytes]) -> int:
    ctx = av.CodecContext.create(codec, "r")
    frames = 0
    for data in packets:
        try:
            frames += len(ctx.decode(av.Packet(data)))
        except av.error.InvalidDataError:
            continue  # what a decoder cannot parse is dropped, as NVDEC's parser does
    return frames + len(ctx.decode(None))


def _annexb(data: bytes) -> bool:
    return data.startswith(b"\x00\x00\x00\x01") or data.startswith(b"\x00\x00\x01")


@pytest.mark.parametrize(
    ("suffix", "format_name", "needs_filter"),
    [(".mp4", None, True), (".mkv", None, True), (".flv", None, True), (".ts", None, False), (".h264", "h264", False)],
)
def test_h264_reaches_nvdec_as_annexb_from_every_container(
    h264_mp4: Path, tmp_path: Path, suffix: str, format_name: str | None, needs_filter: bool
) -> None:
    source = h264_mp4 if suffix == ".mp4" else remux(h264_mp4, tmp_path / f"clip{suffix}", format_name)
    feed, packets = _fed(source)
    assert feed.codec == "H264"
    assert feed.filter_name == ("h264_mp4toannexb" if needs_filter else None)
    assert len(packets) == 25 and all(_annexb(p) for p in packets)
    assert _decoded_without_extradata("h264", packets) == frame_count(source) == 25


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".ts"])
def test_hevc_reaches_nvdec_as_annexb(hevc_mp4: Path, tmp_path: Path, suffix: str) -> None:
    source = hevc_mp4 if suffix == ".mp4" else remux(hevc_mp4, tmp_path / f"clip{suffix}")
    feed, packets = _fed(source)
    assert feed.codec == "HEVC" and feed.filter_name == ("hevc_mp4toannexb" if suffix != ".ts" else None)
    assert all(_annexb(p) for p in packets)
    assert _decoded_without_extradata("hevc", packets) == 25


def test_length_prefixed_packets_would_not_decode_unfiltered(h264_mp4: Path) -> None:
    """The test above can fail: MP4's own packets, without the filter, are not what NVDEC reads."""
    with av.open(str(h264_mp4)) as container:
        stream = container.streams.video[0]
        raw = [bytes(p) for p in container.demux(stream) if p.size]
        assert length_prefixed(bytes(stream.codec_context.extradata))
    assert not all(_annexb(p) for p in raw)
    assert _decoded_without_extradata("h264", raw) == 0


def test_vp9_passes_as_it_is(tmp_path: Path) -> None:
    source = encode(tmp_path / "clip.webm", "libvpx-vp9", frames=6, size=(64, 48))
    feed, packets = _fed(source)
    assert (feed.codec, feed.filter_name, len(packets)) == ("VP9", None, 6)


def test_a_codec_nvdec_cannot_take_fails_naming_the_setting(tmp_path: Path) -> None:
    source = encode(tmp_path / "clip.avi", "mpeg4", frames=3, size=(64, 48))
    with av.open(str(source)) as container, pytest.raises(StreamRefused) as refused:
        PacketFeed(container.streams.video[0])
    message = str(refused.value)
    assert "decoder 'nvdec'" in message and "mpeg4" in message and "'cpu'" in message
    with pytest.raises(StreamRefused, match="unknown"):
        nvdec_codec("")
    assert {nvdec_codec(name) for name in ("h264", "hevc", "av1", "vp9")} == set(NVDEC_CODECS.values())


def test_filter_choice_follows_the_extradata() -> None:
    avcc = bytes([1, 0x64, 0, 0x1F, 0xFF, 0xE1])
    assert annexb_filter("h264", avcc) == "h264_mp4toannexb"
    assert annexb_filter("hevc", bytes([1, 1, 0x60])) == "hevc_mp4toannexb"
    assert annexb_filter("h264", b"\x00\x00\x00\x01\x67") is None  # MPEG-TS, RTSP: in band already
    assert annexb_filter("h264", b"") is None
    assert annexb_filter("vp9", bytes([1, 2])) is None


def test_cuda_ordinal_of_a_segmenters_gpu() -> None:
    assert cuda_ordinal("1", None) == 1  # the decoder sees every GPU of the node
    assert cuda_ordinal("3", "2,3") == 1  # the node was started with CUDA_VISIBLE_DEVICES=2,3
    assert cuda_ordinal("GPU-bb2e", "GPU-aa1f, GPU-bb2e") == 1
    assert cuda_ordinal("5", "0,1") == 0  # not visible here: GPU 0, logged
    assert cuda_ordinal("GPU-x", None) == 0


def test_nvdec_decoder_takes_the_gpu_it_is_given(tmp_path: Path) -> None:
    camera = CameraConfig(id="g", source="rtsp://cam/1", decoder="nvdec")
    decoder = make_decoder(camera, gpu_id=2)
    assert isinstance(decoder, NvdecCameraDecoder) and decoder.stats()["gpu_id"] == 2
    assert segmenter_gpu(None) == 0  # no segmenter (tests, tools): GPU 0
    assert make_decoder(camera).stats()["gpu_id"] == 0
