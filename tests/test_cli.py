"""The command line as a user meets it: clear messages, exit codes, no tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
