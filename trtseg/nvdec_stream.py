"""How a stream demuxed by PyAV reaches NVDEC: the codec NVDEC is told and the packets it is fed.

NVDEC cameras open and demux their source exactly like CPU cameras (``trtseg.decode``: FFmpeg's
protocol whitelist, timeouts, reconnects, the clip buffer's packet tap); only the compressed
packets then go to the GPU's video decoder instead of FFmpeg's. NVDEC's parser takes H.264 and
HEVC as an Annex B byte stream (start codes, parameter sets in band), while MP4, MKV and FLV carry
them length-prefixed with the parameter sets in the stream's extradata (``avcC``/``hvcC``). The
choice is made from that extradata, which says exactly what the packets are, rather than from the
container's name: MPEG-TS, RTSP/RTP and raw ``.h264`` files are already Annex B and pass as they
are. AV1 and VP9 packets pass as they are.

Nothing here needs a GPU: the codec mapping, the filter choice and the converted bytes are tested
on any machine (tests/core/test_nvdec_stream.py).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from trtseg.decode import StreamRefused

logger = logging.getLogger(__name__)

# PyAV/FFmpeg codec name -> member of PyNvVideoCodec's ``cudaVideoCodec``.
NVDEC_CODECS: dict[str, str] = {"h264": "H264", "hevc": "HEVC", "av1": "AV1", "vp9": "VP9"}
# Length-prefixed (MP4 style) -> Annex B, for the codecs that need it.
ANNEXB_FILTERS: dict[str, str] = {"h264": "h264_mp4toannexb", "hevc": "hevc_mp4toannexb"}


def nvdec_codec(codec_name: str) -> str:
    """The ``cudaVideoCodec`` member for a stream's codec; StreamRefused (naming ``decoder``) otherwise."""
    member = NVDEC_CODECS.get(codec_name)
    if member is None:
        raise StreamRefused(
            f"decoder 'nvdec' cannot decode this camera's {codec_name or 'unknown'} video "
            f"(NVDEC here takes {', '.join(NVDEC_CODECS)}): set the camera's decoder to 'cpu'"
        )
    return member


def length_prefixed(extradata: bytes) -> bool:
    """True when the extradata is an ``avcC``/``hvcC`` record (version byte 1), not Annex B start codes."""
    return len(extradata) > 0 and extradata[0] == 1


def annexb_filter(codec_name: str, extradata: bytes) -> str | None:
    """The bitstream filter that makes this stream's packets Annex B, or None when they are already."""
    name = ANNEXB_FILTERS.get(codec_name)
    return name if name is not None and length_prefixed(extradata) else None


class PacketFeed:
    """One demux session's packets as NVDEC takes them (the bitstream filter is per session).

    ``packets(packet)`` gives the PyAV packets to decode for one demuxed packet; the demuxer's empty
    packet at the end drains the filter (its caller then sends NVDEC its end of stream). A filtered
    packet is taken over by the filter (FFmpeg moves its data): read what you need of it first.
    """

    def __init__(self, stream: Any, container_format: str = "") -> None:
        ctx = stream.codec_context
        self.codec_name = str(ctx.name)
        self.codec = nvdec_codec(self.codec_name)
        self.extradata = bytes(ctx.extradata or b"")
        self.filter_name = annexb_filter(self.codec_name, self.extradata)
        self._filter: Any = None
        if self.filter_name is not None:
            import av.bitstream

            # The stream (not only the codec name) so the filter gets the extradata to put in band.
            self._filter = av.bitstream.BitStreamFilterContext(self.filter_name, stream)
        logger.debug("nvdec feed codec=%s container=%s filter=%s", self.codec_name, container_format, self.filter_name)

    @property
    def signature(self) -> tuple[str, bytes]:
        """What must match for a new session to go on decoding with the previous session's decoder."""
        return (self.codec, self.extradata)

    def packets(self, packet: Any) -> list[Any]:
        if self._filter is None:
            return [packet] if packet.size else []
        if packet.size:
            return list(self._filter.filter(packet))
        return list(self._filter.filter(None))  # the end: whatever the filter still holds


def cuda_ordinal(gpu_id: str, visible: str | None) -> int:
    """Ray's id of a GPU (as its node lists it) as a CUDA device ordinal in a process that sees ``visible``.

    A process whose ``CUDA_VISIBLE_DEVICES`` is unset sees every GPU in the node's order; one that
    has it set numbers the listed devices from 0. An id the process cannot see gives 0 (logged).
    """
    if visible is None:
        return int(gpu_id) if gpu_id.isdigit() else 0
    entries = [entry.strip() for entry in visible.split(",") if entry.strip()]
    if gpu_id in entries:
        return entries.index(gpu_id)
    logger.warning("segmenter's GPU is not visible to this decoder gpu=%s visible=%s: using GPU 0", gpu_id, visible)
    return 0


SEGMENTER_ASK_S = 5.0


def segmenter_gpu(segmenter: Any, timeout_s: float = SEGMENTER_ASK_S) -> int:
    """The CUDA ordinal, in this process, of the GPU Ray gave ``segmenter`` (its ping's ``gpu_ids``).

    NVDEC decodes where the camera's frames are segmented, so a multi-GPU node spreads its video
    engines like its segmenters. 0 when there is no segmenter, it has no GPU or does not answer.
    """
    if segmenter is None:
        return 0
    try:
        import ray

        answer = ray.get(segmenter.ping.remote(), timeout=timeout_s)
    except Exception as error:  # restarting, gone, or no Ray here: GPU 0 still decodes
        logger.warning("segmenter did not say its GPU, NVDEC uses GPU 0 error=%s", error)
        return 0
    ids = answer.get("gpu_ids") if isinstance(answer, dict) else None
    if not ids:
        return 0
    return cuda_ordinal(str(ids[0]), os.environ.get("CUDA_VISIBLE_DEVICES"))
