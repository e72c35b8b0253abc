"""NVDEC decoder option: decode a camera on the GPU's video engine straight into GPU memory.

Same interface and behaviour as ``trtseg.decode.CameraDecoder`` (``start``, ``stop``, ``latest``,
``stats``, ``state``; newest-frame mailbox, reconnect backoff, native-rate pacing and looping of
file sources, monotonic ``pts_s``): only how a packet is decoded differs. Frames come out of PyNvVideoCodec
as interleaved RGB in device memory and are handed on as CuPy arrays in BGR order
(``Frame.image`` is then a ``cupy.ndarray`` of shape (H, W, 3)), so a GPU segmenter in the same
process reads them without a host round trip. With ``host_frames`` (the camera pipeline's decoder
actor when its frames travel through Ray's object store to the segmenter and to the annotating,
encoding pusher, both of which need them in host memory anyway) each frame is reordered to BGR on
the GPU and downloaded once, into a ring of page-locked buffers: the CPU does no decoding at all.
On the node-local channel the actor turns ``host_frames`` off (it may change between frames) and
the channel downloads each GPU frame straight into its page-locked shared ring
(``trtseg.channel.FrameSlots``), which saves a 2.7 MB host copy per 720p frame.
Chosen per camera with ``CameraConfig.decoder``.

PyNvVideoCodec (pip ``pynvvideocodec``) and CuPy are GPU extras, imported only when an NVDEC
decoder starts; without them the camera fails at once with a message that says what to install.
The source is opened and demuxed by the CPU decoder's own session (``CameraDecoder._session``:
PyAV with trtseg's protocol whitelist, timeouts and reconnects, the clip buffer's packet tap);
its compressed packets go to NVDEC, made Annex B where the container needs it
(``trtseg.nvdec_stream``). A looping file keeps one NVDEC decoder across its passes: each pass
ends with NVDEC's end of stream, which gives back every frame it holds and leaves it ready for
the next pass's first key frame (one that fails or stays silent there is replaced, and that camera
then gets a new decoder each pass).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from trtseg.config.camera import CameraConfig
from trtseg.decode import CameraDecoder
from trtseg.frames import BufferRing
from trtseg.nvdec_stream import PacketFeed, segmenter_gpu
from trtseg.sources import Source, SourceError

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "the NVDEC decoder needs PyNvVideoCodec and CuPy on a machine with an NVIDIA GPU: "
    "scripts/setup.sh --gpu installs them, or pip install pynvvideocodec cupy-cuda12x (or cupy-cuda13x)"
)


HOST_RING_SLOTS = 8  # host frames a consumer may hold before the ring comes round (0.32 s at 25 fps)
# Packets a reused decoder may take without a frame before it counts as stuck (low latency: about 1).
REUSE_PROBE_PACKETS = 16


def _pinned(shape: tuple[int, ...], dtype: Any) -> Any:
    import cupyx

    return cupyx.empty_pinned(shape, dtype)


def _low_latency(nvc: Any) -> tuple[Any, Any] | None:
    """PyNvVideoCodec's low-latency mode and its per-packet flag, where this version has them.

    NVDEC's native mode holds back about four frames before returning them in display order (160 ms
    at 25 fps, unseen by the pipeline's latency figures, which start at the decoder's output). The
    low-latency mode returns each frame as its packet is decoded, still in display order (a GPU test
    checks it on a clip with B-frames). At the end of a file the decoder is flushed with an empty
    packet (NVDEC's end of stream), so a looping clip loses no frames at each loop.
    """
    latency = getattr(getattr(nvc, "DisplayDecodeLatencyType", None), "LOW", None)
    flag = getattr(getattr(nvc, "VideoPacketFlag", None), "ENDOFPICTURE", None)
    return (latency, flag) if latency is not None and flag is not None else None


class NvdecUnavailable(SourceError):
    """PyNvVideoCodec, CuPy or the GPU is missing: the camera cannot use decoder 'nvdec' here."""


def _modules() -> tuple[Any, Any]:
    try:
        import cupy
        import PyNvVideoCodec as nvc  # noqa: N813 (NVIDIA's own short name)
    except ImportError as error:
        raise NvdecUnavailable(f"{INSTALL_HINT} ({error})") from None
    return nvc, cupy


class _GpuFrame:
    """Adapter so the shared loop takes a GPU image like a PyAV frame (``pts`` in the stream's time base)."""

    __slots__ = ("image", "pts", "time")

    def __init__(self, image: Any, pts: int | None) -> None:
        self.image = image
        self.pts = pts
        self.time = None

    def to_ndarray(self, format: str = "bgr24") -> Any:
        return self.image


class NvdecCameraDecoder(CameraDecoder):
    """``CameraDecoder`` whose frames are decoded by NVDEC into GPU memory (CuPy, BGR)."""

    def __init__(
        self,
        camera: CameraConfig,
        file_dir: str | Path | None = None,
        clock: Callable[[], float] = time.time,
        gpu_id: int = 0,
        host_frames: bool = False,
    ) -> None:
        super().__init__(camera, file_dir=file_dir, clock=clock)
        self.gpu_id = gpu_id
        self.host_frames = host_frames
        # Host frames are downloaded into a ring of page-locked buffers. A frame is put into the object
        # store as soon as the decoder actor takes it; the ring only has to outlast that hand-off.
        self._host_ring = BufferRing(HOST_RING_SLOTS, allocate=_pinned)
        self._blocking_wait: bool | None = None  # None until the first session sets the flag
        self._nv: Any = None  # PyNvVideoCodec's decoder, kept across a looping file's passes
        self._nv_signature: tuple[str, bytes] | None = None
        self._feed: PacketFeed | None = None
        self._reused = False  # this session continues with the previous session's decoder
        self._end_of_picture: Any = None
        self._nv_created = 0
        self._nv_reused = 0
        self._reuse_ok = True  # False once a reused decoder failed: every pass gets a new one
        self._reuse_failed = 0
        self._session_packets = 0

    def start(self) -> NvdecCameraDecoder:
        """Fail at once, clearly, when the GPU extras are absent; else start like the CPU decoder."""
        try:
            _modules()
        except NvdecUnavailable as error:
            self._set_state("failed", error=str(error))
            raise
        super().start()
        return self

    def stats(self) -> dict[str, Any]:
        feed = self._feed
        return {
            **super().stats(),
            "decoder": "nvdec",
            "gpu_id": self.gpu_id,
            "host_frames": self.host_frames,
            "cuda_blocking_wait": self._blocking_wait,
            "nvdec_decoders": self._nv_created,  # NVDEC sessions made (one for all passes of a looping file)
            "nvdec_reused": self._nv_reused,  # demux sessions that went on with the previous decoder
            "nvdec_reuse_failed": self._reuse_failed,
            "bitstream_filter": feed.filter_name if feed is not None else None,
        }

    # ----------------------------------------------------------------- thread
    def _run(self) -> None:
        try:
            super()._run()
        finally:
            self._drop_decoder()  # NVDEC's session ends with the thread, not at a file's loop

    def _session(self, source: Source) -> bool:
        _nvc, cupy = _modules()
        if self._blocking_wait is None:
            self._blocking_wait = _blocking_sync(self.gpu_id)
        with cupy.cuda.Device(self.gpu_id):
            return super()._session(source)

    def _open_stream(self, stream: Any, container: Any) -> None:
        """This session's packet feed, and NVDEC's decoder: the last one where the stream is the same."""
        nvc, _cupy = _modules()
        feed = PacketFeed(stream, str(getattr(container.format, "name", "")))
        self._decode_threads = 0  # FFmpeg decodes nothing
        if self._nv is not None and self._nv_signature != feed.signature:
            self._drop_decoder()
        self._session_packets = 0
        self._reused = self._nv is not None
        if self._reused:
            self._nv_reused += 1
        else:
            self._new_decoder(nvc, feed)
        self._feed = feed

    def _new_decoder(self, nvc: Any, feed: PacketFeed) -> None:
        low_latency = _low_latency(nvc)
        self._nv = nvc.CreateDecoder(
            gpuid=self.gpu_id,
            codec=getattr(nvc.cudaVideoCodec, feed.codec),
            cudacontext=0,
            cudastream=0,
            usedevicememory=True,
            outputColorType=nvc.OutputColorType.RGB,
            **({"latency": low_latency[0]} if low_latency else {}),
        )
        self._end_of_picture = low_latency[1] if low_latency else None
        self._nv_signature = feed.signature
        self._nv_created += 1
        logger.info(
            "nvdec decoder created camera=%s gpu=%d codec=%s filter=%s",
            self.camera.id,
            self.gpu_id,
            feed.codec_name,
            feed.filter_name,
        )

    def _decode_packet(self, packet: Any) -> list[Any]:
        """NVDEC's frames for one demuxed packet; the empty packet at the end is NVDEC's end of stream."""
        feed = self._feed
        assert feed is not None
        end = not packet.size  # read first: the bitstream filter takes the packet's data over
        frames: list[Any] = []
        for annexb in feed.packets(packet):
            frames.extend(self._decoded(annexb))
        if end:
            frames.extend(self._decoded(None))
        return frames

    def _decoded(self, packet: Any) -> Iterator[_GpuFrame]:
        """Decode one packet (None: end of stream) into frames: a BGR CuPy copy (NVDEC reuses its
        surfaces), or with ``host_frames`` a NumPy array in the host ring (valid ``HOST_RING_SLOTS`` frames)."""
        nvc, cupy = _modules()
        data = nvc.PacketData()  # empty: NVDEC's end of stream (every frame it holds comes out)
        if packet is not None:
            data.bsl_data = int(packet.buffer_ptr)  # PyAV's own buffer: no copy, alive until Decode returns
            data.bsl = int(packet.buffer_size)
            data.pts = int(packet.pts) if packet.pts is not None else 0
            if self._end_of_picture is not None:
                data.decode_flag = self._end_of_picture  # low-latency mode: decode this picture now
        decoded_frames = self._decode(nvc, data)
        with_pts = packet is None or packet.pts is not None
        for decoded in decoded_frames:
            rgb = cupy.from_dlpack(decoded)
            if rgb.ndim != 3 or rgb.shape[2] != 3:
                raise SourceError(f"NVDEC returned a frame of shape {tuple(rgb.shape)}, expected (H, W, 3)")
            bgr = cupy.ascontiguousarray(rgb[:, :, ::-1])
            if self.host_frames:
                host = self._host_ring.next(tuple(bgr.shape))
                bgr.get(out=host)  # DMA into page-locked memory: no page faults, no staging copy
                bgr = host
            stamp = getattr(decoded, "timestamp", None)
            pts = int(stamp) if with_pts and isinstance(stamp, int) else None
            yield _GpuFrame(bgr, pts)

    def _decode(self, nvc: Any, data: Any) -> list[Any]:
        """NVDEC's frames for one packet; a reused decoder that fails or stays silent is replaced.

        A decoder flushed at the end of a pass takes the next pass's first key frame (it is the same
        stream); should it not (an exception, or no frame after ``REUSE_PROBE_PACKETS`` packets), a new
        one takes over and this camera stops reusing decoders (logged, ``nvdec_reuse_failed``).
        """
        self._session_packets += 1
        try:
            frames = list(self._nv.Decode(data))
        except Exception as error:
            if not (self._reused and self._frames_in_session == 0):
                raise
            self._replace_reused(nvc, error)
            return list(self._nv.Decode(data))
        if frames or not self._reused or self._frames_in_session or self._session_packets < REUSE_PROBE_PACKETS:
            return frames
        self._replace_reused(nvc, "no frame")
        return list(self._nv.Decode(data))

    def _replace_reused(self, nvc: Any, why: object) -> None:
        logger.warning("nvdec decoder not reusable across passes camera=%s error=%s", self.camera.id, why)
        self._reuse_ok = False
        self._reuse_failed += 1
        self._drop_decoder()
        assert self._feed is not None
        self._new_decoder(nvc, self._feed)

    def _close_stream(self, source: Source, clean: bool) -> None:
        """Keep the decoder for a looping file's next pass (it was flushed); drop it otherwise."""
        self._feed = None
        if not (clean and source.is_file and self.camera.loop and self._reuse_ok):
            self._drop_decoder()

    def _drop_decoder(self) -> None:
        self._nv = None  # PyNvVideoCodec frees the NVDEC session with its last reference
        self._nv_signature = None
        self._reused = False


def _packets(demuxer: Any) -> Iterator[Any]:
    """PyNvVideoCodec's own demuxer's packets up to and including its empty end-of-stream packet (``bsl == 0``).

    Cameras no longer use it (PyAV demuxes them); bench/bench_nvdec.py measures NVDEC with it.

    Iterating the demuxer stops before that packet, and without it NVDEC keeps the file's last
    frames; decoding it flushes them (as NVIDIA's transcode sample does).
    """
    while True:
        packet = demuxer.Demux()
        yield packet
        if not packet.bsl:
            return


BLOCKING_SYNC = 0x04  # cudaDeviceScheduleBlockingSync


def _blocking_sync(gpu_id: int) -> bool:
    """Make this process's CUDA waits sleep instead of spin (set before its context is made).

    A decoder waits on the GPU for every frame (the colour reorder and the download), and a GPU shared
    with the segmenters' processes runs one context at a time: spinning through those waits costs
    every NVDEC camera CPU for nothing. Where the context already exists the flag cannot be set.
    """
    try:
        from cuda.bindings import runtime as cudart

        (error,) = cudart.cudaSetDevice(gpu_id)
        if error == cudart.cudaError_t.cudaSuccess:
            (error,) = cudart.cudaSetDeviceFlags(BLOCKING_SYNC)
        if error == cudart.cudaError_t.cudaSuccess:
            return True
        logger.info("NVDEC decoder keeps CUDA's spinning waits gpu=%d error=%s", gpu_id, error)
    except Exception as error:  # no cuda-python: CuPy's default (spinning) waits
        logger.info("NVDEC decoder keeps CUDA's spinning waits gpu=%d error=%s", gpu_id, error)
    return False


def make_decoder(
    camera: CameraConfig,
    file_dir: str | Path | None = None,
    gpu_id: int | None = None,
    host_frames: bool = False,
    segmenter: Any = None,
) -> CameraDecoder:
    """The decoder ``camera.decoder`` asks for: ``CameraDecoder`` (cpu) or ``NvdecCameraDecoder`` (nvdec).

    ``host_frames``: NVDEC frames come out as NumPy arrays (CPU frames always do). NVDEC decodes on
    ``gpu_id``, else on the GPU of the camera's ``segmenter`` (a Ray actor, asked once), else GPU 0.
    """
    if camera.decoder == "nvdec":
        gpu = gpu_id if gpu_id is not None else segmenter_gpu(segmenter)
        return NvdecCameraDecoder(camera, file_dir=file_dir, gpu_id=gpu, host_frames=host_frames)
    return CameraDecoder(camera, file_dir=file_dir)
