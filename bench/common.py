"""Helpers shared by the whole-pipeline benchmarks: clips, a local Ray head, Prometheus scrapes, CPU use.

Kept free of the pipeline's own modules where it can be, so bench_peer (which runs in a reference
venv with ultralytics, without trtseg's runtime) can import it too.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "BENCHMARKS.md"
CLIP_SIZE = (1280, 720)
CLIP_FPS = 25
REALTIME_DROP_LIMIT = 0.01  # the real-time criteria of the issue: drops below 1 % ...
REALTIME_P99_LIMIT_MS = 200.0  # ... and p99 capture-to-push latency below 200 ms


def camera_counts(text: str) -> list[int]:
    """``--steps``: rising camera counts such as 8,16,32."""
    import argparse

    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"steps must be camera counts like 8,16,32, got '{text}'") from None
    if not counts or min(counts) < 1 or counts != sorted(counts):
        raise argparse.ArgumentTypeError(f"steps must be rising counts of at least 1, got '{text}'")
    return counts


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now (never Redis' 6379)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def machine_info() -> dict[str, Any]:
    """What the figures were measured on, including how busy the machine was when the run began."""
    load = os.getloadavg()
    return {
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_avg_1_5_15": [round(x, 2) for x in load],
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }


def make_clips(directory: Path, count: int, seconds: float, size: tuple[int, int] = CLIP_SIZE) -> list[Path]:
    """``count`` sample clips with different seeds (rendered once, then reused from ``directory``)."""
    from datasets.video import render_sample_video

    directory.mkdir(parents=True, exist_ok=True)
    clips = []
    for seed in range(count):
        path = directory / f"clip-{size[0]}x{size[1]}-{CLIP_FPS}-{seconds:g}s-seed{seed}.mp4"
        if not path.is_file() or path.stat().st_size == 0:
            started = time.monotonic()
            render_sample_video(path, seconds=seconds, fps=CLIP_FPS, size=size, seed=seed)
            logger.info("clip rendered path=%s seconds=%.1f", path, time.monotonic() - started)
        clips.append(path)
    return clips


# ----------------------------------------------------------------------------- Prometheus
_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(port: int, timeout_s: float = 5.0) -> str:
    """The Prometheus text of the local Ray node's metrics agent."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as answer:
        return answer.read().decode("utf-8", "replace")


def histogram(text: str, name: str, label: str) -> dict[str, dict[float, float]]:
    """Cumulative bucket counts of histogram ``name`` per value of ``label``, summed over workers."""
    out: dict[str, dict[float, float]] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match or match.group(1) != f"{name}_bucket":
            continue
        labels = dict(_LABEL.findall(match.group(2) or ""))
        key, le = labels.get(label), labels.get("le")
        if key is None or le is None:
            continue
        bound = math.inf if le == "+Inf" else float(le)
        buckets = out.setdefault(key, {})
        buckets[bound] = buckets.get(bound, 0.0) + float(match.group(3))
    return out


def bucket_delta(after: dict[float, float], before: dict[float, float] | None) -> dict[float, float]:
    """Counts observed between two scrapes."""
    before = before or {}
    return {bound: count - before.get(bound, 0.0) for bound, count in after.items()}


def bucket_quantile(buckets: dict[float, float], q: float) -> float | None:
    """Prometheus-style quantile: linear inside the bucket holding it; None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite boundary: report that boundary
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = bound, count
    return lower


def share_above(buckets: dict[float, float], limit: float) -> float | None:
    """Exact share of observations above ``limit`` when ``limit`` is a bucket boundary."""
    total = buckets.get(math.inf, 0.0)
    if total <= 0 or limit not in buckets:
        return None
    return 1.0 - buckets[limit] / total


def percentile(values: Sequence[float], q: float) -> float | None:
    """Exact percentile (nearest rank, interpolated) of raw samples."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# ----------------------------------------------------------------------------- CPU use
@dataclass
class CpuMeter:
    """CPU seconds of a set of processes (and their children) between ``start`` and ``stop``."""

    pids: dict[str, list[int]] = field(default_factory=dict)  # role -> pids
    _begin: dict[int, float] = field(default_factory=dict)
    _end: dict[int, float] = field(default_factory=dict)
    _t0: float = 0.0
    _t1: float = 0.0

    @staticmethod
    def _cpu(pid: int) -> float | None:
        import psutil

        try:
            times = psutil.Process(pid).cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        return float(times.user + times.system)

    def _all(self) -> Iterable[int]:
        for pids in self.pids.values():
            yield from pids

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._begin = {pid: cpu for pid in self._all() if (cpu := self._cpu(pid)) is not None}

    def stop(self) -> None:
        self._t1 = time.monotonic()
        self._end = {pid: cpu for pid in self._all() if (cpu := self._cpu(pid)) is not None}

    def cores(self, role: str) -> float | None:
        """Average cores used by the role's processes over the window (None: none measurable)."""
        wall = self._t1 - self._t0
        used = [self._end[p] - self._begin[p] for p in self.pids.get(role, []) if p in self._begin and p in self._end]
        if wall <= 0 or not used:
            return None
        return sum(used) / wall


def children_named(pid: int, needle: str) -> list[int]:
    """PIDs of ``pid``'s descendants whose command line contains ``needle``."""
    import psutil

    try:
        found = []
        for child in psutil.Process(pid).children(recursive=True):
            try:
                if needle in " ".join(child.cmdline()):
                    found.append(child.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return found
    except psutil.NoSuchProcess:
        return []


def machine_cpu_percent(seconds_window: tuple[Any, Any]) -> float:
    """Whole-machine CPU busy share (0..1) between two ``psutil.cpu_times()`` snapshots."""
    before, after = seconds_window
    busy = (after.user + after.system + after.nice) - (before.user + before.system + before.nice)
    total = sum(after) - sum(before)
    return busy / total if total > 0 else 0.0


# ----------------------------------------------------------------------------- output
def fmt(value: Any, digits: int = 1) -> str:
    """A table cell: numbers rounded, missing values as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def write_doc_section(marker: str, body: str, doc: Path = DOC) -> None:
    """Replace (or append) the section between ``<!-- marker:start -->`` and ``<!-- marker:end -->``."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    text = doc.read_text(encoding="utf-8") if doc.is_file() else "# Benchmarks\n"
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(text, encoding="utf-8")


def run_quiet(cmd: Sequence[str], timeout_s: float = 30.0) -> str:
    """Output of a short helper command (versions), empty when it fails."""
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout_s).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def plot_steps(reports: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    """Frames pushed per second and latency against cameras, one line per report (matplotlib: bench only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    most = 1
    for index, (label, report) in enumerate(reports.items()):
        steps, color = report["steps"], f"C{index}"
        cams = [s["cameras"] for s in steps]
        most = max([most, *cams])
        left.plot(cams, [s["frames_out_per_s"] for s in steps], "o-", color=color, label=f"{label}: pushed/s")
        left.plot(cams, [s["inference_fps_total"] for s in steps], "s--", color=color, label=f"{label}: inferred/s")
        right.plot(cams, [s["p50_ms_mean"] for s in steps], "o-", color=color, label=f"{label}: p50")
        right.plot(cams, [s["p99_ms_worst"] for s in steps], "s--", color=color, label=f"{label}: worst p99")
    left.plot([1, most], [CLIP_FPS, CLIP_FPS * most], ":", color="grey", label="real time (25/s per camera)")
    # The first report's criterion (--p99-limit-ms), the default for reports without one.
    limit = float(next(iter(reports.values()), {}).get("criteria", {}).get("p99_ms_below", REALTIME_P99_LIMIT_MS))
    right.axhline(limit, color="red", linestyle=":", label=f"{limit:g} ms")
    for axis, ylabel in ((left, "frames per second"), (right, "capture-to-push latency, ms")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("cameras")
        axis.set_ylabel(ylabel)
        axis.legend(fontsize=7, loc="best")
    right.set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def key_values(items: Sequence[str] | None, option: str) -> dict[str, Any]:
    """``KEY=VALUE`` overrides from the command line, each value read as YAML (numbers, booleans,
    lists), as a configuration file would give it."""
    import yaml

    values: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"{option} takes KEY=VALUE, got '{item}'")
        values[key.strip()] = yaml.safe_load(value)
    return values


def delta(after: dict[str, Any], before: dict[str, Any], key: str) -> float:
    """How much a cumulative figure grew between two readings (a missing one counts as 0)."""
    return float(after.get(key, 0) or 0) - float(before.get(key, 0) or 0)


def batch_window(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """A segmenter's batches between two readings of its cumulative batching figures."""
    batches = delta(after, before, "batches")
    busy_ms = float(after.get("mean_batch_ms", 0)) * float(after.get("batches", 0)) - float(
        before.get("mean_batch_ms", 0)
    ) * float(before.get("batches", 0))
    return {
        "batches": batches,
        "mean_batch_size": round(delta(after, before, "items") / batches, 2) if batches else 0.0,
        "mean_batch_ms": round(busy_ms / batches, 2) if batches else 0.0,
    }


def stage_window(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """The engine's own milliseconds per batch between two readings (pre, network, post), to set
    beside the batch's time in the segmenter: the difference is the segmenter's host side."""
    batches = delta(after, before, "batches")
    if not batches:
        return {}
    stages = ("pre_ms", "infer_ms", "post_ms")
    return {f"{stage}_per_batch": round(delta(after, before, stage) / batches, 2) for stage in stages}
