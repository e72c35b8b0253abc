"""Real streaming servers for the media tests: nginx-rtmp, gst-rtsp-server, an FFmpeg publisher, test clips.

Each server runs as a subprocess on a free loopback port, can be stopped and started again on the
same port (reconnect tests), and is torn down by its fixture's finalizer whatever the test did.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.services.ports import free_port, wait_for_port

logger = logging.getLogger(__name__)

RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
SYSTEM_PYTHON = Path("/usr/bin/python3")
GST_SCRIPT = Path(__file__).with_name("gst_rtsp_server.py")


def _terminate(proc: subprocess.Popen | None, timeout_s: float = 5.0) -> None:
    """Stop a child we started: SIGTERM, then SIGKILL; always reaped (no zombie)."""
    if proc is None or proc.poll() is not None:
        if proc is not None:
            proc.wait()
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout_s)


def make_test_clip(path: Path, seconds: float = 4.0, fps: int = 25, size: tuple[int, int] = (1280, 720)) -> Path:
    """An H.264 mp4 clip: the synthetic site scene when datasets.video has it, else FFmpeg's testsrc2."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        from datasets.video import render_sample_video  # type: ignore[import-not-found]
    except ImportError:
        render_sample_video = None
    if render_sample_video is not None:
        render_sample_video(path, seconds=seconds, fps=fps, size=size, seed=0)
        return path
    width, height = size
    cmd = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}",
        "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-g", str(fps), "-bf", "0", "-movflags", "+faststart", str(path),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=120)
    return path


def ffprobe(target: str | Path, timeout_s: float = 20.0, extra: list[str] | None = None) -> dict:
    """ffprobe's JSON (streams and format) of a file or live URL."""
    import json

    cmd = ["ffprobe", "-hide_banner", "-v", "error", *(extra or [])]
    if "://" in str(target):
        # A live stream: probe one second, and give up on a server that stops sending.
        cmd += ["-analyzeduration", "1000000", "-rw_timeout", str(int(timeout_s * 500_000))]
    cmd += ["-show_streams", "-show_format", "-of", "json", str(target)]
    out = subprocess.run(cmd, check=True, capture_output=True, timeout=timeout_s, text=True)
    return json.loads(out.stdout)


class RtmpServer:
    """nginx with ngx_rtmp_module: application ``live`` (relay only) and ``rec`` (records every stream)."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.record_dir = workdir / "rec"
        self.proc: subprocess.Popen | None = None

    def url(self, name: str, app: str = "live") -> str:
        return f"rtmp://127.0.0.1:{self.port}/{app}/{name}"

    def _write_conf(self) -> Path:
        self.record_dir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "nginx.conf"
        conf.write_text(
            f"load_module {RTMP_MODULE};\n"
            "daemon off;\nmaster_process off;\nworker_processes 1;\n"
            f"pid {self.workdir / 'nginx.pid'};\n"
            f"error_log {self.workdir / 'error.log'} info;\n"
            "events { worker_connections 64; }\n"
            "rtmp {\n"
            "  server {\n"
            f"    listen 127.0.0.1:{self.port};\n"
            "    chunk_size 4096;\n"
            "    application live { live on; record off; }\n"
            "    application rec {\n"
            "      live on; record all; record_unique off;\n"
            f"      record_path {self.record_dir};\n"
            "    }\n"
            "  }\n"
            "}\n"
        )
        return conf

    def start(self, timeout_s: float = 15.0) -> RtmpServer:
        conf = self._write_conf()
        cmd = ["nginx", "-p", str(self.workdir), "-c", str(conf), "-e", str(self.workdir / "error.log")]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(self.port, timeout_s=timeout_s)
        except TimeoutError:
            self.stop()
            log = (self.workdir / "error.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"nginx-rtmp did not start on {self.port}: {log}") from None
        return self

    def stop(self) -> None:
        _terminate(self.proc)
        self.proc = None


class RtspServer:
    """gst-rtsp-server (Debian's python3-gi) serving a looping H.264 mp4 at rtsp://127.0.0.1:PORT/cam."""

    def __init__(self, clip: Path, workdir: Path, port: int | None = None) -> None:
        self.clip = clip
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self, timeout_s: float = 15.0) -> RtspServer:
        log = open(self.workdir / f"rtsp-{self.port}.log", "ab")  # noqa: SIM115 - the child owns it
        try:
            self.proc = subprocess.Popen(
                [str(SYSTEM_PYTHON), str(GST_SCRIPT), str(self.port), str(self.clip)], stdout=log, stderr=log
            )
        finally:
            log.close()
        try:
            wait_for_port(self.port, timeout_s=timeout_s)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"gst-rtsp-server did not start on {self.port}") from None
        return self

    def stop(self) -> None:
        _terminate(self.proc)
        self.proc = None


class RtmpPublisher:
    """``ffmpeg -re -stream_loop -1 -i FILE -c copy -f flv URL``: a camera publishing into the RTMP server."""

    def __init__(self, clip: Path, url: str) -> None:
        self.clip = clip
        self.url = url
        self.proc: subprocess.Popen | None = None

    def start(self) -> RtmpPublisher:
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1"]
        cmd += ["-i", str(self.clip), "-c", "copy", "-f", "flv", self.url]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def stop(self) -> None:
        _terminate(self.proc)
        self.proc = None


def wait_until(predicate: Callable[[], object], timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll ``predicate`` until true or the time is up; returns its last value (time-bound waits)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


def _need(binary: str | Path) -> None:
    if not shutil.which(str(binary)) and not Path(binary).exists():
        pytest.skip(f"{binary} is not installed (scripts/setup.sh installs it)")


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory file sources are allowed to come from in the media tests."""
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def sample_clip(media_dir: Path) -> Path:
    """A 4 s, 1280x720, 25 fps H.264 mp4 inside ``media_dir``."""
    _need("ffmpeg")
    return make_test_clip(media_dir / "sample.mp4", seconds=4.0, fps=25, size=(1280, 720))


@pytest.fixture(scope="session")
def small_clip(media_dir: Path) -> Path:
    """A 3 s, 640x360, 25 fps clip: for tests where the size does not matter (lighter on 2 cores)."""
    _need("ffmpeg")
    return make_test_clip(media_dir / "small.mp4", seconds=3.0, fps=25, size=(640, 360))


@pytest.fixture
def rtmp_server(tmp_path: Path) -> Iterator[RtmpServer]:
    """A running nginx-rtmp on a free port (the test may stop and start it again)."""
    _need("nginx")
    if not RTMP_MODULE.exists():
        pytest.skip("ngx_rtmp_module is not installed (libnginx-mod-rtmp)")
    server = RtmpServer(tmp_path / "nginx")
    server.workdir.mkdir()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def rtsp_server(tmp_path: Path, small_clip: Path) -> Iterator[RtspServer]:
    """A running gst-rtsp-server looping ``small_clip`` (the test may stop and start it again)."""
    if not SYSTEM_PYTHON.exists():
        pytest.skip("/usr/bin/python3 with python3-gi and gir1.2-gst-rtsp-server-1.0 is needed")
    server = RtspServer(small_clip, tmp_path)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def rtmp_publisher() -> Iterator[list[RtmpPublisher]]:
    """Start publishers with ``rtmp_publisher.append(RtmpPublisher(clip, url).start())``; all stopped after."""
    started: list[RtmpPublisher] = []
    try:
        yield started
    finally:
        for publisher in started:
            publisher.stop()
