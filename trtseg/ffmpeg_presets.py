"""Named FFmpeg command-line presets for pushing annotated frames (in the manner of Frigate's ffmpeg_presets).

Input is raw frames on stdin (yuv420p converted by the pusher, or BGR for odd sizes); output is x264
(zero latency, yuv420p, fixed GOP so HLS segments and RTMP keyframes line up) to an RTMP, RTSP or
SRT URL, or to HLS files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from trtseg.config.camera import CameraConfig
from trtseg.config.pusher import PusherConfig

PUSH_OUTPUTS = ("rtmp", "rtmps", "rtsp", "srt", "hls")
OUTPUT_IO_TIMEOUT_US = 10_000_000


def wire_format(size: tuple[int, int]) -> str:
    """Pixel format of the frames written to FFmpeg's stdin for ``size`` (w, h).

    Even sizes go as yuv420p, converted by the pusher (OpenCV, BT.601 limited range, as FFmpeg's own
    bgr24 conversion): half the bytes through the pipe and no swscale pass in FFmpeg, which cut the
    encoder's CPU by about 40 % at 720p (docs/BENCHMARKS.md). Odd sizes, which 4:2:0 cannot hold,
    go as bgr24 and are cropped by FFmpeg.
    """
    width, height = size
    return "yuv420p" if width % 2 == 0 and height % 2 == 0 else "bgr24"


def input_args(size: tuple[int, int], fps: float) -> list[str]:
    """Raw frames of ``size`` (w, h) at ``fps`` on stdin, in ``wire_format(size)``."""
    width, height = size
    return [
        "-f", "rawvideo", "-pix_fmt", wire_format(size), "-s", f"{width}x{height}", "-r", _fps_text(fps),
        "-i", "pipe:0",
    ]  # fmt: skip


def encode_args(pusher: PusherConfig, size: tuple[int, int], fps: float) -> list[str]:
    """libx264 settings from PusherConfig: preset, threads, CBR-ish bitrate, fixed GOP, no B-frames."""
    gop = max(1, round(fps * pusher.gop_s))
    kbps = pusher.bitrate_kbps
    args = ["-an"]
    width, height = size
    if width % 2 or height % 2:  # yuv420p needs even sizes: crop the odd last row/column
        args += ["-vf", "crop=trunc(iw/2)*2:trunc(ih/2)*2"]
    args += [
        "-c:v", "libx264", "-preset", pusher.preset, "-tune", "zerolatency",
        "-threads", str(pusher.threads), "-pix_fmt", "yuv420p",
        "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{2 * kbps}k",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-bf", "0",
    ]  # fmt: skip
    return args


def _rtmp(url: str, _camera: CameraConfig, _pusher: PusherConfig) -> list[str]:
    return ["-f", "flv", "-flvflags", "no_duration_filesize", url]


def _rtsp(url: str, _camera: CameraConfig, _pusher: PusherConfig) -> list[str]:
    return ["-f", "rtsp", "-rtsp_transport", "tcp", url]


def _srt(url: str, _camera: CameraConfig, _pusher: PusherConfig) -> list[str]:
    return ["-f", "mpegts", url]


def hls_playlist(camera_id: str, pusher: PusherConfig) -> Path:
    """Where a camera's live HLS playlist is written: <hls_dir>/<camera_id>/index.m3u8."""
    return Path(pusher.hls_dir) / camera_id / "index.m3u8"


def _hls(_url: str, camera: CameraConfig, pusher: PusherConfig) -> list[str]:
    playlist = hls_playlist(camera.id, pusher)
    return [
        "-f", "hls", "-hls_time", f"{pusher.hls_segment_s:g}", "-hls_list_size", str(pusher.hls_list_size),
        "-hls_flags", "delete_segments+independent_segments+temp_file+omit_endlist",
        # Segment numbers from the clock: a restarted FFmpeg never reuses a name a player cached.
        "-hls_start_number_source", "epoch",
        "-hls_segment_filename", str(playlist.parent / "seg_%d.ts"), str(playlist),
    ]  # fmt: skip


OUTPUT_PRESETS: dict[str, Callable[[str, CameraConfig, PusherConfig], list[str]]] = {
    "rtmp": _rtmp,
    "rtmps": _rtmp,
    "rtsp": _rtsp,
    "srt": _srt,
    "hls": _hls,
}


def output_kind(push: str) -> str:
    """'rtmp', 'rtsp', 'srt', 'hls' or 'none' for a camera's ``push`` setting."""
    scheme = urlsplit(push).scheme.lower() if "://" in push else push.lower()
    if scheme != "none" and scheme not in OUTPUT_PRESETS:
        raise ValueError(f"no push preset for '{scheme}'")
    return scheme


def build_push_command(camera: CameraConfig, pusher: PusherConfig, size: tuple[int, int], fps: float) -> list[str]:
    """The whole FFmpeg argv that encodes stdin frames and pushes them to the camera's target."""
    kind = output_kind(camera.push)
    if kind == "none":
        raise ValueError(f"camera '{camera.id}' pushes nowhere (push: none)")
    network = kind != "hls"
    head = [pusher.ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning"]
    head += ["-fflags", "nobuffer"] if network else []
    head += input_args(size, fps)
    out = encode_args(pusher, size, fps)
    if kind in ("rtmp", "rtmps", "srt"):
        # A target that stops reading (server hung) makes FFmpeg fail instead of blocking forever.
        out += ["-rw_timeout", str(OUTPUT_IO_TIMEOUT_US)]
    return head + out + OUTPUT_PRESETS[kind](camera.push, camera, pusher)


def _fps_text(fps: float) -> str:
    return str(int(fps)) if float(fps).is_integer() else f"{fps:.3f}"
