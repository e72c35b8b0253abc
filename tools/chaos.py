#!/usr/bin/env python3
"""Chaos test: kill parts of the running system at seeded random moments; it must recover on its own
and, at the end, every event the trackers opened must be in the database exactly once.

A local two-node Ray cluster (loopback), a private MariaDB, a gst-rtsp-server camera and an
nginx-rtmp push target, a file camera pushing HLS. Faults, in a seeded random order with seeded
gaps: ``decoder`` / ``pusher`` / ``sink`` (``ray.kill`` with restarts allowed), ``segmenter``
(SIGKILL of its worker process: a crash), ``node`` (the worker node removed without grace; a new
one joins after recovery), ``database`` (MariaDB SIGKILLed, restarted after an outage), ``rtsp``
and ``rtmp`` (the source / target server stopped and restarted on the same port). After each
fault the tool waits until every camera is live and its encoder writes frames again, and the sink
has its database back (recovery time per fault). Event ids come from the trackers' "event opened"
log lines in the worker logs, compared with the ``events`` table.

    .venv/bin/python tools/chaos.py --rounds 2 --seed 7 --out var/chaos.json
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.soak import (  # noqa: E402
    LocalCluster,
    build_config,
    camera_entry,
    make_clip,
    opened_event_ids,
    publish_report,
    reconcile,
    start_cluster,
)

logger = logging.getLogger("trtseg.chaos")

FAULTS = ("decoder", "pusher", "sink", "segmenter", "node", "database", "rtsp", "rtmp")
RECOVERY_TIMEOUT_S = 120.0


@dataclass
class Rig:
    """Everything the chaos run started, so each fault can reach its target and the end can clean up."""

    workdir: Path
    cluster: LocalCluster
    namespace: str
    controller: Any = None
    mariadb: Any = None
    rtsp: Any = None
    rtmp: Any = None
    database_url: str = ""
    spool_dir: Path | None = None
    workers: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)


def _cameras(controller: Any) -> dict[str, dict[str, Any]]:
    import ray

    return {c["id"]: c for c in ray.get(controller.list_cameras.remote(), timeout=20)}


def _progress(controller: Any) -> dict[str, tuple[str, int]] | None:
    """camera -> (state, frames the encoder wrote); None when the controller does not answer."""
    try:
        cameras = _cameras(controller)
    except Exception as error:
        logger.info("controller busy error=%s", error)
        return None
    found = {}
    for camera_id, camera in cameras.items():
        push = (camera.get("stats", {}).get("output", {}) or {}).get("push") or {}
        found[camera_id] = (str(camera.get("state")), int(push.get("frames_written", 0) or 0))
    return found


def _sink_ok(controller: Any) -> bool:
    import ray

    try:
        sink = ray.get(controller.health.remote(), timeout=20)["components"]["sink"]
    except Exception:
        return False
    return sink.get("db_up") is True and int(sink.get("backlog") or 0) < 50


def wait_recovered(controller: Any, timeout_s: float = RECOVERY_TIMEOUT_S) -> float:
    """Seconds until every camera is live with its encoder writing, twice in a row, and the sink is up."""
    started = time.monotonic()
    previous = None
    while time.monotonic() - started < timeout_s:
        now = _progress(controller)
        if now and previous and set(now) == set(previous):
            moving = all(state == "live" and frames > previous[cid][1] for cid, (state, frames) in now.items())
            if moving and _sink_ok(controller):
                return round(time.monotonic() - started, 1)
        previous = now
        time.sleep(1.5)
    raise TimeoutError(f"the system did not recover in {timeout_s} s: {previous}")


def _actor_pids(rig: Rig, title: str) -> list[int]:
    pids = []
    for raylet in rig.cluster.raylet_pids():
        try:
            children = psutil.Process(raylet).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for proc in children:
            try:
                if " ".join(proc.cmdline()).startswith(f"ray::{title}"):
                    pids.append(proc.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
    return pids


def _camera_actor(rig: Rig, camera_id: str, role: str, timeout_s: float = 30.0) -> Any:
    """The camera's live ``role`` actor; waits while the watchdog is still replacing it after an earlier fault."""
    import ray

    deadline = time.monotonic() + timeout_s
    while True:
        handle = ray.get(rig.controller.camera_actors.remote(camera_id), timeout=20)[role]
        if handle is not None:
            return handle
        if time.monotonic() > deadline:
            raise TimeoutError(f"camera {camera_id!r} has had no {role} actor for {timeout_s} s")
        time.sleep(0.5)


def inject(rig: Rig, kind: str, rng: random.Random) -> dict[str, Any]:
    """Cause one fault (and end it, for outages); returns what was done."""
    import ray

    from actors.common import SINK_NAME

    done: dict[str, Any] = {"fault": kind, "at": round(time.time(), 1)}
    if kind in ("decoder", "pusher"):
        cameras = sorted(_cameras(rig.controller))
        target = rng.choice(cameras)
        ray.kill(_camera_actor(rig, target, kind), no_restart=False)
        done["camera"] = target
    elif kind == "sink":
        ray.kill(ray.get_actor(SINK_NAME, namespace=rig.namespace), no_restart=False)
    elif kind == "segmenter":
        deadline = time.monotonic() + 30.0
        while not (pids := _actor_pids(rig, "SegmenterActor")):  # it may still be restarting
            if time.monotonic() > deadline:
                raise RuntimeError("no segmenter process found for 30 s")
            time.sleep(0.5)
        pid = rng.choice(sorted(pids))
        os.kill(pid, signal.SIGKILL)
        done["pid"] = pid
    elif kind == "node":
        workers = [name for name in rig.cluster.nodes if name != "head"]
        if not workers:
            raise RuntimeError("no worker node to remove")
        target = rng.choice(sorted(workers))
        rig.cluster.remove_node(target)
        done["node"] = target
    elif kind in ("database", "rtsp", "rtmp"):
        outage = round(rng.uniform(2.0, 6.0), 1)
        server = {"database": rig.mariadb, "rtsp": rig.rtsp, "rtmp": rig.rtmp}[kind]
        if kind == "database":
            server.kill()  # SIGKILL: InnoDB recovers at the next start
        else:
            server.stop()
        time.sleep(outage)
        server.start()
        done["outage_s"] = outage
    else:
        raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULTS)}")
    return done


def _after(rig: Rig, kind: str) -> None:
    """A lost node is replaced by a new one, as an operator (or autoscaler) would."""
    if kind == "node":
        rig.workers += 1
        rig.cluster.add_node(f"worker{rig.workers}", num_cpus=2)


def schedule(faults: list[str], rounds: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    order: list[str] = []
    for _ in range(rounds):
        batch = list(faults)
        rng.shuffle(batch)
        order += batch
    return order


def _start_servers(rig: Rig, clip: Path) -> None:
    from tests.services.mariadb import PrivateMariaDB
    from tests.services.streaming import RtmpServer, RtspServer

    rig.mariadb = PrivateMariaDB(rig.workdir / "mariadb").start()
    rig.database_url = rig.mariadb.url("trtseg_chaos")
    (rig.workdir / "nginx").mkdir(parents=True, exist_ok=True)
    rig.rtmp = RtmpServer(rig.workdir / "nginx").start()
    rig.rtsp = RtspServer(clip, rig.workdir).start()


def _stop_servers(rig: Rig) -> None:
    for server, stop in ((rig.rtsp, "stop"), (rig.rtmp, "stop"), (rig.mariadb, "cleanup")):
        if server is not None:
            try:
                getattr(server, stop)()
            except Exception as error:
                logger.warning("server cleanup failed error=%s", error)


def run_chaos(
    workdir: Path,
    faults: list[str] | None = None,
    rounds: int = 1,
    seed: int = 0,
    gap_s: tuple[float, float] = (3.0, 10.0),
    two_nodes: bool = True,
) -> dict[str, Any]:
    """Run the chaos schedule; the report says which faults were survived and whether events reconcile."""
    from actors.launch import start_system, stop_system
    from tests.services.streaming import ffprobe

    faults = list(faults or (FAULTS if two_nodes else [f for f in FAULTS if f != "node"]))
    rng = random.Random(seed)
    order = schedule(faults, rounds, seed)
    media = workdir / "media"
    clip = make_clip(media / "scene.mp4")
    namespace = f"trtseg-chaos-{os.getpid()}"
    cluster = start_cluster(head_cpus=4)
    rig = Rig(workdir=workdir, cluster=cluster, namespace=namespace)
    report: dict[str, Any] = {"seed": seed, "schedule": order, "faults": [], "failures": []}
    try:
        if two_nodes:
            rig.workers = 1
            cluster.add_node("worker1", num_cpus=2)
            cluster.cluster.wait_for_nodes(timeout=60)
        _start_servers(rig, clip)
        push_url = rig.rtmp.url("chaos-rtsp")
        cameras = [
            camera_entry("rtsp-cam", rig.rtsp.url, 3.0, push=push_url, loop=False),
            camera_entry("file-cam", str(clip), 3.0),
        ]
        config = build_config(
            workdir,
            media,
            namespace,
            cameras,
            database_url=rig.database_url,
            cluster={"cpu_segmenters": 2 if two_nodes else 1},
        )
        rig.spool_dir = config.sink.spool_dir
        rig.controller = start_system(config, timeout_s=300)
        report["warmup_s"] = wait_recovered(rig.controller, timeout_s=180)
        for kind in order:
            time.sleep(rng.uniform(*gap_s))
            entry = inject(rig, kind, rng)
            try:
                entry["recovered_s"] = wait_recovered(rig.controller)
            except TimeoutError as error:
                entry["recovered_s"] = None
                report["failures"].append(f"{kind}: {error}")
            _after(rig, kind)
            logger.info("fault done %s", entry)
            report["faults"].append(entry)
        if "node" in order:
            report["after_rejoin_s"] = wait_recovered(rig.controller)
        try:
            probe = ffprobe(rig.rtmp.url("chaos-rtsp"), timeout_s=20)
            report["rtmp_readable"] = any(s.get("codec_type") == "video" for s in probe.get("streams", []))
        except Exception as error:
            report["rtmp_readable"] = False
            report["failures"].append(f"annotated RTMP stream not readable at the end: {error}")
        stop_system(namespace, timeout_s=120)
        rig.controller = None
        opened = opened_event_ids(cluster.log_dirs)
        events = reconcile(rig.database_url, opened, rig.spool_dir)
        report["events"] = {k: (v[:20] if isinstance(v, list) else v) for k, v in events.items()}
        if not events["ok"]:
            report["failures"].append(f"events not in the database exactly once: {report['events']}")
    finally:
        if rig.controller is not None:
            try:
                stop_system(namespace, timeout_s=60)
            except Exception as error:
                logger.warning("stop failed error=%s", error)
        cluster.shutdown()
        _stop_servers(rig)
    report["survived"] = sum(1 for f in report["faults"] if f.get("recovered_s") is not None)
    report["ok"] = not report["failures"]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of {','.join(FAULTS)}")
    parser.add_argument("--rounds", type=int, default=1, help="times every fault is injected (shuffled)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gap", type=float, nargs=2, default=(3.0, 10.0), metavar=("MIN", "MAX"))
    parser.add_argument("--one-node", action="store_true", help="no worker node (and no 'node' fault)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "chaos")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        parser.error(f"unknown faults {unknown}; use {','.join(FAULTS)}")
    import shutil

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    report = run_chaos(args.workdir, faults, args.rounds, args.seed, tuple(args.gap), not args.one_node)
    return publish_report(report, args.out, "CHAOS")


if __name__ == "__main__":
    sys.exit(main())
