"""Small real video files in the containers and codecs NVDEC cameras meet, made with PyAV alone.

PyAV's wheel carries libx264, libx265 and libvpx, so these need no ffmpeg binary: the same helpers
serve the CPU tests here (tests/core/test_nvdec_stream.py) and the GPU tests on a machine without
FFmpeg installed (tests/gpu/test_nvdec_pyav.py).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

FPS = 25


def encode(path: Path, codec: str = "libx264", frames: int = 25, size: tuple[int, int] = (128, 96)) -> Path:
    """A moving gradient encoded with ``codec`` into ``path`` (container from the suffix); B-frames on x264/x265."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec in ("libx264", "libx265"):
            stream.options = {"preset": "veryfast", "g": "12", "bf": "2"}
            if codec == "libx265":
                stream.options |= {"x265-params": "log-level=error:bframes=2:keyint=12"}
        for index in range(frames):
            image = np.stack(
                [(xx * 2 + index * 7) % 256, (yy * 2 + index * 3) % 256, (xx + yy + index * 11) % 256], axis=-1
            ).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def remux(source: Path, target: Path, format_name: str | None = None) -> Path:
    """``source``'s video packets copied into another container (FFmpeg converts where it must)."""
    with av.open(str(source)) as inp, av.open(str(target), "w", format=format_name) as out:
        in_stream = inp.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        for packet in inp.demux(in_stream):
            if packet.dts is None:
                continue
            packet.stream = out_stream
            out.mux(packet)
    return target


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def hls_playlist(path: Path, segment: str, seconds: float) -> Path:
    """A one-segment HLS playlist naming ``segment`` (relative, or a URL such as file:///...)."""
    path.write_text(
        f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{int(seconds) + 1}\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:{seconds:.3f},\n{segment}\n#EXT-X-ENDLIST\n"
    )
    return path
