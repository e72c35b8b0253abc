"""Chaos, segmenter: frames keep reaching the stream while the segmentation actor is killed.

The demo's camera (its sample scene with the charging bay, its zone and presence rule) runs on a
real one-node Ray cluster; the segmenter's process is SIGKILLed (Ray restarts it) and then the actor
is killed for good (the controller's segmenter pool replaces it). Across each kill the pushed frames
must stay above 80 % of the source rate (the decoder hands frames on without detections, marked not
inferred), inference must come back, and no incident may close or reopen (tracks coast).

The measured rates are logged (``-s -o log_cli=true`` shows them); docs/OPERATIONS.md has the command.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.actors.system_helpers import MODEL, system_config, wait_for
from tests.services.ray_cluster import RayTestCluster

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.skipif(not MODEL.is_file(), reason="models/trtseg-cable-n.onnx is missing"),
]

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "trtseg-test-segmenter-outage"
SOURCE_FPS = 10
WINDOW_S = 15.0  # the kill, the restart (process, model, warm-up) and inference coming back
MIN_SHARE = 0.8


@pytest.fixture(scope="module")
def bay_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from datasets.video import render_sample_video

    media = tmp_path_factory.mktemp("outage-media")
    return render_sample_video(
        media / "bay.mp4", seconds=20.0, fps=SOURCE_FPS, size=(1280, 720), gop=SOURCE_FPS, preset="ultrafast",
        charging_bay=True,
    )  # fmt: skip


@pytest.fixture(scope="module", params=["auto", "object_store"], ids=["channel", "object-store"])
def system(
    request: pytest.FixtureRequest, ray_local: RayTestCluster, bay_clip: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """The demo's camera (rule and all) on its sample scene; frames by the channel or the object store."""
    from actors.launch import running_system
    from trtseg.config import load_config

    demo = load_config(ROOT / "conf" / "demo.yaml", environ={}).cameras[0].model_dump(mode="json")
    cam = {**demo, "id": "bay", "source": str(bay_clip), "inference_fps": 5}
    if "push_mode" in cam:
        cam["push_mode"] = "always"  # every frame encoded: what is measured is the stream
    workdir = tmp_path_factory.mktemp("outage-system")
    config = system_config(
        workdir, bay_clip.parent, f"{NAMESPACE}-{request.param}", [cam], frame_transport=request.param
    )
    with running_system(config, start_timeout_s=240) as controller:
        yield controller, workdir / "events.db"


class PushSampler:
    """Samples the camera's pushed frames every 0.1 s on a thread: (monotonic time, frames so far).

    Counted across pusher restarts (a restarted camera's new pusher counts from zero), so a camera
    that the controller restarts is measured too, not only one whose pusher stays."""

    def __init__(self, controller: Any) -> None:
        self.samples: list[tuple[float, int]] = []
        self._controller = controller
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import ray

        pusher, last, total = None, 0, 0
        while not self._stop.is_set():
            try:
                pusher = pusher or _actors(self._controller)["pusher"]
                frames = _pushed(ray.get(pusher.stats.remote(), timeout=5))
                total += frames - last if frames >= last else frames  # a new pusher starts again at 0
                last = frames
                self.samples.append((time.monotonic(), total))
            except Exception as error:  # a sample missed is a gap in the record; ask for the pusher again
                logger.debug("pusher sample failed error=%s", error)
                pusher = None
            self._stop.wait(0.1)

    def rate(self, start: float, end: float) -> tuple[float, float]:
        """Pushed frames/s between ``start`` and ``end``, and the longest time the counter stood still."""
        inside = [(t, n) for t, n in self.samples if start <= t <= end]
        assert len(inside) >= 2, f"too few samples between {start} and {end}: {len(inside)}"
        frames = inside[-1][1] - inside[0][1]
        stalls, since = [0.0], inside[0][0]
        for (_, n0), (t1, n1) in itertools.pairwise(inside):
            if n1 > n0:
                stalls.append(t1 - since)
                since = t1
        stalls.append(inside[-1][0] - since)
        return frames / (inside[-1][0] - inside[0][0]), max(stalls)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _pushed(output: dict[str, Any]) -> int:
    """Frames handed to the camera's encoder (``encoded`` where streams can be on demand)."""
    return int(output.get("encoded", output["frames"]))


def _actors(controller: Any) -> dict[str, Any]:
    import ray

    return dict(ray.get(controller.camera_actors.remote("bay"), timeout=30))


def _output(controller: Any) -> dict[str, Any]:
    import ray

    return dict(ray.get(_actors(controller)["pusher"].stats.remote(), timeout=30))


def _incidents(output: dict[str, Any]) -> tuple[int, int, int]:
    """(opened alerts, opened detections, open now) of the camera's analytics."""
    analytics = output["analytics"]
    return analytics["incidents_opened_alert"], analytics["incidents_opened_detection"], analytics["incidents_open"]


def _stored_incidents(database: Path) -> list[dict[str, Any]]:
    """The camera's incidents as the sink wrote them (SQLite): id, track, started, last seen, ended."""
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT incident_id, track_id, started_at, last_seen_at, ended_at FROM incidents WHERE camera_id = 'bay'"
        ).fetchall()
    stamp = lambda text: None if text is None else datetime.fromisoformat(str(text)).replace(tzinfo=UTC)  # noqa: E731
    return [
        {"id": r[0], "track": r[1], "started": stamp(r[2]), "last_seen": stamp(r[3]), "ended": stamp(r[4])}
        for r in rows
    ]


def _kill_process(controller: Any) -> None:
    import ray

    pid = int(ray.get(_actors(controller)["segmenter"].ping.remote(), timeout=30)["pid"])
    os.kill(pid, signal.SIGKILL)  # Ray restarts the actor (max_restarts): same handle, new process


def _kill_actor(controller: Any) -> None:
    import ray

    ray.kill(_actors(controller)["segmenter"], no_restart=True)  # gone for good: the pool replaces it


@pytest.mark.parametrize("kill", [_kill_process, _kill_actor], ids=["sigkill", "ray-kill"])
def test_frames_keep_flowing_across_a_segmenter_kill(system: tuple[Any, Path], kill: Any) -> None:
    import ray

    system, database = system
    pusher = _actors(system)["pusher"]
    incarnation = ray.get(pusher.ping.remote(), timeout=30)["incarnation"]
    wait_for(lambda: _output(system)["inferred"] > 10, 120, "the camera to push inferred frames")
    wait_for(lambda: _incidents(_output(system))[2] >= 1, 90, "the demo rule to open an incident")
    sampler = PushSampler(system)
    try:
        time.sleep(5.0)
        before = _output(system)
        baseline, _ = sampler.rate(time.monotonic() - 4.5, time.monotonic())
        killed_at, killed_wall = time.monotonic(), datetime.now(UTC)
        kill(system)
        time.sleep(WINDOW_S)
        across, longest_stall = sampler.rate(killed_at, killed_at + WINDOW_S)
    finally:
        sampler.close()
    decoder = ray.get(_actors(system)["decoder"].stats.remote(), timeout=30)
    skipped = int(decoder.get("channel_infer_skipped", decoder.get("infer_skipped", 0)))
    figures = {
        "transport": decoder["transport"],
        "kill": kill.__name__.removeprefix("_kill_"),
        "source_fps": SOURCE_FPS,
        "baseline_fps": round(baseline, 2),
        "across_kill_fps": round(across, 2),
        "share": round(across / SOURCE_FPS, 3),
        "longest_stall_s": round(longest_stall, 2),
        "infer_skipped": skipped,
    }
    logger.warning("segmenter outage %s", " ".join(f"{k}={v}" for k, v in figures.items()))
    print(f"\nsegmenter outage {figures}")  # the figure docs/OPERATIONS.md asks for, under -s
    assert across >= MIN_SHARE * SOURCE_FPS, f"{across:.2f} frames/s pushed across the kill"
    assert skipped > 0, "no frame went on without detections: the kill was not seen"
    pusher_now = ray.get(_actors(system)["pusher"].ping.remote(), timeout=30)["incarnation"]
    assert pusher_now == incarnation, "the camera's pusher was restarted: its stream and incidents with it"

    inferred = _output(system)["inferred"]
    wait_for(lambda: _output(system)["inferred"] > inferred + 5, 120, "inference to come back")
    time.sleep(2.0)  # the sink's flush
    after = _output(system)
    assert _pushed(after) > _pushed(before)
    # No incident reopens: a clock that ran through the outage would close the rule's incident at the
    # first inferred frame after it and open a new one for the same cable.
    opened_before, opened_after = _incidents(before)[:2], _incidents(after)[:2]
    assert opened_after == opened_before, f"incidents opened across the kill: {opened_before} -> {opened_after}"
    stored = _stored_incidents(database)
    # An incident that closed across the kill did so for a cable gone before it (a miss of the
    # model), not because frames came without detections.
    closed = [i for i in stored if i["ended"] is not None and i["ended"] >= killed_wall]
    assert all(i["last_seen"] < killed_wall for i in closed), f"closed across the kill: {closed}"
    # And the test is not empty: an incident open before the kill is still open after it.
    kept = [i for i in stored if i["started"] < killed_wall and i["ended"] is None]
    assert kept and _incidents(after)[2] >= 1, f"no incident stayed open across the kill: {stored}"
