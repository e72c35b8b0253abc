"""The command line as a user meets it: clear messages, exit codes, no tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "run_cluster.py"), *args], capture_output=True, text=True, timeout=60
    )


def test_check_config_on_shipped_files() -> None:
    for name in ("demo.yaml", "production.example.yaml"):
        result = cli("check-config", "--config", str(ROOT / "conf" / name))
        assert result.returncode == 0, result.stderr
        assert "valid" in result.stdout
    production = cli("check-config", "--config", str(ROOT / "conf" / "production.example.yaml"))
    assert "change-me" not in production.stdout, "secrets are never printed"
    assert "trtseg:***@db.internal" in production.stdout


def test_bad_config_is_one_message_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("engine:\n  backend: onnxruntime\n  batch_size: -3\ncameras:\n  - {id: x, source: 'ftp://a/b'}\n")
    result = cli("check-config", "--config", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "engine.batch_size" in result.stderr
    assert "cameras.0.source" in result.stderr


def test_run_refuses_a_missing_model_clearly(tmp_path: Path) -> None:
    conf = tmp_path / "c.yaml"
    conf.write_text(f"engine:\n  model: {tmp_path / 'nope.onnx'}\n")
    result = cli("run", "--config", str(conf))
    assert result.returncode == 2
    assert "model file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_the_subcommands() -> None:
    result = cli("--help")
    for command in ("run", "check-config", "build-engine", "calibrate", "accuracy", "bench"):
        assert command in result.stdout


def test_calibrate_and_build_engine_fail_clearly(tmp_path: Path) -> None:
    missing = cli("calibrate", "--model", str(tmp_path / "no.onnx"), "--source", "x.mp4", "--out", "y.onnx")
    assert missing.returncode == 2
    assert "model file not found" in missing.stderr
    assert "Traceback" not in missing.stderr
    conf = tmp_path / "c.yaml"
    conf.write_text("engine:\n  backend: tensorrt\n  device: cuda\n")
    build = cli("build-engine", "--config", str(conf))
    assert build.returncode == 2
    assert "Traceback" not in build.stderr
    assert "error:" in build.stderr


@pytest.mark.slow
@pytest.mark.ray
def test_run_serves_the_api_and_shuts_down_in_order(tmp_path: Path) -> None:
    """`run` as a user starts it: a local Ray instance, a camera, the API; Ctrl-C stops it in order."""
    import json
    import signal
    import time
    import urllib.request

    from tests.services.ports import free_port
    from tests.services.streaming import make_test_clip

    clip = make_test_clip(tmp_path / "videos" / "clip.mp4", seconds=2.0, fps=10, size=(320, 240))
    api_port, dashboard_port = free_port(), free_port()
    conf = tmp_path / "run.yaml"
    conf.write_text(
        f"cluster: {{num_cpus: 2, dashboard_port: {dashboard_port}, namespace: trtseg-cli-test}}\n"
        "engine: {batch_size: 2, intra_op_threads: 1}\n"
        f"cameras:\n  - {{id: cli-cam, source: '{clip}', loop: true, inference_fps: 2, push: hls}}\n"
        f"pusher: {{hls_dir: '{tmp_path / 'hls'}', preset: ultrafast, threads: 1}}\n"
        f"sink: {{database_url: 'sqlite:///{tmp_path / 'events.db'}', keyframe_dir: '{tmp_path / 'kf'}', "
        f"spool_dir: '{tmp_path / 'spool'}'}}\n"
        f"api: {{port: {api_port}, file_source_dir: '{tmp_path / 'videos'}'}}\n"
    )
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "run_cluster.py"), "run", "--config", str(conf)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 240
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/ready", timeout=5) as answer:
                    ready = json.loads(answer.read())
                if ready.get("ready"):
                    break
            except OSError:
                pass
            time.sleep(2)
        assert ready and ready["ready"], (ready, log.read_text()[-3000:])
        assert "camera:cli-cam" in ready["components"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    text = log.read_text()
    assert "system stopped" in text, text[-3000:]
    assert "no trtseg controller to stop" not in text
