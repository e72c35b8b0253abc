"""CPU per camera of decoding (PyAV, as CameraDecoder does) and of encoding (x264, as StreamPusher does).

Usage: .venv/bin/python bench/bench_media.py [--seconds 10] [--write]
With --write the table replaces the media section of docs/BENCHMARKS.md (between its markers).
CPU is user+system seconds per second of video: 1.00 means one core busy for one camera.
"""

from __future__ import annotations

import argparse
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trtseg.config import CameraConfig, PusherConfig  # noqa: E402
from trtseg.ffmpeg_presets import build_push_command  # noqa: E402

START, END = "<!-- bench_media:start -->", "<!-- bench_media:end -->"
SIZE, FPS = (1280, 720), 25
NOTES = (
    "Reading: a camera costs decode + encode + inference. CPU per camera is what `getrusage` charges "
    "(this process for decode, the FFmpeg child for encode), per second of video, so it does not depend on "
    "how busy the machine is; the speed column does (the machine is shared). The clip is a test pattern "
    "with sensor-like noise until `datasets.video` can render the site scene; real scenes cost more to encode. "
    "x264 `threads` 2 costs about the same CPU as 1 and, with `zerolatency` (sliced threads), spreads each "
    "frame over two cores, hence the default `threads: 2`. "
    "`veryfast` (the default) costs roughly 20-30% more than `superfast` and about "
    "twice `ultrafast`; at the default 2500 kbit/s `ultrafast` (no CABAC, no B-frames) looks visibly worse, so "
    "`veryfast` stays the default and `superfast` is the setting for hosts packed with cameras."
)


def make_clip(path: Path, seconds: float) -> Path:
    """A 720p25 H.264 clip: the synthetic site scene when datasets.video has it, else FFmpeg's testsrc2."""
    try:
        from datasets.video import render_sample_video  # type: ignore[import-not-found]

        render_sample_video(path, seconds=seconds, fps=FPS, size=SIZE, seed=0)
        return path
    except ImportError:
        pass
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"]
    # Mild temporal noise, like a real sensor: a clean test pattern would flatter both decoder and encoder.
    cmd += ["-i", f"testsrc2=size={SIZE[0]}x{SIZE[1]}:rate={FPS},noise=alls=6:allf=t", "-t", str(seconds)]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-b:v", "2500k", "-g", str(FPS), "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, check=True, timeout=300)
    return path


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def bench_decode(clip: Path) -> tuple[float, float, list[np.ndarray]]:
    """(cpu per video second, realtime factor, frames) of PyAV decode + bgr24 conversion, unpaced."""
    frames: list[np.ndarray] = []
    cpu0, wall0 = _cpu(resource.RUSAGE_SELF), time.perf_counter()
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="bgr24"))
    cpu, wall = _cpu(resource.RUSAGE_SELF) - cpu0, time.perf_counter() - wall0
    video_s = len(frames) / FPS
    return cpu / video_s, video_s / wall, frames


def bench_encode(frames: list[np.ndarray], preset: str, threads: int, workdir: Path) -> tuple[float, float]:
    """(cpu per video second, realtime factor) of the pusher's x264 command writing an mpegts file."""
    camera = CameraConfig(id="bench", source="rtsp://127.0.0.1/x", push="hls")
    pusher = PusherConfig(preset=preset, threads=threads, hls_dir=workdir)
    cmd = build_push_command(camera, pusher, SIZE, FPS)
    # Same input and encoder settings; the output is a local file so only encoding is measured.
    out = workdir / f"{preset}-{threads}.ts"
    cmd = [*cmd[: cmd.index("-f", cmd.index("pipe:0"))], "-f", "mpegts", "-y", str(out)]
    cpu0, wall0 = _cpu(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None
    for image in frames:
        proc.stdin.write(image.tobytes())
    proc.stdin.close()
    proc.wait(600)
    cpu, wall = _cpu(resource.RUSAGE_CHILDREN) - cpu0, time.perf_counter() - wall0
    video_s = len(frames) / FPS
    return cpu / video_s, video_s / wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the 720p25 test clip")
    parser.add_argument("--write", action="store_true", help="write the table into docs/BENCHMARKS.md")
    args = parser.parse_args()
    if not shutil.which("ffmpeg"):
        print("ffmpeg is needed", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        clip = make_clip(workdir / "clip.mp4", args.seconds)
        decode_cpu, decode_rt, frames = bench_decode(clip)
        rows = [f"| decode (PyAV {av.__version__}, threads auto, to BGR) | - | {decode_cpu:.2f} | {decode_rt:.1f}x |"]
        for preset in ("ultrafast", "superfast", "veryfast"):
            for threads in (1, 2):
                cpu, rt = bench_encode(frames, preset, threads, workdir)
                label = f"encode x264 {preset} (ffmpeg, zerolatency, 2500k)"
                rows.append(f"| {label} | {threads} | {cpu:.2f} | {rt:.1f}x |")
    cores = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    ffmpeg_version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=False).stdout
    table = "\n".join(
        [
            f"Machine: {platform.processor() or platform.machine()}, {cores} cores; "
            f"{ffmpeg_version.splitlines()[0] if ffmpeg_version else 'ffmpeg ?'}; "
            f"{args.seconds:g} s of 1280x720 at {FPS} fps.",
            "",
            "| stage | x264 threads | CPU cores per camera | speed (realtime = 1x) |",
            "|---|---|---|---|",
            *rows,
        ]
    )
    print(table)
    if args.write:
        write_section(table, args.seconds)
    return 0


def write_section(table: str, seconds: float) -> None:
    """Replace (or append) the media section of docs/BENCHMARKS.md, leaving other sections untouched."""
    doc = ROOT / "docs" / "BENCHMARKS.md"
    body = (
        f"{START}\n## Media: decode and encode CPU per camera\n\n"
        f"Command: `.venv/bin/python bench/bench_media.py --seconds {seconds:g} --write`\n\n{table}\n\n{NOTES}\n{END}"
    )
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if START in text and END in text:
        text = text[: text.index(START)] + body + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    doc.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
