"""NVDEC decoder option: decode a camera on the GPU's video engine straight into GPU memory.

Same interface and behaviour as ``trtseg.decode.CameraDecoder`` (``start``, ``stop``, ``latest``,
``stats``, ``state``; newest-frame mailbox, reconnect backoff, native-rate pacing and looping of
file sources, monotonic ``pts_s``): only the session differs. Frames come out of PyNvVideoCodec
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
The source is validated by ``trtseg.sources`` like the CPU path, but demuxing is PyNvVideoCodec's
own FFmpeg, which does not take trtseg's per-protocol options (whitelist, timeouts).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from trtseg.config.camera import CameraConfig
from trtseg.decode import CameraDecoder, _Stop
from trtseg.frames import BufferRing
from trtseg.sources import Source, SourceError

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "the NVDEC decoder needs PyNvVideoCodec and CuPy on a machine with an NVIDIA GPU: "
    "pip install pynvvideocodec cupy-cuda12x (or cupy-cuda13x)"
)


HOST_RING_SLOTS = 8  # host frames a consumer may hold before the ring comes round (0.32 s at 25 fps)


def _pinned(shape: tuple[int, ...], dtype: Any) -> Any:
    import cupyx

    return cupyx.empty_pinned(shape, dtype)


def _low_latency(nvc: Any) -> tuple[Any, Any] | None:
    """PyNvVideoCodec's low-latency mode and its per-packet flag, where this version has them.

    NVDEC's native mode holds back about four frames before returning them in display order (160 ms
    at 25 fps, unseen by the pipeline's latency figures, which start at the decoder's output). The
    low-latency mode returns each frame as its packet is decoded, still in display order (a GPU test
    checks it on a clip with B-frames). At the end of a file the decoder is flushed with the demuxer's
    empty packet (``_packets``), so a looping clip loses no frames at each loop.
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
    """Adapter so the base class's ``_deliver`` takes a GPU image like a PyAV frame."""

    __slots__ = ("image",)

    def __init__(self, image: Any) -> None:
        self.image = image

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
        return {
            **super().stats(),
            "decoder": "nvdec",
            "gpu_id": self.gpu_id,
            "host_frames": self.host_frames,
            "cuda_blocking_wait": self._blocking_wait,
        }

    def _session(self, source: Source) -> bool:
        """Demux and decode until the end or an error; True when at least one frame came out."""
        nvc, cupy = _modules()
        if self._blocking_wait is None:
            self._blocking_wait = _blocking_sync(self.gpu_id)
        self._frames_in_session = 0
        demuxer = nvc.CreateDemuxer(filename=source.url)
        low_latency = _low_latency(nvc)
        decoder = nvc.CreateDecoder(
            gpuid=self.gpu_id,
            codec=demuxer.GetNvCodecId(),
            cudacontext=0,
            cudastream=0,
            usedevicememory=True,
            outputColorType=nvc.OutputColorType.RGB,
            **({"latency": low_latency[0]} if low_latency else {}),
        )
        fps = float(demuxer.FrameRate() or 0.0)
        self._source_fps = fps if 0 < fps <= 240 else 0.0
        if self._source_fps > 0:
            self._frame_step = 1.0 / self._source_fps
        self._begin_session()
        pace_origin: tuple[float, float] | None = None
        end_of_picture = low_latency[1] if low_latency else None
        with cupy.cuda.Device(self.gpu_id):
            for image, raw_pts in self._decoded(demuxer, decoder, cupy, end_of_picture):
                if self._stop.is_set():
                    raise _Stop
                pts = self._monotonic_pts(raw_pts)
                if source.is_file:
                    pace_origin = self._pace(pts, pace_origin)
                self._deliver(_GpuFrame(image), pts)  # type: ignore[arg-type]
        return self._frames_in_session > 0

    def _decoded(
        self, demuxer: Any, decoder: Any, cupy: Any, end_of_picture: Any = None
    ) -> Iterator[tuple[Any, float]]:
        """(BGR image, seconds) for each decoded frame: a CuPy copy (NVDEC reuses its surfaces), or
        with ``host_frames`` a NumPy array in the host ring (valid for ``HOST_RING_SLOTS`` frames)."""
        for packet in _packets(demuxer):
            if self._stop.is_set():
                raise _Stop
            if end_of_picture is not None and packet.bsl:
                packet.decode_flag = end_of_picture  # low-latency mode: decode this picture now
            for decoded in decoder.Decode(packet):
                rgb = cupy.from_dlpack(decoded)
                if rgb.ndim != 3 or rgb.shape[2] != 3:
                    raise SourceError(f"NVDEC returned a frame of shape {tuple(rgb.shape)}, expected (H, W, 3)")
                bgr = cupy.ascontiguousarray(rgb[:, :, ::-1])
                if self.host_frames:
                    host = self._host_ring.next(tuple(bgr.shape))
                    bgr.get(out=host)  # DMA into page-locked memory: no page faults, no staging copy
                    bgr = host
                # Frame count x frame step: PyNvVideoCodec's timestamps come in the container's time
                # base, which its demuxer does not expose in every version; a camera's rate is constant.
                yield bgr, self._frames_in_session * self._frame_step


def _packets(demuxer: Any) -> Iterator[Any]:
    """The demuxer's packets up to and including its empty end-of-stream packet (``bsl == 0``).

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
    camera: CameraConfig, file_dir: str | Path | None = None, gpu_id: int = 0, host_frames: bool = False
) -> CameraDecoder:
    """The decoder ``camera.decoder`` asks for: ``CameraDecoder`` (cpu) or ``NvdecCameraDecoder`` (nvdec).

    ``host_frames``: NVDEC frames come out as NumPy arrays (CPU frames always do).
    """
    if camera.decoder == "nvdec":
        return NvdecCameraDecoder(camera, file_dir=file_dir, gpu_id=gpu_id, host_frames=host_frames)
    return CameraDecoder(camera, file_dir=file_dir)
