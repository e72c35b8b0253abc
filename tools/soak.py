#!/usr/bin/env python3
"""Soak test: N cameras on the real system for a while, watching for leaks.

Starts a local Ray cluster (loopback, free GCS port), the whole pipeline (``actors.launch``) on the
CPU backend with generated clips, and samples every few seconds: resident memory (less the shared
memory of the cameras' frame rings, reported apart as ``shm_mb``) and open file descriptors of every
actor process and FFmpeg encoder, GPU memory where ``nvidia-smi`` exists, and
the components' queue depths and backlogs from ``Controller.health()``. At the end it fits the
growth after warm-up and fails when it is beyond the bounds (RSS growth, fd growth, FFmpeg count,
a sink backlog that never drains, a pipeline that stopped moving).

    .venv/bin/python tools/soak.py --cameras 2 --duration 600 --warmup 120 --out var/soak.json

The functions here (cluster, configuration, sampling, event reconciliation) are reused by
tools/chaos.py and tools/load.py and by the short CI versions in tests/reliability/.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.services.ports import free_port  # noqa: E402
from tests.services.ray_cluster import OBJECT_STORE_BYTES, _keep_loopback  # noqa: E402
from trtseg.config import SystemConfig, parse_config  # noqa: E402

logger = logging.getLogger("trtseg.soak")

MODEL = ROOT / "models" / "trtseg-cable-n.onnx"
ACTOR_CLASSES = ("Controller", "SegmenterActor", "DecoderActor", "PusherActor", "SinkActor")
EVENT_OPENED = re.compile(r"event opened camera=(\S+) class=(\S+) event_id=([A-Za-z0-9_-]+)")


# ---------------------------------------------------------------------------------------- cluster
@dataclass
class LocalCluster:
    """A Ray cluster of processes this tool started (``ray.cluster_utils.Cluster``), driver connected.

    Worker logs are kept at INFO (``ray.LoggingConfig``) so the trackers' "event opened" lines can
    be collected for reconciliation; ``log_dirs`` remembers the directories of removed nodes too.
    """

    cluster: Any
    nodes: dict[str, Any] = field(default_factory=dict)
    log_dirs: set[Path] = field(default_factory=set)

    def add_node(self, name: str, num_cpus: int = 2) -> str:
        node = self.cluster.add_node(
            num_cpus=num_cpus,
            node_ip_address="127.0.0.1",
            object_store_memory=OBJECT_STORE_BYTES,
            include_dashboard=False,
        )
        self.nodes[name] = node
        self.log_dirs.add(Path(node.get_logs_dir_path()))
        return str(node.node_id)

    def remove_node(self, name: str) -> None:
        """Kill a worker node's processes at once, as a lost machine."""
        self.cluster.remove_node(self.nodes.pop(name), allow_graceful=False)

    def raylet_pids(self) -> list[int]:
        from ray._private import ray_constants

        pids = []
        for node in self.nodes.values():
            for info in node.all_processes.get(ray_constants.PROCESS_TYPE_RAYLET, []):
                pids.append(int(info.process.pid))
        return pids

    def shutdown(self) -> None:
        import ray

        try:
            ray.shutdown()
        finally:
            self.cluster.shutdown()


def start_cluster(head_cpus: int = 4, log_level: str = "INFO") -> LocalCluster:
    """A one-node cluster on loopback with a free GCS port (Redis holds 6379 on many machines)."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    _keep_loopback()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": head_cpus,
            "node_ip_address": "127.0.0.1",
            "gcs_server_port": free_port(),
            "include_dashboard": False,
            "object_store_memory": OBJECT_STORE_BYTES,
            "env_vars": {"RAY_USAGE_STATS_ENABLED": "0"},
        },
    )
    ray.init(
        address=cluster.address,
        log_to_driver=False,
        logging_config=ray.LoggingConfig(encoding="TEXT", log_level=log_level),
    )
    local = LocalCluster(cluster=cluster, nodes={"head": cluster.head_node})
    local.log_dirs.add(Path(cluster.head_node.get_logs_dir_path()))
    logger.info("ray cluster started address=%s", cluster.address)
    return local


# ---------------------------------------------------------------------------------- configuration
def make_clip(path: Path, seconds: float = 8.0, size: tuple[int, int] = (480, 272), fps: int = 10) -> Path:
    """The synthetic site scene (cable, walker, e-bike), so the model finds things and events happen."""
    from datasets.video import render_sample_video

    if not path.is_file():
        render_sample_video(path, seconds=seconds, fps=fps, size=size, seed=0, preset="ultrafast")
    return path


def camera_entry(camera_id: str, source: str, inference_fps: float = 4.0, **extra: Any) -> dict[str, Any]:
    """A camera whose events open and close quickly (more events per minute to account for)."""
    return {
        "id": camera_id,
        "source": source,
        "loop": True,
        "inference_fps": inference_fps,
        "push": "hls",
        "open_timeout_s": 5.0,
        "reconnect_backoff_s": 0.2,
        "reconnect_backoff_max_s": 2.0,
        "events": {"window": 4, "min_hits": 2, "close_after_s": 1.0, "min_confidence": 0.3},
        **extra,
    }


def build_config(
    workdir: Path,
    media_dir: Path,
    namespace: str,
    cameras: list[dict[str, Any]],
    database_url: str | None = None,
    **sections: dict[str, Any],
) -> SystemConfig:
    """A light configuration: CPU ONNX Runtime, one thread, HLS, SQLite (or ``database_url``) in ``workdir``."""
    data: dict[str, Any] = {
        "cluster": {"namespace": namespace, "watchdog_interval_s": 1.0, "cpu_segmenters": 1},
        "engine": {
            "model": str(MODEL),
            "backend": "onnxruntime",
            "device": "cpu",
            "batch_size": 4,
            "max_wait_ms": 10,
            "intra_op_threads": 1,
            "warmup_frame": [272, 480],  # the clips' size (make_clip): memory at its plateau before frames come
        },
        "pusher": {
            "hls_dir": str(workdir / "hls"),
            "preset": "ultrafast",
            "threads": 1,
            "hls_segment_s": 1.0,
            "gop_s": 1.0,
            "bitrate_kbps": 300,
        },
        "sink": {
            "database_url": database_url or f"sqlite:///{workdir / 'events.db'}",
            "keyframe_dir": str(workdir / "keyframes"),
            "spool_dir": str(workdir / "spool"),
            "flush_interval_s": 0.5,
            "retry_max_s": 2.0,
        },
        "api": {"file_source_dir": str(media_dir)},
        "cameras": cameras,
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return parse_config(data, "reliability")


# --------------------------------------------------------------------------------------- sampling
def _shared_memory_mb(pid: int) -> float:
    """Resident shared-memory pages (``RssShmem``): the cameras' frame rings, mapped by three processes.

    A reader's share grows as it first touches each slot (a segmenter that infers every eighth frame
    takes minutes), up to the rings' fixed size: growth that is no leak, so it is kept out of RSS.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("RssShmem:"):
                    return float(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _proc_figures(proc: psutil.Process) -> dict[str, float] | None:
    try:
        with proc.oneshot():
            shm_mb = _shared_memory_mb(proc.pid)
            return {
                "rss_mb": proc.memory_info().rss / 2**20 - shm_mb,
                "shm_mb": shm_mb,
                "fds": float(proc.num_fds()),
                "threads": proc.num_threads(),
            }
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _actor_class(proc: psutil.Process) -> str | None:
    try:
        title = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    found = re.match(r"ray::(\w+)", title)
    return found.group(1) if found and found.group(1) in ACTOR_CLASSES else None


def _camera_pids(controller: Any) -> dict[int, str]:
    """pid -> 'decoder:cam' / 'pusher:cam' from the actors' own pings."""
    import ray

    names: dict[int, str] = {}
    for camera in ray.get(controller.list_cameras.remote(), timeout=30):
        try:
            handles = ray.get(controller.camera_actors.remote(camera["id"]), timeout=10)
        except Exception:
            continue
        for role, handle in handles.items():
            if handle is None or role == "segmenter":  # shared by cameras: sampled as SegmenterActor
                continue
            try:
                names[int(ray.get(handle.ping.remote(), timeout=10)["pid"])] = f"{role}:{camera['id']}"
            except Exception as error:
                logger.debug("ping failed role=%s camera=%s error=%s", role, camera["id"], error)
    return names


def _gpu_memory_mb() -> float | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return float(sum(float(line) for line in out.stdout.split()))
    except (subprocess.SubprocessError, ValueError):
        return None


def sample(cluster: LocalCluster, controller: Any) -> dict[str, Any]:
    """One sample: per-process memory and fds, FFmpeg children, the components' queues and counters."""
    import ray

    named = _camera_pids(controller)
    processes: dict[str, dict[str, float]] = {}
    ffmpeg: dict[str, dict[str, float]] = {}
    for raylet in cluster.raylet_pids():
        try:
            children = psutil.Process(raylet).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for proc in children:
            kind = _actor_class(proc)
            if kind is None:
                continue
            figures = _proc_figures(proc)
            if figures is None:
                continue
            key = named.get(proc.pid) or f"{kind}:{proc.pid}"
            processes[key] = {**figures, "pid": proc.pid}
            for child in proc.children(recursive=True):
                child_figures = _proc_figures(child)
                if child_figures is not None and "ffmpeg" in child.name():
                    entry = ffmpeg.setdefault(key, {"rss_mb": 0.0, "fds": 0.0, "count": 0.0})
                    entry["rss_mb"] += child_figures["rss_mb"]
                    entry["fds"] += child_figures["fds"]
                    entry["count"] += 1
    health = ray.get(controller.health.remote(), timeout=30)
    queues: dict[str, Any] = {}
    for name, component in health["components"].items():
        if name.startswith("camera:"):
            stats = component.get("stats", {})
            decoder, output = stats.get("decoder", {}), stats.get("output", {})
            queues[name] = {
                "state": component.get("state"),
                "frames_in": decoder.get("frames", 0),
                "drops": decoder.get("drops", 0),
                "in_flight": decoder.get("in_flight", 0),
                "frames_out": output.get("frames", 0),
                "push_queue": (output.get("push") or {}).get("queued", 0),
                "latency_ms_last": output.get("latency_ms_last", 0.0),
            }
        elif name == "sink":
            queues[name] = {k: component.get(k) for k in ("backlog", "written", "submitted", "rejected", "db_up")}
        elif name.startswith("segmenter:"):
            queues[name] = {"batching": component.get("batching", {})}
    return {
        "t": time.time(),
        "processes": processes,
        "ffmpeg": ffmpeg,
        "queues": queues,
        "gpu_mb": _gpu_memory_mb(),
        "ready": health.get("ready"),
    }


# --------------------------------------------------------------------------------------- analysis
@dataclass
class Bounds:
    """What counts as a leak: stated in the report next to the measured figures."""

    rss_growth: float = 0.05  # relative, last quarter vs first quarter after warm-up
    rss_slack_mb: float = 4.0  # absolute growth always tolerated (allocator noise of small processes)
    fd_growth: int = 4  # extra descriptors tolerated between the first and last quarter
    max_sink_backlog: int = 50  # at the end, the sink must have written (almost) everything


def _series(samples: list[dict[str, Any]], section: str, key: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    points = [(s["t"], s[section][key][metric]) for s in samples if key in s[section]]
    if not points:
        return np.zeros(0), np.zeros(0)
    t, v = zip(*points, strict=True)
    return np.asarray(t, float), np.asarray(v, float)


def _growth(t: np.ndarray, v: np.ndarray) -> dict[str, float]:
    quarter = max(1, len(v) // 4)
    first, last = float(np.mean(v[:quarter])), float(np.mean(v[-quarter:]))
    slope = float(np.polyfit(t - t[0], v, 1)[0]) if len(v) >= 3 and np.ptp(t) > 0 else 0.0
    return {
        "first": round(first, 2),
        "last": round(last, 2),
        "max": round(float(v.max()), 2),
        "growth": round((last - first) / first, 4) if first else 0.0,
        "slope_per_h": round(slope * 3600, 2),
    }


def analyse(samples: list[dict[str, Any]], warmup_s: float, bounds: Bounds) -> dict[str, Any]:
    """Growth of every process after warm-up, against ``bounds``; ``failures`` lists what broke them."""
    if not samples:
        return {"ok": False, "failures": ["no samples"], "processes": {}}
    start = samples[0]["t"] + warmup_s
    steady = [s for s in samples if s["t"] >= start]
    failures: list[str] = []
    if len(steady) < 4:
        return {"ok": False, "failures": [f"only {len(steady)} samples after warm-up"], "processes": {}}
    report: dict[str, Any] = {"processes": {}, "ffmpeg": {}, "samples": len(samples), "steady_samples": len(steady)}
    for section in ("processes", "ffmpeg"):
        keys = sorted({k for s in steady for k in s[section]})
        for key in keys:
            t, rss = _series(steady, section, key, "rss_mb")
            _, fds = _series(steady, section, key, "fds")
            if len(rss) < 4:
                continue
            entry = {"rss_mb": _growth(t, rss), "fds": _growth(t, fds)}
            if section == "ffmpeg":
                _, count = _series(steady, section, key, "count")
                entry["count_max"] = float(count.max())
                if count.max() > 1:
                    failures.append(f"{key}: {int(count.max())} FFmpeg processes at once (leaked encoders)")
            report[section][key] = entry
            rss_fig = entry["rss_mb"]
            allowed = max(bounds.rss_growth * rss_fig["first"], bounds.rss_slack_mb)
            if rss_fig["last"] - rss_fig["first"] > allowed:
                failures.append(
                    f"{section}/{key}: RSS {rss_fig['first']} -> {rss_fig['last']} MB "
                    f"(+{100 * rss_fig['growth']:.1f}%, bound {100 * bounds.rss_growth:.0f}%"
                    f" or {bounds.rss_slack_mb} MB)"
                )
            quarter = max(1, len(fds) // 4)
            if float(fds[-quarter:].max() - fds[:quarter].max()) > bounds.fd_growth:
                failures.append(
                    f"{section}/{key}: open files {int(fds[:quarter].max())} -> {int(fds[-quarter:].max())}"
                )
    first, last = steady[0]["queues"], steady[-1]["queues"]
    moved = {
        k: last[k]["frames_out"] - first[k].get("frames_out", 0) for k in last if k.startswith("camera:") and k in first
    }
    report["frames_out_steady"] = moved
    for key, count in moved.items():
        if count <= 0:
            failures.append(f"{key}: no frames pushed after warm-up (pipeline stalled)")
    drops = {k: (last[k]["drops"], last[k]["frames_in"]) for k in last if k.startswith("camera:")}
    report["drop_rate"] = {k: round(d / f, 4) if f else None for k, (d, f) in drops.items()}
    report["sink"] = last.get("sink", {})
    report["gpu_mb"] = _growth(*_gpu_series(steady)) if steady[0]["gpu_mb"] is not None else None
    report["failures"], report["ok"] = failures, not failures
    return report


def _gpu_series(samples: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray([s["t"] for s in samples], float), np.asarray([s["gpu_mb"] or 0.0 for s in samples], float)


# ----------------------------------------------------------------------------- event accounting
def opened_event_ids(log_dirs: set[Path]) -> dict[str, tuple[str, str]]:
    """event_id -> (camera, class) of every "event opened" line the trackers wrote to the worker logs."""
    found: dict[str, tuple[str, str]] = {}
    for directory in log_dirs:
        for path in directory.glob("worker-*"):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            for match in EVENT_OPENED.finditer(text):
                found[match.group(3)] = (match.group(1), match.group(2))
    return found


def reconcile(database_url: str, opened: dict[str, tuple[str, str]], spool_dir: Path | None = None) -> dict[str, Any]:
    """Every opened event in the database exactly once; nothing rejected; nothing in the database we did not open."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT event_id, COUNT(*) FROM events GROUP BY event_id")).all()
            left_open = int(conn.execute(text("SELECT COUNT(*) FROM events WHERE status = 'open'")).scalar() or 0)
    finally:
        engine.dispose()
    stored = {str(r[0]): int(r[1]) for r in rows}
    missing = sorted(set(opened) - set(stored))
    duplicated = sorted(k for k, n in stored.items() if n != 1)
    unknown = sorted(set(stored) - set(opened))
    rejected = 0
    if spool_dir is not None and (spool_dir / "rejected.jsonl").is_file():
        rejected = sum(1 for _ in (spool_dir / "rejected.jsonl").open())
    return {
        "opened": len(opened),
        "stored": len(stored),
        "missing": missing,
        "duplicated": duplicated,
        "unknown": unknown,
        "rejected": rejected,
        "left_open": left_open,  # opened by a tracker that crashed: stored, but never closed
        "ok": bool(opened) and not missing and not duplicated and not unknown and rejected == 0,
    }


# ------------------------------------------------------------------------------------------- run
def run_soak(
    workdir: Path,
    cameras: int = 2,
    duration_s: float = 90.0,
    warmup_s: float = 30.0,
    interval_s: float = 3.0,
    inference_fps: float = 4.0,
    bounds: Bounds | None = None,
) -> dict[str, Any]:
    """Run the soak and return its report (``ok``, ``failures``, per-process growth, queues, events)."""
    from actors.launch import start_system, stop_system

    bounds = bounds or Bounds()
    media = workdir / "media"
    clip = make_clip(media / "scene.mp4")
    namespace = f"trtseg-soak-{os.getpid()}"
    entries = [camera_entry(f"soak{i}", str(clip), inference_fps) for i in range(cameras)]
    config = build_config(workdir, media, namespace, entries)
    cluster = start_cluster()
    samples: list[dict[str, Any]] = []
    try:
        controller = start_system(config, timeout_s=300)
        started = time.monotonic()
        while time.monotonic() - started < duration_s:
            tick = time.monotonic()
            try:
                samples.append(sample(cluster, controller))
            except Exception as error:  # a slow answer under load is not a leak; note it and go on
                logger.warning("sample failed error=%s", error)
            time.sleep(max(0.0, interval_s - (time.monotonic() - tick)))
        stop_system(namespace, timeout_s=120)
        opened = opened_event_ids(cluster.log_dirs)
    finally:
        cluster.shutdown()
    report = analyse(samples, warmup_s, bounds)
    events = reconcile(config.sink.database_url.get_secret_value(), opened, config.sink.spool_dir)
    report.update({"bounds": bounds.__dict__, "cameras": cameras, "duration_s": duration_s, "warmup_s": warmup_s})
    report["events"] = {k: v if not isinstance(v, list) else v[:20] for k, v in events.items()}
    backlog = int((report.get("sink") or {}).get("backlog") or 0)
    if backlog > bounds.max_sink_backlog:
        report["failures"].append(f"sink backlog {backlog} at the end (bound {bounds.max_sink_backlog})")
    if events["missing"] or events["duplicated"] or events["rejected"]:
        report["failures"].append(f"events not stored exactly once: {report['events']}")
    report["ok"] = not report["failures"]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds the system runs")
    parser.add_argument("--warmup", type=float, default=120.0, help="seconds not counted in the growth fit")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--inference-fps", type=float, default=4.0)
    parser.add_argument("--rss-growth", type=float, default=0.05, help="relative RSS growth bound after warm-up")
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "soak")
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.workdir.exists():
        shutil.rmtree(args.workdir / "hls", ignore_errors=True)
        for stale in ("events.db", "spool", "keyframes"):
            target = args.workdir / stale
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    report = run_soak(
        args.workdir,
        args.cameras,
        args.duration,
        args.warmup,
        args.interval,
        args.inference_fps,
        Bounds(rss_growth=args.rss_growth),
    )
    return publish_report(report, args.out, "SOAK")


def publish_report(report: dict[str, Any], out: Path | None, label: str) -> int:
    """Print the JSON report (and write it to ``out``) with a verdict line; the exit status."""
    text = json.dumps(report, indent=2, default=str)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    print(text)
    if "ok" not in report:
        return 0
    print(label, "PASSED" if report["ok"] else "FAILED: " + "; ".join(report["failures"]))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
