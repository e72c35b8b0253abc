"""The tracking peer seen from the benchmark: the Ultralytics worker process and its output read back.

``bench/peer_track_worker.py`` runs in the reference venv (ultralytics and torch); sequences go to it
through a pipe (a JSON header, then raw BGR frames) and its tracks come back as JSON lines in files.
"""

from __future__ import annotations

import base64
import json
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT
from bench.tracking_metrics import FrameTracks

DEFAULT_REF_PYTHON = ROOT / ".venv-ref" / "bin" / "python"
WORKER = Path(__file__).resolve().parent / "peer_track_worker.py"


class Peer:
    """The Ultralytics worker process: sequences in through a pipe, tracks back through files."""

    def __init__(self, python: str, model: str, workdir: Path) -> None:
        if not Path(python).exists():
            raise SystemExit(
                f"no reference Python at {python}: make the venv (docs/BENCHMARKS.md: python3 -m venv .venv-ref && "
                ".venv-ref/bin/pip install torch torchvision ultralytics onnx onnxruntime lap), pass --ref-python, "
                "or --no-peer"
            )
        self.workdir = workdir
        self.proc = subprocess.Popen(
            [python, str(WORKER), model], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=False
        )
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self._writer = threading.Thread(target=self._write, daemon=True)
        self._writer.start()

    def _write(self) -> None:
        assert self.proc.stdin is not None
        while (chunk := self._queue.get()) is not None:
            self.proc.stdin.write(chunk)
            self.proc.stdin.flush()

    def start(self, name: str, size: tuple[int, int], frames: int, settings: dict[str, Any]) -> Path:
        out = self.workdir / f"{name}.jsonl"
        header = {"name": name, "width": size[0], "height": size[1], "frames": frames, "out": str(out), **settings}
        self._queue.put((json.dumps(header) + "\n").encode())
        return out

    def send(self, image: np.ndarray) -> None:
        self._queue.put(np.ascontiguousarray(image).tobytes())

    def wait(self, name: str, timeout_s: float = 900.0) -> float:
        """Block until the worker finished ``name``; its seconds of tracking."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode(errors="replace").strip()
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"peer worker exited with {self.proc.returncode}")
            if line.startswith(f"done {name} "):
                return float(line.split()[-1])
        raise RuntimeError(f"peer worker did not finish {name} in {timeout_s:.0f} s")

    def close(self) -> None:
        self._queue.put(b"\n")
        self._queue.put(None)
        self._writer.join(timeout=10)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def read_peer(path: Path) -> list[FrameTracks]:
    """The worker's JSON lines as FrameTracks (mask crops unpacked)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        masks = []
        for x0, y0, w, h, bits in rec["masks"]:
            flat = np.unpackbits(np.frombuffer(base64.b64decode(bits), np.uint8))[: w * h]
            masks.append((int(x0), int(y0), flat.reshape(h, w).astype(bool)))
        n = len(rec["ids"])
        out.append(
            FrameTracks(
                np.asarray(rec["ids"], np.int64),
                np.asarray(rec["cls"], np.int64),
                np.asarray(rec["boxes"], np.float64).reshape(n, 4),
                masks if len(masks) == n else None,
            )
        )
    return out
