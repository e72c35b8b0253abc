#!/usr/bin/env python3
"""HTTP load on the running API from a second process on loopback, while the pipeline keeps real time.

``run`` starts a local Ray cluster, the pipeline (CPU backend, generated clips), the Ray Serve API on
a free loopback port, fills the event database with a few thousand events, then runs ``client``
(this file, in a child process) against it: concurrent workers asking for event pages, filters,
counts, cameras, health and metrics, and one worker adding and removing cameras. Every request is
bounded (count, time, timeouts). The report gives per-endpoint p50/p95/p99 latency and error rate,
and each permanent camera's drop rate and output rate during the load.

    .venv/bin/python tools/load.py run --duration 60 --concurrency 16 --out var/load.json
    .venv/bin/python tools/load.py client --url http://127.0.0.1:8000 --duration 30   # any running API
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

logger = logging.getLogger("trtseg.load")

SITES = ("block-1", "block-2", "block-7", "north yard")
CLASSES = ("charging_cable", "e_bike", "person")


# ---------------------------------------------------------------------------------------- client
def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    arr = np.asarray(values)
    return {
        "p50": round(float(np.percentile(arr, 50)), 2),
        "p95": round(float(np.percentile(arr, 95)), 2),
        "p99": round(float(np.percentile(arr, 99)), 2),
        "max": round(float(arr.max()), 2),
    }


class Recorder:
    """Latencies and outcomes per endpoint (server errors and transport failures count as errors)."""

    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = {}
        self.outcomes: dict[str, dict[str, int]] = {}

    def add(self, name: str, started: float, status: int | str, expected: tuple[int, ...]) -> None:
        self.latency.setdefault(name, []).append(1000.0 * (time.perf_counter() - started))
        outcome = (
            "ok" if status in expected else ("error" if not isinstance(status, int) or status >= 500 else "unexpected")
        )
        counts = self.outcomes.setdefault(name, {"ok": 0, "error": 0, "unexpected": 0})
        counts[outcome] += 1

    def report(self) -> dict[str, Any]:
        endpoints = {}
        for name, values in sorted(self.latency.items()):
            counts = self.outcomes[name]
            total = sum(counts.values())
            endpoints[name] = {**counts, "requests": total, "error_rate": round(counts["error"] / total, 4),
                               "latency_ms": _percentiles(values)}  # fmt: skip
        everything = [v for values in self.latency.values() for v in values]
        total = sum(sum(c.values()) for c in self.outcomes.values())
        errors = sum(c["error"] for c in self.outcomes.values())
        unexpected = sum(c["unexpected"] for c in self.outcomes.values())
        return {
            "requests": total,
            "errors": errors,
            "unexpected": unexpected,
            "error_rate": round(errors / total, 4) if total else 0.0,
            "latency_ms": _percentiles(everything),
            "endpoints": endpoints,
        }


async def _request(
    client: Any, rec: Recorder, name: str, method: str, url: str, expected: tuple[int, ...] = (200,), **kw: Any
) -> Any:
    import httpx

    started = time.perf_counter()
    try:
        response = await client.request(method, url, **kw)
    except httpx.HTTPError as error:
        rec.add(name, started, type(error).__name__, expected)
        return None
    rec.add(name, started, response.status_code, expected)
    return response


async def _reader(client: Any, rec: Recorder, stop: float, budget: list[int], rng: random.Random) -> None:
    while time.monotonic() < stop and budget[0] > 0:
        budget[0] -= 1
        pick = rng.random()
        if pick < 0.35:
            params: dict[str, Any] = {"limit": rng.choice((10, 50, 200))}
            if rng.random() < 0.5:
                params["site"] = rng.choice(SITES)
            if rng.random() < 0.3:
                params["class_name"] = rng.choice(CLASSES)
            page = await _request(client, rec, "GET /events", "GET", "/events", params=params)
            cursor = page.json().get("next_cursor") if page is not None and page.status_code == 200 else None
            if cursor:
                await _request(client, rec, "GET /events?cursor", "GET", "/events", params={**params, "cursor": cursor})
        elif pick < 0.5:
            group = rng.choice(("site", "class_name,day", "site,class_name"))
            await _request(client, rec, "GET /events/counts", "GET", "/events/counts", params={"group_by": group})
        elif pick < 0.7:
            await _request(client, rec, "GET /cameras", "GET", "/cameras")
        elif pick < 0.8:
            await _request(client, rec, "GET /health", "GET", "/health")
        elif pick < 0.9:
            await _request(client, rec, "GET /metrics", "GET", "/metrics")
        else:
            await _request(client, rec, "GET /events/{missing}", "GET", f"/events/{os.urandom(8).hex()}", (404,))


async def _camera_churn(client: Any, rec: Recorder, stop: float, source: str, limit: int) -> int:
    """Add and remove cameras one after the other (each add starts real actors), at most ``limit`` times."""
    done = 0
    while time.monotonic() < stop and done < limit:
        camera_id = f"load-{os.getpid()}-{done}"
        body = {
            "id": camera_id,
            "source": source,
            "loop": True,
            "inference_fps": 1,
            "push": "none",
            "site": "x'; DROP TABLE events; --",  # hostile text rides along: stored and shown, never executed
            "name": "<script>alert(1)</script>' OR '1'='1",
        }
        added = await _request(client, rec, "POST /cameras", "POST", "/cameras", (201, 200), json=body, timeout=120)
        if added is not None and added.status_code in (200, 201):
            await asyncio.sleep(2.0)
            await _request(client, rec, "DELETE /cameras/{id}", "DELETE", f"/cameras/{camera_id}", (204,), timeout=120)
        done += 1
    return done


async def run_client(
    url: str,
    duration_s: float,
    concurrency: int,
    max_requests: int,
    churn_source: str | None,
    churn_max: int,
    seed: int,
) -> dict[str, Any]:
    """The load itself (``client`` subcommand): readers plus an optional camera add/remove worker."""
    import httpx

    rec = Recorder()
    stop = time.monotonic() + duration_s
    budget = [max_requests]
    limits = httpx.Limits(max_connections=concurrency + 2)
    async with httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits) as client:
        tasks = [_reader(client, rec, stop, budget, random.Random(seed + i)) for i in range(concurrency)]
        churn = [_camera_churn(client, rec, stop, churn_source, churn_max)] if churn_source else []
        started = time.monotonic()
        results = await asyncio.gather(*tasks, *churn)
        elapsed = time.monotonic() - started
    report = rec.report()
    report.update(
        {"duration_s": round(elapsed, 1), "concurrency": concurrency, "rps": round(report["requests"] / elapsed, 1)}
    )
    report["camera_cycles"] = results[-1] if churn_source else 0
    return report


# ------------------------------------------------------------------------------------ system side
def seed_events(database_url: str, count: int, seed: int = 0) -> None:
    """Events for the queries to find: spread over sites, classes and the last days."""
    from trtseg.db import EventStore
    from trtseg.events import EventRecord, new_event_id

    rng = random.Random(seed)
    store = EventStore(database_url)
    store.migrate()
    now = datetime.now(UTC)
    records = []
    for i in range(count):
        started = now - timedelta(minutes=rng.uniform(0, 3 * 24 * 60))
        records.append(
            EventRecord(
                event_id=new_event_id(started.timestamp()),
                site=rng.choice(SITES),
                camera_id=f"cam{i % 8}",
                class_name=rng.choice(CLASSES),
                status="closed",
                started_at=started,
                last_seen_at=started + timedelta(seconds=5),
                ended_at=started + timedelta(seconds=9),
                best_confidence=round(rng.uniform(0.3, 0.99), 3),
                frames_seen=rng.randint(2, 50),
                result="seeded for load",
                instances=[{"class_name": "person", "score": 0.5, "box": [1.0, 2.0, 3.0, 4.0]}],
            )
        )
    store.upsert(records)
    store.close()


def _camera_figures(controller: Any) -> dict[str, dict[str, float]]:
    import ray

    found = {}
    for camera in ray.get(controller.list_cameras.remote(), timeout=30):
        decoder = camera.get("stats", {}).get("decoder", {})
        output = camera.get("stats", {}).get("output", {})
        found[camera["id"]] = {
            "frames_in": float(decoder.get("frames", 0)),
            "drops": float(decoder.get("drops", 0)),
            "frames_out": float(output.get("frames", 0)),
            "source_fps": float(decoder.get("source_fps") or 0.0),
        }
    return found


def _camera_deltas(start: dict[str, dict[str, float]], end: dict[str, dict[str, float]], seconds: float) -> dict:
    """Drop rate and output rate of each camera between two snapshots."""
    found = {}
    for camera_id, last in end.items():
        first = start.get(camera_id)
        if first is None:
            continue
        frames = last["frames_in"] - first["frames_in"]
        found[camera_id] = {
            "frames_in": int(frames),
            "drop_rate": round((last["drops"] - first["drops"]) / frames, 4) if frames else None,
            "fps_out": round((last["frames_out"] - first["frames_out"]) / seconds, 2),
            "source_fps": last["source_fps"],
        }
    return found


def _wait_http(url: str, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise TimeoutError(f"the API at {url} did not answer in {timeout_s} s")


def run_load(
    workdir: Path,
    cameras: int = 1,
    duration_s: float = 60.0,
    concurrency: int = 16,
    max_requests: int = 20_000,
    churn_max: int = 5,
    events: int = 5000,
) -> dict[str, Any]:
    """System + API + client process; the report joins the client's figures with the cameras' drop rates."""
    from ray import serve

    from actors.launch import start_system, stop_system
    from deployments.app import deploy
    from tests.services.ports import free_port
    from tools.soak import build_config, camera_entry, make_clip, start_cluster

    media = workdir / "media"
    clip = make_clip(media / "scene.mp4")
    namespace = f"trtseg-load-{os.getpid()}"
    port = free_port()
    entries = [camera_entry(f"live{i}", str(clip), 3.0) for i in range(cameras)]
    config = build_config(workdir, media, namespace, entries, api={"host": "127.0.0.1", "port": port})
    seed_events(config.sink.database_url.get_secret_value(), events)
    url = f"http://127.0.0.1:{port}"
    cluster = start_cluster(head_cpus=4)
    try:
        controller = start_system(config, timeout_s=300)
        deploy(config)
        _wait_http(url, 120)
        time.sleep(5.0)  # the cameras settle before the figures are taken
        quiet_s = min(duration_s, 20.0)
        quiet_start = _camera_figures(controller)
        time.sleep(quiet_s)
        before = _camera_figures(controller)
        cmd = [sys.executable, str(Path(__file__).resolve()), "client", "--url", url, "--duration", str(duration_s),
               "--concurrency", str(concurrency), "--max-requests", str(max_requests),
               "--churn-source", str(clip), "--churn-max", str(churn_max)]  # fmt: skip
        started = time.monotonic()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 300, check=False)
        elapsed = time.monotonic() - started
        after = _camera_figures(controller)
        if done.returncode != 0:
            raise RuntimeError(f"load client failed ({done.returncode}): {done.stderr[-2000:]}")
        report = json.loads(done.stdout)
        report["cameras"] = _camera_deltas(before, after, elapsed)
        report["cameras_without_load"] = _camera_deltas(quiet_start, before, quiet_s)
        serve.shutdown()
        stop_system(namespace, timeout_s=120)
    finally:
        cluster.shutdown()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    client = commands.add_parser("client", help="load a running API (prints the JSON report)")
    client.add_argument("--url", required=True, help="loopback only, e.g. http://127.0.0.1:8000")
    client.add_argument("--churn-source", help="a file source the API accepts, for camera add/remove")
    client.add_argument("--churn-max", type=int, default=5)
    client.add_argument("--seed", type=int, default=0)
    run = commands.add_parser("run", help="start the system and the API, load it, report")
    run.add_argument("--cameras", type=int, default=1)
    run.add_argument("--events", type=int, default=5000, help="events seeded into the database")
    run.add_argument("--churn-max", type=int, default=5)
    run.add_argument("--workdir", type=Path, default=ROOT / "var" / "load")
    run.add_argument("--out", type=Path)
    for sub in (client, run):
        sub.add_argument("--duration", type=float, default=60.0)
        sub.add_argument("--concurrency", type=int, default=16)
        sub.add_argument("--max-requests", type=int, default=20_000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.command == "client" else logging.INFO)
    if args.command == "client":
        host = args.url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
        if host not in ("127.0.0.1", "localhost", "[::1]"):
            parser.error("the load client only targets loopback addresses")
        report = asyncio.run(
            run_client(
                args.url,
                args.duration,
                args.concurrency,
                args.max_requests,
                args.churn_source,
                args.churn_max,
                args.seed,
            )
        )
        print(json.dumps(report))
        return 0
    import shutil

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    report = run_load(
        args.workdir, args.cameras, args.duration, args.concurrency, args.max_requests, args.churn_max, args.events
    )
    from tools.soak import publish_report

    return publish_report(report, args.out, "LOAD")


if __name__ == "__main__":
    sys.exit(main())
